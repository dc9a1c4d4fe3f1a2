"""The multi-agent training loop over a PettingZoo ``ParallelEnv``.

Per env step: for each group, one jitted ``explore`` call of its kitae agent on the group's
``[G, ...]`` observation batch; one ``env.step`` with the actions of the live agents only; then
each group's live transitions go to its learner (see :mod:`kitae.multiagent.learners`).

Episode conventions:

* An agent acts from the env's reset until it terminates, is truncated, or the env drops it from
  its dicts; then it stops acting and stores nothing more for that episode. An agent the env
  drops without a termination or truncation flag is treated as truncated: with a final
  observation, its last transition is stored ``truncated`` and bootstraps from it; without one,
  that step is not stored and the agent's previous transition (this episode's latest stored one)
  is marked ``truncated`` instead, so it bootstraps from the observation the agent last acted on.
  The same holds for a truncation flag without a final observation. Either way, neither n-step
  windows (off-policy) nor GAE (on-policy) run into the agent's next episode.
* The env is reset only when no agent is still acting; every agent's episode starts there.
  Agents with an acting state (e.g. R2D2's recurrent core) start each episode, in training and in
  :meth:`MultiAgentTrainer.evaluate`, from a fresh one (see :mod:`kitae.multiagent.learners`).
* ``done`` is the env's termination (no bootstrap); ``truncated`` its truncation (bootstrap).
* Counters: :attr:`MultiAgentTrainer.env_steps` counts ``env.step`` calls; each group's kitae
  agent's ``env_steps`` counts its stored (live) transitions, which drive its schedules
  (epsilon, update frequency). A group's ``train_cfg.n_env_steps`` is ``n_steps * G``, the most
  transitions it can collect.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kitae.agent import BaseAgent, config_to_dict
from kitae.buffer import Experience
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, check_int
from kitae.logger import Logger
from kitae.modules.optimizer import learning_rate_metrics
from kitae.multiagent.groups import AgentGroup, Grouping, make_groups
from kitae.multiagent.learners import GroupLearner, make_learner
from kitae.on_policy import OnPolicyAgent


class EpisodeRecorder:
    """Running per-agent returns and lengths of the env's current episode.

    Args:
        agents: the env's ``possible_agents``.
        window: finished episodes averaged in :meth:`recent_means`.
    """

    def __init__(self, agents: list[str], window: int = 20):
        self.agents = list(agents)
        self.returns = dict.fromkeys(self.agents, 0.0)
        self.lengths = dict.fromkeys(self.agents, 0)
        self.length = 0
        self.finished: list[dict[str, float]] = []
        self._recent: deque[dict[str, float]] = deque(maxlen=window)

    def start(self) -> None:
        """Zeroes the running episode (after an env reset)."""
        self.returns = dict.fromkeys(self.agents, 0.0)
        self.lengths = dict.fromkeys(self.agents, 0)
        self.length = 0

    def end(self) -> dict[str, float]:
        """Closes the running episode and returns its row: ``return`` (team: sum over agents),
        ``length`` (env steps), and ``return/<agent>``, ``length/<agent>`` (steps it acted)."""
        row: dict[str, float] = {"return": sum(self.returns.values()), "length": self.length}
        for agent in self.agents:
            row[f"return/{agent}"] = self.returns[agent]
            row[f"length/{agent}"] = self.lengths[agent]
        self.finished.append(row)
        self._recent.append(row)
        self.start()
        return row

    def recent_means(self) -> dict[str, float]:
        """The mean ``return`` and ``return/<agent>`` of the last ``window`` episodes."""
        if not self._recent:
            return {}
        names = ["return", *(f"return/{agent}" for agent in self.agents)]
        return {name: float(np.mean([row[name] for row in self._recent])) for name in names}


def group_config(
    agent_type: type[BaseAgent],
    group: AgentGroup,
    *,
    seed: int,
    n_steps: int,
    task_name: str,
    algo_params: Any = None,
    update_cfg: UpdateConfig | None = None,
    train_cfg: TrainConfig | None = None,
) -> AlgoConfig:
    """The config of the kitae agent of one group: ``env_cfg`` from the group (encoded
    observation space, ``n_envs = n_agents = G``), ``train_cfg.n_env_steps = n_steps * G``.

    Args:
        agent_type: the kitae agent class (its ``params_type`` / ``default_update_cfg`` fill in
            what is not given).
        group: the group.
        seed: the agent's seed.
        n_steps: env steps the run is planned for.
        task_name: the env's name.
        algo_params: the algorithm's params (copied), default ``agent_type.params_type()``.
        update_cfg: update settings (copied), default ``agent_type.default_update_cfg``.
        train_cfg: loop settings (copied; ``n_env_steps`` is replaced).

    Raises:
        TypeError: if ``algo_params`` is not given and ``agent_type`` declares no params type.
    """
    if algo_params is None:
        if agent_type.params_type is None:
            raise TypeError(f"{agent_type.__name__} has no params_type: pass algo_params.")
        algo_params = agent_type.params_type()
    elif dataclasses.is_dataclass(algo_params) and not isinstance(algo_params, type):
        algo_params = dataclasses.replace(algo_params)
    return AlgoConfig(
        seed=seed,
        algo_params=algo_params,
        update_cfg=dataclasses.replace(update_cfg or agent_type.default_update_cfg),
        train_cfg=dataclasses.replace(train_cfg or TrainConfig(), n_env_steps=n_steps * group.size),
        env_cfg=EnvConfig(
            task_name,
            group.policy_observation_space,
            group.action_space,
            n_envs=group.size,
            n_agents=group.size,
        ),
    )


def check_parallel_env(env: Any) -> None:
    """Raises ``TypeError`` unless ``env`` looks like a PettingZoo ``ParallelEnv``."""
    needed = ("possible_agents", "reset", "step", "observation_space", "action_space")
    missing = [name for name in needed if not hasattr(env, name)]
    if missing or not callable(env.observation_space):
        raise TypeError(
            f"env must be a PettingZoo ParallelEnv (missing {missing or ['observation_space()']});"
            " wrap an AEC env with pettingzoo.utils.conversions.aec_to_parallel, or use the "
            "module's parallel_env()."
        )


def _env_name(env: Any) -> str:
    name = getattr(env, "metadata", {}).get("name")
    return str(name) if name else type(getattr(env, "unwrapped", env)).__name__


class MultiAgentTrainer:
    """Trains kitae agents on a PettingZoo ``ParallelEnv``, by parameter sharing or as
    independent learners (see the module docstring for the episode conventions).

    Args:
        env: the PettingZoo ``ParallelEnv`` to train on.
        agent_type: the kitae agent class, an ``OffPolicyAgent`` (DQN, SAC, TD3, R2D2...) or
            an ``OnPolicyAgent`` (PPO); one instance per group.
        n_steps: env steps the run is planned for (schedules such as epsilon and learning-rate
            annealing span them); :meth:`train` defaults to it.
        grouping: ``"shared"`` (one agent for all, parameter sharing), ``"independent"`` (one
            agent per PettingZoo agent), or ``{group: [agents]}``; see
            :func:`~kitae.multiagent.groups.make_groups`.
        agent_id: append each agent's one-hot row in its group to its observation.
        seed: determines the env resets (the first one is seeded with it) and the agents (group
            ``k`` has seed ``seed + k``).
        algo_params: the algorithm's params, for every group.
        update_cfg: update settings, for every group.
        train_cfg: loop settings: ``loggers``, ``log_frequency`` (transitions summed over
            agents between two ``train`` rows), ``progress_bar``.
        run_name: name of the run directory.
        run_dir: parent of the run directory, where the logger writes ``episodes`` and ``train``
            streams and the config; ``None`` writes nothing to disk.
        agent_kwargs: extra arguments for ``agent_type`` (e.g. ``preprocess_fn``).

    Raises:
        TypeError: if ``env`` is not a ParallelEnv or ``agent_type`` neither off- nor on-policy.
        ValueError: for a bad grouping (see ``make_groups``), ``n_steps`` or ``seed``; an
            on-policy rollout size (``update_cfg.max_buffer_size``) that is not a multiple of a
            group's size; an agent with an acting state that the learners cannot carry (see
            :func:`~kitae.multiagent.learners.make_learner`); or any config error of the agents.
    """

    def __init__(
        self,
        env: Any,
        agent_type: type[BaseAgent],
        *,
        n_steps: int,
        grouping: Grouping = "shared",
        agent_id: bool = False,
        seed: int = 0,
        algo_params: Any = None,
        update_cfg: UpdateConfig | None = None,
        train_cfg: TrainConfig | None = None,
        run_name: str = "multiagent",
        run_dir: str | Path | None = None,
        agent_kwargs: Mapping[str, Any] | None = None,
    ):
        check_parallel_env(env)
        check_int("n_steps", n_steps, 1)
        check_int("seed", seed, 0)
        self.env = env
        self.seed = seed
        self.n_steps = n_steps
        self.groups = make_groups(env, grouping, agent_id)
        self.train_cfg = dataclasses.replace(train_cfg or TrainConfig())
        task_name = _env_name(env)
        self.agents: dict[str, BaseAgent] = {}
        self.learners: dict[str, GroupLearner] = {}
        for k, group in enumerate(self.groups):
            config = group_config(
                agent_type,
                group,
                seed=seed + k,
                n_steps=n_steps,
                task_name=task_name,
                algo_params=algo_params,
                update_cfg=update_cfg,
                train_cfg=self.train_cfg,
            )
            rollout = config.update_cfg.max_buffer_size
            if issubclass(agent_type, OnPolicyAgent) and rollout % group.size:
                raise ValueError(
                    f"update_cfg.max_buffer_size={rollout} (the rollout size) is not a multiple "
                    f"of the {group.size} agents of group {group.name!r}: each of its "
                    f"{group.size} lanes needs the same number of steps; use a multiple."
                )
            agent = agent_type(f"{run_name}/{group.name}", config, **dict(agent_kwargs or {}))
            self.agents[group.name] = agent
            self.learners[group.name] = make_learner(agent)
        self.recorder = EpisodeRecorder(list(env.possible_agents))
        self.env_steps = 0
        self.logger = Logger(
            None if run_dir is None else Path(run_dir) / run_name, backends=self.train_cfg.loggers
        )
        self.logger.write_config(
            {
                "seed": seed,
                "n_steps": n_steps,
                "env": task_name,
                "groups": {g.name: list(g.agents) for g in self.groups},
                "agent_id": agent_id,
                "agents": {name: config_to_dict(a.config) for name, a in self.agents.items()},
            }
        )
        self._observations: dict[str, Any] | None = None
        self._alive: set[str] = set()
        self._env_seeded = False

    # ---- acting -------------------------------------------------------------------------
    def _batch(
        self, group: AgentGroup, observations: Mapping[str, Any], acting: set[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(float32[G, ...] encoded observations, bool[G] acting)``; zeros where not acting."""
        batch = np.zeros((group.size, *group.policy_observation_space.shape), np.float32)
        live = np.zeros(group.size, bool)
        for i, name in enumerate(group.agents):
            if name in acting and name in observations:
                batch[i] = group.encode(observations[name], i)
                live[i] = True
        return batch, live

    def act(
        self, observations: Mapping[str, Any], acting: set[str], greedy: bool = False
    ) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
        """The env actions of the ``acting`` agents, one jitted call per group.

        Args:
            observations: ``{agent: observation}`` from the env.
            acting: the agents that act now.
            greedy: use the agents' ``select_action`` (evaluation).

        Returns:
            ``(env_actions, per_group)``: ``{agent: action}`` for the env, and per group
            ``(observations [G, ...], live bool[G], actions [G, ...], log_probs [G])``.
        """
        env_actions: dict[str, Any] = {}
        per_group = {}
        for group in self.groups:
            batch, live = self._batch(group, observations, acting)
            if not live.any():
                continue
            learner = self.learners[group.name]
            actions, log_probs = learner.act(batch, greedy)
            sent = np.asarray(learner.agent.to_env_action(actions))
            for i in np.flatnonzero(live):
                env_actions[group.agents[i]] = sent[i]
            per_group[group.name] = (batch, live, actions, log_probs)
        return env_actions, per_group

    # ---- training -----------------------------------------------------------------------
    def _reset(self) -> None:
        observations, _ = self.env.reset(seed=None if self._env_seeded else self.seed)
        self._env_seeded = True
        self._observations = observations
        self._alive = {a for a in self.env.agents if a in observations}
        for learner in self.learners.values():
            learner.reset_acting_state()
        self.recorder.start()

    def _check_updates(self, n_steps: int) -> None:
        for group in self.groups:
            agent = self.agents[group.name]
            if agent.expected_updates(n_steps * group.size) == 0:
                raise ValueError(
                    f"group {group.name!r}: even with all {group.size} agents alive, "
                    + agent.zero_update_message(n_steps * group.size)
                )

    def step(self) -> dict[str, float] | None:
        """One env step: act, step, store the live transitions, update when due.

        Returns:
            The row of the episode that ended with this step (see :meth:`EpisodeRecorder.end`),
            or ``None``.
        """
        if self._observations is None or not self._alive:
            self._reset()
        observations, alive = self._observations or {}, self._alive
        env_actions, per_group = self.act(observations, alive)
        next_obs, rewards, terminations, truncations, _ = self.env.step(env_actions)
        self.env_steps += 1
        recorder = self.recorder
        recorder.length += 1
        still_in = set(self.env.agents)
        for group in self.groups:
            if group.name not in per_group:
                continue
            batch, live, actions, log_probs = per_group[group.name]
            size = group.size
            reward = np.zeros(size, np.float32)
            done = np.zeros(size, bool)
            truncated = np.zeros(size, bool)
            stored = np.zeros(size, bool)
            next_batch = np.zeros_like(batch)
            for i in np.flatnonzero(live):
                name = group.agents[i]
                reward[i] = rewards.get(name, 0.0)
                recorder.returns[name] += float(reward[i])
                recorder.lengths[name] += 1
                terminated = bool(terminations.get(name, False))
                has_next = name in next_obs
                continues = (
                    has_next
                    and not terminated
                    and not truncations.get(name, False)
                    and name in still_in
                )
                if has_next:
                    next_batch[i] = group.encode(next_obs[name], int(i))
                done[i] = terminated
                truncated[i] = not terminated and not continues
                stored[i] = has_next or terminated
                if not continues:
                    alive.discard(name)
            # Episodes that ended with nothing to store end at their latest stored transition.
            self.learners[group.name].truncate_last(live & ~stored)
            experience = Experience(
                observation=batch,
                action=actions,
                reward=reward,
                done=done,
                next_observation=next_batch,
                log_prob=np.asarray(log_probs, np.float32),
                truncated=truncated,
            )
            self.learners[group.name].store(experience, stored)
        self._observations = next_obs
        if alive and still_in:
            return None
        self._alive = set()
        row = recorder.end()
        self.logger.log("episodes", self.env_steps, row)
        return row

    def train(self, n_steps: int | None = None, *, progress_bar: bool | None = None) -> dict:
        """Trains for ``n_steps`` env steps (default: the planned ``n_steps``); a later call
        continues the running episode.

        Returns:
            A summary: ``env_steps`` (total so far), ``n_updates`` (per group, in this call),
            ``episodes`` (finished so far) and ``train_s`` (this call).

        Raises:
            ValueError: if ``n_steps`` is not an integer >= 1, or some group would perform no
                update even with all its agents alive throughout.
        """
        n_steps = self.n_steps if n_steps is None else n_steps
        check_int("n_steps", n_steps, 1)
        self._check_updates(n_steps)
        start, start_updates = time.perf_counter(), {n: a.n_updates for n, a in self.agents.items()}
        show = self.train_cfg.progress_bar if progress_bar is None else progress_bar
        n_agents = len(self.recorder.agents)
        log_every = max(1, self.train_cfg.log_frequency // n_agents)
        log_time, log_steps = start, self.env_steps
        with tqdm(total=n_steps, unit="step", disable=not show, mininterval=0.5) as bar:
            for i in range(1, n_steps + 1):
                self.step()
                if i % log_every == 0:
                    now = time.perf_counter()
                    sps = (self.env_steps - log_steps) / max(now - log_time, 1e-9)
                    log_time, log_steps = now, self.env_steps
                    self.logger.log("train", self.env_steps, self.train_metrics(sps))
                if i % 100 == 0 or i == n_steps:
                    bar.update(i - bar.n)
                    team = self.recorder.recent_means().get("return", math.nan)
                    bar.set_postfix(ret=f"{team:.2f}", refresh=False)
        self.logger.close()
        return {
            "env_steps": self.env_steps,
            "n_updates": {n: a.n_updates - start_updates[n] for n, a in self.agents.items()},
            "episodes": len(self.recorder.finished),
            "train_s": time.perf_counter() - start,
        }

    def train_metrics(self, steps_per_second: float) -> dict[str, Any]:
        """One ``train`` row: recent mean team ``return`` and ``return/<agent>`` (last 20
        episodes), each group's last update info and learning rate (prefixed ``<group>/`` when
        there are several groups), and env ``steps_per_second``."""
        row: dict[str, Any] = dict(self.recorder.recent_means())
        several = len(self.agents) > 1
        for name, agent in self.agents.items():
            metrics = {**agent.last_info, **learning_rate_metrics(agent.state)}
            row.update({f"{name}/{k}" if several else k: v for k, v in metrics.items()})
        row["steps_per_second"] = steps_per_second
        return row

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, env: Any, n_episodes: int, *, seed: int = 0, greedy: bool = True) -> dict:
        """Plays ``n_episodes`` on ``env`` (a separate instance: the training episode is left
        alone) without learning; episode ``i`` is reset with ``seed + i`` and acted from fresh
        acting states. The interaction keys (and training acting states) are preserved, so
        training continues unchanged.

        Returns:
            ``{"return": float64[n_episodes] team returns, "return/<agent>": float64[...]}``.
        """
        check_parallel_env(env)
        check_int("n_episodes", n_episodes, 1)
        agents = list(env.possible_agents)
        totals = {agent: np.zeros(n_episodes) for agent in agents}
        preserved = [agent.preserved_keys() for agent in self.agents.values()]
        for context in preserved:
            context.__enter__()
        try:
            for episode in range(n_episodes):
                observations, _ = env.reset(seed=seed + episode)
                for learner in self.learners.values():
                    learner.reset_acting_state()
                alive = {a for a in env.agents if a in observations}
                while alive:
                    env_actions, _ = self.act(observations, alive, greedy)
                    observations, rewards, terminations, truncations, _ = env.step(env_actions)
                    for name in list(alive):
                        totals[name][episode] += float(rewards.get(name, 0.0))
                        if terminations.get(name) or truncations.get(name):
                            alive.discard(name)
                    alive &= {a for a in env.agents if a in observations}
        finally:
            for context in reversed(preserved):
                context.__exit__(None, None, None)
        out = {"return": sum(totals.values())}
        out.update({f"return/{agent}": totals[agent] for agent in agents})
        return out


__all__ = ["EpisodeRecorder", "MultiAgentTrainer", "check_parallel_env", "group_config"]
