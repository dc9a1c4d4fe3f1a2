"""The gymnasium (host) training loop: :meth:`GymnasiumLoop.train` and its helpers, inherited
by :class:`kitae.agent.BaseAgent`.

Per vector step, the loop makes one jitted ``explore`` call, steps the env and hands the
transition to the agent's ``_store`` (which stores it and runs the updates that became due);
nothing else is dispatched to JAX per step. With ``train_cfg.actor_learner``, an actor thread does
the acting and env steps while the calling thread stores and updates (see
:mod:`kitae.actor_learner`). A JAX-native env trains on the compiled path instead
(:func:`kitae.compiled.train_agent_compiled`). Periodic checkpoints and evaluations go through
:mod:`kitae.checkpoint` and :mod:`kitae.evaluation`.

This module does not import the agent module: the methods run on the agent they are inherited by.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from kitae import guards
from kitae.actor_learner import ActorLearner, VectorStep
from kitae.checkpoint import checkpoint_interval
from kitae.compiled import train_agent_compiled
from kitae.envs.jax_env import is_jax_env
from kitae.envs.vector import as_vector_env, true_next_observation
from kitae.evaluation import evaluate
from kitae.masking import check_info_mask
from kitae.modules.encoders import observation_shapes
from kitae.modules.optimizer import learning_rate_metrics
from kitae.types import Agent


class GymnasiumLoop:
    """The host training loop of an agent (a mixin of :class:`kitae.agent.BaseAgent`, whose
    attributes and hooks it uses: ``config``, ``explore``, ``_store``, ``expected_updates``,
    ``on_env_reset``, ``save``...)."""

    # ---- training -----------------------------------------------------------------------
    def _check_env(self, env: gym.vector.VectorEnv) -> None:
        cfg = self.config.env_cfg
        if env.num_envs != cfg.n_envs:
            raise ValueError(
                f"env_cfg.n_envs={cfg.n_envs} but the env has {env.num_envs} envs; build the "
                "config with kitae.config.EnvConfig.from_env(env)."
            )
        expected = observation_shapes(cfg.observation_space)
        found = observation_shapes(env.single_observation_space)
        if found != expected:
            raise ValueError(
                f"env_cfg.observation_space has shape {expected} but the env's observations have "
                f"shape {found}; the networks were built for the former: rebuild the agent with "
                "the env's spaces."
            )
        if env.single_action_space != cfg.action_space:
            raise ValueError(
                f"env_cfg.action_space={cfg.action_space} differs from the env's action space "
                f"{env.single_action_space}; rebuild the agent with the env's spaces."
            )

    def check_trainable(self, env: Any, n_env_steps: int) -> None:
        """The checks :meth:`train` makes before its first step (callable before a run directory
        exists, as ``kitae train`` does): the loop fits the env, and ``n_env_steps`` more
        transitions perform at least one update.

        Raises:
            ValueError: for ``train_cfg.actor_learner`` on a JAX env, or a run too short for one
                update (see :meth:`~kitae.agent.BaseAgent.zero_update_message`).
        """
        collected = n_env_steps
        if is_jax_env(env):
            if self.config.train_cfg.actor_learner:
                raise ValueError(
                    "train_cfg.actor_learner=True is for the gymnasium loop: on a JAX env the "
                    "compiled path runs acting and updates in one program. Set "
                    "train_cfg.actor_learner=False (--train-cfg.no-actor-learner)."
                )
            # the compiled loop collects whole iterations: n_envs transitions off-policy, one
            # rollout on-policy
            per_iteration = (
                self.config.env_cfg.n_envs
                if self.algo_type == "off_policy"
                else self.config.update_cfg.max_buffer_size
            )
            collected = -(-n_env_steps // per_iteration) * per_iteration
        if self.expected_updates(collected) == 0:
            raise ValueError(self.zero_update_message(n_env_steps))

    def train(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        n_env_steps: int | None = None,
        *,
        progress_bar: bool | None = None,
        callback: Callable[[Agent], None] | None = None,
        callback_every: int = 10_000,
    ) -> dict[str, Any]:
        """Trains for ``n_env_steps`` transitions (default ``config.train_cfg.n_env_steps``).

        Calling ``train`` again with the same env continues its running episodes; another env
        is reset (with ``config.seed`` the first time). With ``train_cfg.save_frequency``,
        checkpoints are written along the way and at the end (see :mod:`kitae.checkpoint`).

        Args:
            env: a gymnasium vector env with same-step autoreset (see
                :func:`kitae.envs.make.make_vec_env`), a single gymnasium env, or a JAX-native
                env (a gymnax env or :class:`~kitae.envs.jax_env.JaxEnv`), which trains on the
                compiled path (:func:`kitae.compiled.train_agent_compiled`).
            n_env_steps: transitions to collect, summed over envs.
            progress_bar: override ``config.train_cfg.progress_bar``.
            callback: called with the agent every ``callback_every`` transitions (gymnasium
                path), e.g. to evaluate or save it.
            callback_every: transitions between two callbacks.

        Returns:
            A summary: ``env_steps`` (total so far), ``n_updates`` (in this call), ``episodes``
            (finished so far) and ``train_s`` (this call); with ``train_cfg.actor_learner``, also
            how many updates behind the learner's the acting parameters were and where the time
            went (:meth:`kitae.actor_learner.ActorLearner.stats`).

        Raises:
            ValueError: if the env does not match the config, or the run would perform no update,
                or ``train_cfg.actor_learner`` is set for a JAX env or an agent that does not
                support it.
        """
        n_env_steps = self.config.train_cfg.n_env_steps if n_env_steps is None else n_env_steps
        if (
            isinstance(n_env_steps, bool)
            or not isinstance(n_env_steps, numbers.Integral)
            or n_env_steps < 1
        ):
            raise ValueError(f"n_env_steps={n_env_steps!r} is invalid: it must be an integer >= 1.")
        if is_jax_env(env):
            if callback is not None:
                raise ValueError(
                    "callback is for the gymnasium loop; on a JAX env use "
                    "kitae.compiled.make_agent_train(..., log_callback=...)."
                )
            self.check_trainable(env, n_env_steps)
            return train_agent_compiled(self, env, n_env_steps, progress_bar=progress_bar)
        save_every = checkpoint_interval(self)
        source = env
        continuing = source is self._env_source and self._observation is not None
        env = self._env if continuing else as_vector_env(env)
        self._check_env(env)
        if not continuing:
            self.on_env_reset()
        self.check_trainable(env, n_env_steps)
        if self.env_steps + n_env_steps > self.config.train_cfg.n_env_steps and (
            self.config.update_cfg.learning_rate_annealing
        ):
            warnings.warn(
                f"training to {self.env_steps + n_env_steps} transitions goes past "
                f"train_cfg.n_env_steps={self.config.train_cfg.n_env_steps}, over which the "
                "learning rate is annealed to 0.",
                stacklevel=2,
            )

        n_envs = env.num_envs
        if continuing:
            obs = self._observation  # continue the running episodes of the previous call
        else:
            obs, reset_infos = env.reset(seed=None if self._env_seeded else self.config.seed)
            check_info_mask(reset_infos, self.config.env_cfg.observation_space)
            guards.check_observations(self, obs, env.single_observation_space, n_envs, "at reset")
            self._env_seeded = True
            self.tracker.returns[:] = 0.0
            self.tracker.lengths[:] = 0
        show = self.config.train_cfg.progress_bar if progress_bar is None else progress_bar
        n_vector_steps = math.ceil(n_env_steps / n_envs)
        refresh = max(1, n_vector_steps // 200)
        log_every = max(1, self.config.train_cfg.log_frequency // n_envs)
        bar = tqdm(total=n_vector_steps * n_envs, unit="step", disable=not show, mininterval=0.5)
        start_updates, start = self.n_updates, time.perf_counter()
        last_callback = self.env_steps // callback_every
        last_save, saved_at = (self.env_steps // save_every if save_every else 0), None
        last_time, last_steps = start, self.env_steps
        log_time, log_steps = start, self.env_steps
        eval_every = self.config.train_cfg.eval_frequency
        if eval_every > 0:
            self._check_eval_env()
        last_eval = self.env_steps // eval_every if eval_every > 0 else 0
        steps = self._vector_steps(env, obs, n_vector_steps)
        with contextlib.closing(steps), guards.explain_env_errors(self):
            for i, step in enumerate(steps, 1):
                if guards.skip_non_finite(self, step, i):  # raises unless non_finite="skip"
                    obs = step.next_observation
                    continue
                obs, actions, log_probs, next_obs, rewards, terminated, truncated, infos = step
                ended = np.logical_or(terminated, truncated)
                for ep_return, ep_length in self.tracker.step(rewards, ended):
                    self.logger.log(
                        "episodes",
                        self.env_steps + n_envs,
                        {"return": ep_return, "length": ep_length},
                    )
                self.env_steps += n_envs
                self._store(
                    self.experience_type(
                        observation=obs,
                        action=actions,
                        reward=rewards,
                        done=terminated,
                        next_observation=true_next_observation(next_obs, infos, ended),
                        log_prob=np.asarray(log_probs),
                        truncated=truncated,
                    )
                )
                obs = next_obs
                if callback is not None and self.env_steps // callback_every > last_callback:
                    last_callback = self.env_steps // callback_every
                    callback(self)
                if save_every and self.env_steps // save_every > last_save:
                    last_save, saved_at = self.env_steps // save_every, self.env_steps
                    self.save()
                if i % log_every == 0 and self.last_info:
                    guards.check_divergence(self)
                    now = time.perf_counter()
                    sps = (self.env_steps - log_steps) / max(now - log_time, 1e-9)
                    log_time, log_steps = now, self.env_steps
                    self.logger.log("train", self.env_steps, self.train_metrics(sps))
                if eval_every > 0 and self.env_steps // eval_every > last_eval:
                    last_eval = self.env_steps // eval_every
                    self.evaluate_periodically()
                if i % refresh == 0 or i == n_vector_steps:
                    now = time.perf_counter()
                    sps = (self.env_steps - last_steps) / max(now - last_time, 1e-9)
                    last_time, last_steps = now, self.env_steps
                    bar.update(refresh * n_envs if i % refresh == 0 else (i % refresh) * n_envs)
                    bar.set_postfix(
                        sps=f"{sps:,.0f}", ret=f"{self.tracker.recent_mean:.1f}", refresh=False
                    )
                if guards.stop_requested():  # a signal asked to stop (see kitae.guards)
                    break
        bar.close()
        guards.check_divergence(self)
        self._env_source, self._env, self._observation = source, env, obs
        if save_every and saved_at != self.env_steps:
            self.save()
        self.logger.close()
        summary = {
            "env_steps": self.env_steps,
            "n_updates": self.n_updates - start_updates,
            "episodes": len(self.tracker.finished),
            "train_s": time.perf_counter() - start,
        }
        if isinstance(steps, ActorLearner):
            summary.update(steps.stats())
        return summary

    def _vector_steps(
        self, env: gym.vector.VectorEnv, obs: Any, n_vector_steps: int
    ) -> Iterator[VectorStep]:
        """The ``n_vector_steps`` vector steps :meth:`train` stores, acting from ``obs``: acted
        and stepped here, between two stored steps, or by an actor thread with
        ``train_cfg.actor_learner`` (:class:`~kitae.actor_learner.ActorLearner`). Close the
        iterator when done."""
        if self.config.train_cfg.actor_learner:
            return ActorLearner(self, env, obs, n_vector_steps)
        return self._sequential_steps(env, obs, n_vector_steps)

    def _sequential_steps(
        self, env: gym.vector.VectorEnv, obs: Any, n_vector_steps: int
    ) -> Iterator[VectorStep]:
        """Acts and steps the env once each time the loop asks for the next vector step."""
        for _ in range(n_vector_steps):
            actions, log_probs = self.explore(obs)
            actions = np.asarray(actions)
            next_obs, rewards, terminated, truncated, infos = env.step(self.to_env_action(actions))
            yield VectorStep(
                obs, actions, log_probs, next_obs, rewards, terminated, truncated, infos
            )
            obs = next_obs

    def train_metrics(self, steps_per_second: float) -> dict[str, float]:
        """One ``train`` row: the recent episodes' mean ``episode_return`` / ``episode_length``
        (last 20), the last update's info (losses...), the base learning rate of every
        TrainState, ``epsilon`` for agents with an ``exploration`` schedule, and
        ``steps_per_second`` since the previous row."""
        recent = self.tracker.finished[-self.tracker.recent_returns.maxlen :]
        row: dict[str, float] = {
            "episode_return": float(np.mean([r for r, _ in recent])) if recent else math.nan,
            "episode_length": float(np.mean([n for _, n in recent])) if recent else math.nan,
            **self.last_info,
            **learning_rate_metrics(self.state),
        }
        exploration = getattr(self, "exploration", None)
        if callable(exploration):
            row["epsilon"] = float(exploration(self.env_steps))
        row["steps_per_second"] = steps_per_second
        return row

    def _check_eval_env(self) -> None:
        task = self.config.env_cfg.task_name
        if task not in gym.registry:
            raise ValueError(
                f"train_cfg.eval_frequency={self.config.train_cfg.eval_frequency} evaluates on "
                f"gymnasium.make(env_cfg.task_name), but env_cfg.task_name={task!r} is not a "
                "registered gymnasium id; register it or set eval_frequency=-1."
            )

    def evaluate_periodically(self) -> np.ndarray:
        """Evaluates the greedy policy on ``train_cfg.eval_episodes`` episodes of a separate
        ``env_cfg.task_name`` env (episode ``i`` reset with seed ``config.seed + 10_000 + i``,
        the same at every evaluation) and logs ``eval_return_mean`` / ``eval_return_std`` to the
        ``eval`` stream. The interaction keys are preserved: training is unchanged.

        Returns:
            ``float64[eval_episodes]`` returns.
        """
        returns = evaluate(
            self,
            self.config.env_cfg.task_name,
            self.config.train_cfg.eval_episodes,
            seed=self.config.seed + 10_000,
        )
        self.logger.log(
            "eval",
            self.env_steps,
            {"eval_return_mean": returns.mean(), "eval_return_std": returns.std()},
        )
        return returns


__all__ = ["GymnasiumLoop"]
