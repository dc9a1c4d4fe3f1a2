"""Agents: the four factories wired to buffers and a vectorized gymnasium training loop.

An agent is built from four factories, each returning one pure function that is jitted once:

* ``train_state_factory(key, config, *, preprocess_fn, tabulate) -> state``
* ``explore_factory(config) -> explore_fn(state, key, observations, **hyper)``, which returns
  ``(actions, log_probs)``
* ``process_experience_factory(config) -> process_experience_fn(state, key, experience) -> batch``
* ``update_step_factory(config) -> update_step_fn(state, key, batch) -> (state, info)``

:class:`OffPolicyAgent` stores transitions in a :class:`~kitae.buffer.ReplayBuffer`; each update
samples ``n_epochs`` fresh batches, processes them and takes one gradient step on each, all in
one compiled call (``lax.scan``). :class:`OnPolicyAgent` collects a rollout ``[T, N, ...]``,
processes it per env (``process_experience_fn`` sees one env's ``[T, ...]`` trajectory and is
vmapped over envs, e.g. for GAE), then runs ``n_epochs`` shuffled passes of minibatches, also in
one compiled call.

The gymnasium loop does, per vector step, one jitted ``explore`` call, the env step, and numpy
copies into a preallocated host buffer; nothing else is dispatched to JAX per step. With
``train_cfg.actor_learner``, an actor thread does the acting and env steps while the calling
thread stores and updates (see :mod:`kitae.actor_learner`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import math
import numbers
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from kitae import guards
from kitae.actor_learner import ActorLearner, VectorStep
from kitae.buffer import (
    Experience,
    PrioritizedSampling,
    ReplayBuffer,
    RolloutBuffer,
    make_replay_buffer,
)
from kitae.config import (
    AlgoConfig,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    recording_update_reads,
    validate_config,
    warn_unread_update_fields,
)
from kitae.envs.jax_env import is_jax_env
from kitae.frame_replay import check_frame_stacks, frame_stack_from_config
from kitae.logger import Logger, learning_rate_metrics
from kitae.masking import check_info_mask
from kitae.modules.encoders import observation_shapes
from kitae.modules.train_state import TrainState
from kitae.schedules import (
    off_policy_min_transitions,
    off_policy_update_count,
    on_policy_update_count,
)
from kitae.types import AgentState, Info

KEY_POOL_SIZE = 4096
"""Interaction keys are split this many at a time, in one jitted call."""


class IAgent(abc.ABC):
    """The agent interface."""

    @abc.abstractmethod
    def explore(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        """Actions (and their log-probabilities) for training, ``observation: [N, ...]``."""

    @abc.abstractmethod
    def select_action(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        """Greedy / deterministic actions for evaluation, ``observation: [N, ...]``."""

    @abc.abstractmethod
    def train(self, env: Any, n_env_steps: int | None = None) -> None:
        """Trains on ``env`` for ``n_env_steps`` transitions."""


def _split_pool(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    key, sub = jax.random.split(key)
    return key, jax.random.split(sub, KEY_POOL_SIZE)


_split_pool_jit = jax.jit(_split_pool)


def config_to_dict(config: AlgoConfig) -> dict[str, Any]:
    """A JSON-friendly view of a config (spaces as their ``repr``)."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            out = {f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            out["_type"] = type(obj).__qualname__
            return out
        if isinstance(obj, (list, tuple)):
            return [convert(x) for x in obj]
        if isinstance(obj, dict):
            return {str(k): convert(v) for k, v in obj.items()}
        if isinstance(obj, (int, float, str, bool)) or obj is None:
            return obj
        return repr(obj)

    return convert(config)


class EpisodeTracker:
    """Per-env running episode return and length; records every finished episode."""

    def __init__(self, n_envs: int, window: int = 20):
        self.returns = np.zeros(n_envs, np.float64)
        self.lengths = np.zeros(n_envs, np.int64)
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.finished: list[tuple[float, int]] = []

    def step(self, rewards: np.ndarray, ended: np.ndarray) -> list[tuple[float, int]]:
        """Adds one vector step; returns the ``(return, length)`` of episodes that just ended."""
        self.returns += rewards
        self.lengths += 1
        if not ended.any():
            return []
        done = []
        for i in np.flatnonzero(ended):
            done.append((float(self.returns[i]), int(self.lengths[i])))
            self.recent_returns.append(float(self.returns[i]))
        self.returns[ended] = 0.0
        self.lengths[ended] = 0
        self.finished.extend(done)
        return done

    @property
    def recent_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")


def as_vector_env(env: gym.Env | gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """Returns ``env`` if it is a vector env with same-step autoreset; wraps a plain env.

    Raises:
        ValueError: for a vector env whose autoreset mode is not ``SAME_STEP``: with next-step
            autoreset every reset would produce a transition that crosses episodes.
    """
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(
                f"env has autoreset_mode={mode}: kitae's loop needs "
                "gymnasium.vector.AutoresetMode.SAME_STEP so that no stored transition crosses an "
                "episode reset. Build it with kitae.envs.make.make_vec_env, or pass "
                "vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP} to "
                "gymnasium.make_vec."
            )
        return env
    if isinstance(env, gym.Env):
        return gym.vector.SyncVectorEnv(
            [lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
    raise TypeError(f"env must be a gymnasium Env or VectorEnv, got {type(env).__name__}.")


def true_next_observation(next_obs: Any, infos: dict, ended: np.ndarray) -> Any:
    """``next_obs`` (an array ``[N, ...]`` or a dict of them, e.g. for a Dict space) with the
    final observation of the envs whose episode just ended."""
    if not ended.any():
        return next_obs
    real = _copy_observation(next_obs)
    final_obs, mask = infos["final_obs"], infos["_final_obs"]
    for i in np.flatnonzero(mask):
        _set_observation_row(real, i, final_obs[i])
    return real


def _copy_observation(obs: Any) -> Any:
    if isinstance(obs, Mapping):
        return type(obs)((k, _copy_observation(v)) for k, v in obs.items())
    return np.array(obs, copy=True)


def _set_observation_row(batch: Any, i: int, obs: Any) -> None:
    if isinstance(batch, Mapping):
        for k, v in batch.items():
            _set_observation_row(v, i, obs[k])
    else:
        batch[i] = obs


class BaseAgent(IAgent):
    """Wires the four factories to a buffer and the gymnasium training loop.

    Args:
        run_name: name of the run (used for the run directory and logs).
        config: the full configuration; validated here.
        train_state_factory: builds :attr:`state`.
        explore_factory: builds :attr:`explore_fn` (jitted once).
        process_experience_factory: builds the experience processing, compiled into the update.
        update_step_factory: builds one gradient step, compiled into the update.
            A factory left to ``None`` is taken from the class attribute :attr:`factories`
            (how built-in agents declare theirs).
        preprocess_fn: optional observation preprocessing handed to ``train_state_factory``.
        tabulate: print the networks' parameter tables.
        experience_type: the transition container the loop fills (an :class:`Experience`).
        run_dir: parent directory of the run directory ``run_dir/run_name`` (config and logs);
            ``None`` (default) writes nothing to disk.
    """

    algo_type: str = "base"

    def __init__(
        self,
        run_name: str,
        config: AlgoConfig,
        train_state_factory: Callable[..., AgentState] | None = None,
        explore_factory: Callable[[AlgoConfig], Callable] | None = None,
        process_experience_factory: Callable[[AlgoConfig], Callable] | None = None,
        update_step_factory: Callable[[AlgoConfig], Callable] | None = None,
        *,
        preprocess_fn: Callable | None = None,
        tabulate: bool = False,
        experience_type: type = Experience,
        run_dir: str | Path | None = None,
    ):
        given = (
            train_state_factory,
            explore_factory,
            process_experience_factory,
            update_step_factory,
        )
        factories = tuple(
            f if f is not None else d
            for f, d in zip(given, self.factories or (None,) * 4, strict=True)
        )
        if any(f is None for f in factories):
            raise TypeError(
                f"{type(self).__name__} needs its four factories: pass them to __init__ or set "
                "the class attribute `factories`."
            )
        train_state_factory, explore_factory, process_experience_factory, update_step_factory = (
            factories
        )
        validate_config(config)
        self.validate_config(config)
        self.run_name = run_name
        self.config = config
        self.experience_type = experience_type
        self.preprocess_fn = preprocess_fn

        init_key, self._interact_key, self._update_key = jax.random.split(
            jax.random.PRNGKey(config.seed), 3
        )
        self.train_state_factory = train_state_factory
        self.explore_factory = explore_factory
        self.process_experience_factory = process_experience_factory
        self.update_step_factory = update_step_factory
        # Which update_cfg fields the factories and the update read while the agent is built:
        # the others, when set, would silently have no effect.
        with recording_update_reads(config) as update_reads:
            self.state = train_state_factory(
                init_key, config, preprocess_fn=preprocess_fn, tabulate=tabulate
            )
            self._acting_state = None
            self.explore_fn = jax.jit(explore_factory(config))
            self.process_experience_fn = process_experience_factory(config)
            self.update_step_fn = update_step_factory(config)
            self.update_fn = jax.jit(
                self.make_update_fn(), donate_argnums=self.update_donate_argnums
            )
        warn_unread_update_fields(type(self).__name__, config.update_cfg, update_reads)

        self._trace_key: jax.Array | None = None
        self.hyperparams: dict[str, Any] = {}
        self._key_pool = np.zeros((0, 2), np.uint32)
        self._key_index = 0
        self.env_steps = 0
        self.n_updates = 0
        self.last_info: Info = {}
        self.tracker = EpisodeTracker(config.env_cfg.n_envs)
        self._env_seeded = False
        self._env_source: Any = None
        self._env: Any = None
        self._observation: Any = None
        self.logger = Logger(
            None if run_dir is None else Path(run_dir) / run_name,
            backends=config.train_cfg.loggers,
        )
        self.logger.write_config(config_to_dict(config))

    @classmethod
    def default_config(
        cls,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        seed: int = 0,
        n_env_steps: int | None = None,
        algo_params: Any = None,
        update_cfg: UpdateConfig | None = None,
        train_cfg: TrainConfig | None = None,
        tuned: bool = True,
    ) -> AlgoConfig:
        """A config for ``env`` with this agent's defaults (:attr:`params_type`,
        :attr:`default_update_cfg`); any part can be replaced.

        With ``tuned``, the sections not given take the overrides of :data:`kitae.zoo.TUNED`
        for this class and the env's id (``env_cfg.task_name``); ``n_env_steps`` overrides the
        table's, and a section given replaces the table's whole section.

        Raises:
            TypeError: if the agent class declares no ``params_type`` and none is given.
        """
        from kitae.zoo import find_tuned

        env_cfg = EnvConfig.from_env(env)
        entry = find_tuned(cls, env_cfg.task_name) if tuned else None
        if algo_params is None:
            if cls.params_type is None:
                raise TypeError(f"{cls.__name__} has no params_type: pass algo_params.")
            algo_params = cls.params_type()
            algo_params = entry.apply("algo_params", algo_params) if entry else algo_params
        if update_cfg is None and entry is not None:
            update_cfg = entry.apply("update_cfg", cls.default_update_cfg)
        if train_cfg is None and entry is not None:
            train_cfg = entry.apply("train_cfg", TrainConfig())
        train_cfg = dataclasses.replace(train_cfg or TrainConfig())
        if n_env_steps is not None:
            train_cfg.n_env_steps = n_env_steps
        return AlgoConfig(
            seed=seed,
            algo_params=algo_params,
            update_cfg=dataclasses.replace(update_cfg or cls.default_update_cfg),
            train_cfg=train_cfg,
            env_cfg=env_cfg,
        )

    params_type: type | None = None
    """The algorithm's params dataclass (used by :meth:`default_config`)."""

    def as_jax_env(self, env: Any) -> Any:
        """The :class:`~kitae.envs.jax_env.JaxEnv` this agent acts in for ``env`` (a gymnax id,
        gymnax env or JaxEnv) when evaluating on JAX envs; agents whose acting needs more than
        observations (a search over env states) override it."""
        from kitae.envs.jax_env import make_jax_env

        return make_jax_env(env)

    traced_hyperparams: tuple[str, ...] = ()
    """Fields of ``algo_params`` that the acting function reads from :attr:`hyperparams` when
    given, so a compiled program can take them as traced values (a sweep vmaps over them, as
    over ``learning_rate``, without recompiling)."""
    default_n_envs: int = 1
    """Number of envs the agent's defaults were chosen for (used by the command line)."""
    factories: tuple[Callable, Callable, Callable, Callable] | None = None
    """Default ``(train_state, explore, process_experience, update_step)`` factories."""
    default_update_cfg: UpdateConfig = UpdateConfig()
    """Update settings used by :meth:`default_config`."""
    update_donate_argnums: tuple[int, ...] = ()
    """Arguments of :attr:`update_fn` donated to it (see :meth:`make_update_fn`)."""

    # ---- hooks for subclasses -------------------------------------------------------------
    def validate_config(self, config: AlgoConfig) -> None:
        """Checks the parts of the config specific to this kind of agent."""

    @abc.abstractmethod
    def make_update_fn(self) -> Callable:
        """Builds the pure function that one update call runs (jitted once in ``__init__``)."""

    @abc.abstractmethod
    def expected_updates(self, n_env_steps: int) -> int:
        """How many update calls ``train(env, n_env_steps)`` will make."""

    @abc.abstractmethod
    def _store(self, experience: Experience) -> None:
        """Stores one vector step and runs the updates that became due."""

    # ---- interaction --------------------------------------------------------------------
    def interact_keys(self, observation: Any) -> np.ndarray | jax.Array:
        """A fresh PRNG key for one interaction step.

        Keys are drawn from a pool that one jitted call splits :data:`KEY_POOL_SIZE` at a
        time, so acting costs no eager ``jax.random`` dispatch per step. While the compiled
        path traces :meth:`explore`, the traced key of that step is returned instead.
        """
        del observation
        if self._trace_key is not None:
            return self._trace_key
        if self._key_index >= len(self._key_pool):
            self._interact_key, pool = _split_pool_jit(self._interact_key)
            self._key_pool = np.asarray(pool)
            self._key_index = 0
        key = self._key_pool[self._key_index]
        self._key_index += 1
        return key

    @contextlib.contextmanager
    def preserved_keys(self):
        """Restores the interaction-key stream on exit, so that what runs inside (e.g. an
        evaluation calling :meth:`select_action`) does not change the course of training."""
        saved = (self._interact_key, self._key_pool, self._key_index)
        try:
            yield self
        finally:
            self._interact_key, self._key_pool, self._key_index = saved

    @property
    def acting_state(self) -> AgentState:
        """:attr:`state` without optimizer states: what acting needs, cheaper to pass per step.

        Every :class:`~kitae.modules.train_state.TrainState` in the state has its ``opt_state``
        and ``tx`` removed; cached until the next update.
        """
        if self._acting_state is None:
            self._acting_state = jax.tree.map(
                lambda s: s.replace(opt_state=None, tx=None) if isinstance(s, TrainState) else s,
                self.state,
                is_leaf=lambda s: isinstance(s, TrainState),
            )
        return self._acting_state

    def explore(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        """Calls ``explore_fn(acting_state, key, observation)``; override it to pass
        hyperparameters."""
        return self.explore_fn(self.acting_state, self.interact_keys(observation), observation)

    def to_env_action(self, actions: np.ndarray) -> np.ndarray:
        """Maps the actions the agent stores to the actions the env receives (identity here;
        e.g. clipping or rescaling to the action bounds for continuous agents)."""
        return actions

    @contextlib.contextmanager
    def tracing(
        self,
        state: AgentState,
        key: jax.Array,
        env_steps: jax.Array,
        hyperparams: dict[str, Any] | None = None,
    ):
        """Lets :meth:`explore` / :meth:`select_action` run inside a compiled program.

        Within the context, :attr:`state` (and :attr:`acting_state`) is ``state``,
        :attr:`env_steps` is the traced step counter, :meth:`interact_keys` returns ``key`` and
        :attr:`hyperparams` holds the run's traced hyperparameters; everything is restored on
        exit. This is how the compiled path uses an agent's own ``explore`` unchanged.
        """
        saved = (self.state, self._acting_state, self.env_steps, self._trace_key, self.hyperparams)
        self.state, self._acting_state, self.env_steps = state, state, env_steps
        self._trace_key, self.hyperparams = key, dict(hyperparams or {})
        try:
            yield self
        finally:
            (self.state, self._acting_state, self.env_steps, self._trace_key, self.hyperparams) = (
                saved
            )

    def act_fn(self, greedy: bool = False) -> Callable:
        """A pure ``(state, key, observations, env_steps, hyperparams) -> (actions, log_probs)``
        that runs this agent's :meth:`explore` (or :meth:`select_action` when ``greedy``)."""

        def act(state, key, observations, env_steps, hyperparams):
            with self.tracing(state, key, env_steps, hyperparams):
                method = self.select_action if greedy else self.explore
                return method(observations)

        return act

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

    def train(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        n_env_steps: int | None = None,
        *,
        progress_bar: bool | None = None,
        callback: Callable[[BaseAgent], None] | None = None,
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
            from kitae.compiled import train_agent_compiled

            if callback is not None:
                raise ValueError(
                    "callback is for the gymnasium loop; on a JAX env use "
                    "kitae.compiled.make_agent_train(..., log_callback=...)."
                )
            if self.config.train_cfg.actor_learner:
                raise ValueError(
                    "train_cfg.actor_learner=True is for the gymnasium loop: on a JAX env the "
                    "compiled path runs acting and updates in one program. Set "
                    "train_cfg.actor_learner=False."
                )

            return train_agent_compiled(self, env, n_env_steps, progress_bar=progress_bar)
        from kitae.checkpoint import checkpoint_interval

        save_every = checkpoint_interval(self)
        source = env
        continuing = source is self._env_source and self._observation is not None
        env = self._env if continuing else as_vector_env(env)
        self._check_env(env)
        if not continuing:
            self.on_env_reset()
        if self.expected_updates(n_env_steps) == 0:
            raise ValueError(self.zero_update_message(n_env_steps))
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
        from kitae.evaluation import evaluate

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

    def on_env_reset(self) -> None:
        """Called when training starts on a new env (its episodes start over): drops data that
        belonged to the previous env's unfinished trajectories."""

    def run_update(self, data: Any) -> None:
        """Runs one update (all its gradient steps, one compiled call) on ``data``: the replay
        buffer state off-policy, a rollout on-policy; then :meth:`record_update`. Loops other
        than :meth:`train` (e.g. :mod:`kitae.multiagent`) drive the agent through it."""
        self.state, self._update_key, info = self.update_fn(self.state, data, self._update_key)
        self.record_update(info)

    def record_update(self, info: Info) -> None:
        """Records an update of :attr:`state`: acting uses the new parameters, ``n_updates``
        counts it, ``last_info`` keeps its diagnostics."""
        self._acting_state = None
        self.n_updates += 1
        self.last_info = guards.record_update(self, info)

    def zero_update_message(self, n_env_steps: int) -> str:
        """Why ``train(n_env_steps)`` would perform no update (the error :meth:`train` raises)."""
        return f"train(n_env_steps={n_env_steps}) would perform zero updates."

    # ---- checkpoints (see kitae.checkpoint) ------------------------------------------------
    def save(
        self,
        path: str | Path | None = None,
        *,
        include_buffer: bool | None = None,
        keep: int | None = None,
    ) -> Path:
        """Writes a checkpoint of the complete training state to
        ``<path>/checkpoints/step_<env_steps>/``.

        Args:
            path: the run directory (default: this agent's, ``<run_dir>/<run_name>``).
            include_buffer: include the replay buffer (default ``train_cfg.save_buffer``).
            keep: keep only this many most recent checkpoints (default
                ``train_cfg.keep_checkpoints``).

        Returns:
            The checkpoint directory.
        """
        from kitae.checkpoint import save_agent

        guards.check_before_saving(self)
        return save_agent(self, path, include_buffer=include_buffer, keep=keep)

    def restore(self, path: str | Path) -> Path:
        """Loads a checkpoint (a run directory's latest, or a checkpoint directory) into this
        agent, built with the same config; see :func:`kitae.checkpoint.restore_agent`.

        Returns:
            The checkpoint directory loaded.
        """
        from kitae.checkpoint import restore_agent

        return restore_agent(self, path)

    @classmethod
    def resume(cls, run_dir: str | Path, **kwargs: Any) -> BaseAgent:
        """Rebuilds the agent of a run directory from its latest checkpoint (config included) to
        continue training; see :func:`kitae.checkpoint.resume_agent`.

        Args:
            run_dir: the run directory, ``<run_dir>/<run_name>``.
            **kwargs: extra constructor arguments (e.g. ``preprocess_fn``).

        Returns:
            The agent.
        """
        from kitae.checkpoint import resume_agent

        return resume_agent(cls, run_dir, **kwargs)

    @classmethod
    def load_for_inference(cls, path: str | Path, **kwargs: Any) -> BaseAgent:
        """An agent with a checkpoint's parameters, for acting (no optimizer state, no buffer);
        see :func:`kitae.checkpoint.load_for_inference`."""
        from kitae.checkpoint import load_for_inference

        return load_for_inference(cls, path, **kwargs)

    # ---- evaluation helpers ---------------------------------------------------------------
    @property
    def episode_returns(self) -> list[float]:
        """Returns of every episode finished during training, in order."""
        return [r for r, _ in self.tracker.finished]


class OffPolicyAgent(BaseAgent):
    """An agent that learns from a replay buffer.

    Schedule (from ``algo_params``): after ``start_step`` transitions (``-1``: as soon as the
    buffer holds ``batch_size``), one update every ``skip_steps`` transitions; an update takes
    ``update_cfg.n_epochs`` gradient steps, each on a fresh sample of ``batch_size``.

    Replay options, also read from ``algo_params`` when present (see
    :func:`replay_buffer_from_config`): ``n_step > 1`` makes every sample a window of ``n_step``
    consecutive transitions of one env (leaves ``[B, n_step, ...]``; reduce it with
    :func:`kitae.timesteps.compute_n_step_return`); ``prioritized`` uses proportional
    prioritized replay, in which case ``process_experience_fn`` must return a ``NamedTuple`` with
    a ``weight`` field (filled with the importance weights, ``[B]``, for the update step to weight
    its per-sample losses) and ``update_step_fn``'s info must hold ``"td_error"`` (``[B]``, written
    back as the new priorities). Frame-stacked observations are stored one frame per step
    (``update_cfg.frame_stack_replay``, see :mod:`kitae.frame_replay`); the sampled transitions
    are the same.
    """

    algo_type = "off_policy"
    update_donate_argnums = (1,)
    """The buffer state is donated to the update: priorities change in place, storage passes
    through without a copy."""
    STAGING_STEPS = 64
    """Vector steps staged on the host before one in-place write to the replay buffer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer_state = None
        self._staging = RolloutBuffer(min(self.STAGING_STEPS, self.replay_buffer.slots_per_env))
        staged = self._staging.n_steps
        buffer = self.replay_buffer

        def add_staged(buffer_state, experience, count):
            valid = jnp.broadcast_to((jnp.arange(staged) < count)[:, None], (staged, buffer.n_envs))
            return buffer.add_batch(buffer_state, experience, valid)

        self._add_staged = jax.jit(add_staged, donate_argnums=0)
        self._end_episodes = jax.jit(buffer.end_episodes, donate_argnums=0)
        self._ticks = 0

    @functools.cached_property
    def replay_buffer(self) -> ReplayBuffer:
        """The :class:`~kitae.buffer.ReplayBuffer` (its state is :attr:`buffer_state`)."""
        n_updates = off_policy_update_count(
            self.config.train_cfg.n_env_steps,
            self.config.env_cfg.n_envs,
            self.skip_steps,
            self.start_step,
            off_policy_min_transitions(self.config),
        )
        return replay_buffer_from_config(self.config, n_updates)

    @property
    def sequence_length(self) -> int | None:
        """Transitions per sample (``algo_params.n_step``), ``None`` for single transitions."""
        return sequence_length_from_config(self.config)

    def run_update(self, data: Any) -> None:
        self.state, self.buffer_state, self._update_key, info = self.update_fn(
            self.state, data, self._update_key
        )
        self.record_update(info)

    @property
    def skip_steps(self) -> int:
        return int(getattr(self.config.algo_params, "skip_steps", 1))

    @property
    def start_step(self) -> int:
        return int(getattr(self.config.algo_params, "start_step", -1))

    def validate_config(self, config: AlgoConfig) -> None:
        u, e = config.update_cfg, config.env_cfg
        for name, default in (("skip_steps", 1), ("start_step", -1)):
            if not hasattr(config.algo_params, name):
                warnings.warn(
                    f"algo_params ({type(config.algo_params).__name__}) has no field {name!r}: "
                    f"the update schedule uses {name}={default}.",
                    stacklevel=3,
                )
        if u.batch_size > u.max_buffer_size:
            raise ValueError(
                f"update_cfg.batch_size={u.batch_size} is larger than update_cfg.max_buffer_size="
                f"{u.max_buffer_size}: the replay buffer can never hold one batch, so the agent "
                "would never update. Use batch_size <= max_buffer_size."
            )
        if u.max_buffer_size < e.n_envs:
            raise ValueError(
                f"update_cfg.max_buffer_size={u.max_buffer_size} is smaller than env_cfg.n_envs="
                f"{e.n_envs}: the buffer needs one slot per env; raise max_buffer_size."
            )

    def expected_updates(self, n_env_steps: int) -> int:
        def count(steps: int) -> int:
            return off_policy_update_count(
                steps,
                self.config.env_cfg.n_envs,
                self.skip_steps,
                self.start_step,
                off_policy_min_transitions(self.config),
            )

        return count(self.env_steps + n_env_steps) - count(self.env_steps)

    def zero_update_message(self, n_env_steps: int) -> str:
        u, p = self.config.update_cfg, self.config.algo_params
        return (
            f"train(n_env_steps={n_env_steps}) would perform zero updates: learning starts after "
            f"max(start_step={getattr(p, 'start_step', -1)}, batch_size={u.batch_size}, "
            f"n_envs * n_step={off_policy_min_transitions(self.config)}) "
            f"transitions and updates every skip_steps={self.skip_steps}. Collect more steps, "
            "or lower start_step / batch_size / skip_steps."
        )

    def make_update_fn(self) -> Callable:
        """``update(state, buffer_state, key) -> (state, buffer_state, key, info)``, see
        :func:`make_off_policy_update`."""
        return make_off_policy_update(
            self.replay_buffer,
            self.process_experience_fn,
            self.update_step_fn,
            self.config.update_cfg.batch_size,
            self.config.update_cfg.n_epochs,
            sequence_length=self.sequence_length,
        )

    def flush(self) -> None:
        """Writes the staged transitions into the replay buffer (one in-place jitted call)."""
        if self._staging.count == 0:
            return
        storage, count = self._staging.flush()
        if self.buffer_state is None:
            example = jax.tree.map(lambda x: jnp.asarray(x[0]), storage)
            self.buffer_state = self.replay_buffer.init(example)
        self.buffer_state = self._add_staged(self.buffer_state, storage, count)
        # The staging storage is reused: make sure the copy into the buffer is done.
        jax.block_until_ready(self.buffer_state)
        check_frame_stacks(self.buffer_state)

    def on_env_reset(self) -> None:
        """Stores the staged transitions of the previous env, then ends its episodes in the
        replay buffer (see ``end_episodes``): nothing stored continues into the new ones."""
        self.flush()
        if self.buffer_state is not None:
            self.buffer_state = self._end_episodes(self.buffer_state)

    def store_transition(self, experience: Experience) -> None:
        """Stages one vector step (leaves ``[N, ...]``) for the replay buffer, without updating."""
        self._staging.add(experience)
        if self._staging.full:
            self.flush()

    def _store(self, experience: Experience) -> None:
        self.store_transition(experience)
        ticks = self.env_steps // self.skip_steps
        due, self._ticks = ticks - self._ticks, ticks
        if due <= 0:
            return
        first = max(self.start_step, off_policy_min_transitions(self.config), 1)
        if self.env_steps < first:
            return
        self.flush()
        for _ in range(due):
            self.run_update(self.buffer_state)


def replay_buffer_from_config(config: AlgoConfig, n_updates: int) -> ReplayBuffer:
    """The replay buffer an off-policy config asks for.

    Reads ``update_cfg.max_buffer_size`` and, when ``algo_params`` has them, ``prioritized``,
    ``priority_exponent`` (alpha), ``importance_exponent`` (beta at the start, annealed to 1 over
    the run's ``n_updates * update_cfg.n_epochs`` gradient steps) and ``priority_eps``, and
    ``update_cfg.frame_stack_replay`` / ``frame_stack_axis`` (see
    :func:`kitae.frame_replay.frame_stack_from_config`).
    """
    p = config.algo_params
    return make_replay_buffer(
        config.update_cfg.max_buffer_size,
        config.env_cfg.n_envs,
        prioritized=bool(getattr(p, "prioritized", False)),
        alpha=getattr(p, "priority_exponent", 0.6),
        beta_start=getattr(p, "importance_exponent", 0.4),
        beta_steps=max(n_updates * config.update_cfg.n_epochs, 1),
        eps=getattr(p, "priority_eps", 1e-6),
        frame_stack=frame_stack_from_config(config),
    )


def sequence_length_from_config(config: AlgoConfig) -> int | None:
    """Transitions per sample: ``algo_params.sequence_length`` when the params have one (e.g.
    recurrent agents), else ``algo_params.n_step`` when it is above 1 (samples are windows), else
    ``None`` (single transitions)."""
    length = getattr(config.algo_params, "sequence_length", None)
    if length is not None:
        return int(length)
    n_step = int(getattr(config.algo_params, "n_step", 1))
    return n_step if n_step > 1 else None


def make_off_policy_update(
    buffer: ReplayBuffer,
    process_experience_fn: Callable,
    update_step_fn: Callable,
    batch_size: int,
    n_epochs: int,
    *,
    sequence_length: int | None = None,
) -> Callable:
    """Builds ``update(state, buffer_state, key) -> (state, buffer_state, key, info)``.

    Each of the ``n_epochs`` scan iterations samples ``batch_size`` transitions (windows of
    ``sequence_length`` transitions when given), processes them and applies one
    ``update_step_fn``; ``info`` is averaged over iterations and gets the non-finite flags of
    :func:`kitae.guards.with_nonfinite_flags` (``info["nonfinite"]``). With a
    :class:`~kitae.buffer.PrioritizedReplayBuffer`, sampling is proportional to priority, the
    importance weights go into the processed batch's ``weight`` field, and the update's
    ``info["td_error"]`` is written back as priorities. ``buffer_state`` comes back unchanged for
    a uniform buffer (jit it with ``donate_argnums=1`` so nothing is copied).
    """
    prioritized = isinstance(buffer, PrioritizedSampling)
    length = sequence_length or 1

    def update(state, buffer_state, key):
        key, sub = jax.random.split(key)

        def body(carry, step_key):
            state, buffer_state = carry
            k_sample, k_process, k_update = jax.random.split(step_key, 3)
            slots, envs = buffer.sample_indices(buffer_state, k_sample, batch_size, length)
            batch = buffer.gather(buffer_state, slots, envs, sequence_length)
            processed = process_experience_fn(state, k_process, batch)
            if prioritized:
                if "weight" not in getattr(processed, "_fields", ()):
                    raise TypeError(
                        "prioritized replay needs process_experience_fn to return a NamedTuple "
                        f"with a `weight` field; got {type(processed).__name__}."
                    )
                weights = buffer.importance_weights(buffer_state, slots, envs, length)
                processed = processed._replace(weight=weights)
            state, info = update_step_fn(state, k_update, processed)
            if prioritized:
                info = dict(info)
                if "td_error" not in info:
                    raise KeyError(
                        "prioritized replay needs update_step_fn's info to hold 'td_error' "
                        "(per-sample [B] errors written back as priorities)."
                    )
                td_error = info.pop("td_error")
                buffer_state = buffer.update_priorities(buffer_state, slots, envs, td_error)
            return (state, buffer_state), info

        if prioritized:
            (state, buffer_state), infos = jax.lax.scan(
                body, (state, buffer_state), jax.random.split(sub, n_epochs)
            )
        else:
            # The storage is only read: keep it out of the loop carry.
            def read_only(state, step_key):
                (state, _), info = body((state, buffer_state), step_key)
                return state, info

            state, infos = jax.lax.scan(read_only, state, jax.random.split(sub, n_epochs))
        info = guards.with_nonfinite_flags(state, jax.tree.map(jnp.mean, infos))
        return state, buffer_state, key, info

    return update


def make_on_policy_update(
    process_experience_fn, update_step_fn, batch_size, n_epochs, prepare_rollout_fn=None
):
    """Builds ``update(state, rollout, key) -> (state, key, info)`` for on-policy agents.

    ``rollout`` has leaves ``[T, N, ...]``. ``prepare_rollout_fn(state, rollout) -> (state,
    rollout)``, when given, runs first on the whole rollout (e.g.
    :func:`kitae.normalization.normalize_rollout`). ``process_experience_fn`` is vmapped over envs
    (it sees ``[T, ...]``), its output is flattened to ``[T * N, ...]``, then ``n_epochs`` passes
    of shuffled minibatches of ``batch_size`` each apply one ``update_step_fn``; ``info`` is
    averaged and gets the non-finite flags of :func:`kitae.guards.with_nonfinite_flags`.
    """

    def update(state, rollout, key):
        if prepare_rollout_fn is not None:
            state, rollout = prepare_rollout_fn(state, rollout)
        key, k_process, k_epochs = jax.random.split(key, 3)
        n_steps, n_envs = jax.tree.leaves(rollout)[0].shape[:2]
        total = n_steps * n_envs
        n_minibatches = total // batch_size
        processed = jax.vmap(process_experience_fn, in_axes=(None, 0, 1), out_axes=1)(
            state, jax.random.split(k_process, n_envs), rollout
        )
        flat = jax.tree.map(lambda x: x.reshape((total, *x.shape[2:])), processed)

        def epoch(state, epoch_key):
            k_perm, k_update = jax.random.split(epoch_key)
            perm = jax.random.permutation(k_perm, total)[: n_minibatches * batch_size]
            minibatches = jax.tree.map(
                lambda x: x[perm].reshape((n_minibatches, batch_size, *x.shape[1:])), flat
            )

            def minibatch(state, inputs):
                batch, step_key = inputs
                return update_step_fn(state, step_key, batch)

            return jax.lax.scan(
                minibatch, state, (minibatches, jax.random.split(k_update, n_minibatches))
            )

        state, infos = jax.lax.scan(epoch, state, jax.random.split(k_epochs, n_epochs))
        return state, key, guards.with_nonfinite_flags(state, jax.tree.map(jnp.mean, infos))

    return update


class OnPolicyAgent(BaseAgent):
    """An agent that learns from fresh rollouts of ``max_buffer_size`` transitions
    (``max_buffer_size // n_envs`` steps of every env), once per rollout."""

    algo_type = "on_policy"
    prepare_rollout_fn: Callable | None = None
    """``(state, rollout [T, N, ...]) -> (state, rollout)`` run at the start of each update on
    both paths (see :func:`make_on_policy_update`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollout = RolloutBuffer(self.n_steps)

    @property
    def n_steps(self) -> int:
        """Rollout length per env."""
        return self.config.update_cfg.max_buffer_size // self.config.env_cfg.n_envs

    def validate_config(self, config: AlgoConfig) -> None:
        u, e = config.update_cfg, config.env_cfg
        if u.max_buffer_size % e.n_envs:
            raise ValueError(
                f"update_cfg.max_buffer_size={u.max_buffer_size} (the rollout size) is not a "
                f"multiple of env_cfg.n_envs={e.n_envs}; use n_steps * n_envs."
            )
        if u.batch_size > u.max_buffer_size or u.max_buffer_size % u.batch_size:
            raise ValueError(
                f"update_cfg.batch_size={u.batch_size} must divide the rollout size "
                f"update_cfg.max_buffer_size={u.max_buffer_size} so that every transition is "
                "used; pick a divisor."
            )

    def expected_updates(self, n_env_steps: int) -> int:
        n_envs = self.config.env_cfg.n_envs
        collected = math.ceil(n_env_steps / n_envs) * n_envs
        pending = self.rollout.count * n_envs  # the unfinished rollout of a previous call
        return on_policy_update_count(pending + collected, self.config.update_cfg.max_buffer_size)

    def on_env_reset(self) -> None:
        self.rollout.count = 0  # a rollout never spans two envs

    def zero_update_message(self, n_env_steps: int) -> str:
        return (
            f"train(n_env_steps={n_env_steps}) would perform zero updates: one update needs a "
            f"rollout of update_cfg.max_buffer_size={self.config.update_cfg.max_buffer_size} "
            "transitions. Collect more steps or shorten the rollout."
        )

    def make_update_fn(self) -> Callable:
        """``update(state, rollout, key) -> (state, key, info)``, see
        :func:`make_on_policy_update`."""
        return make_on_policy_update(
            self.process_experience_fn,
            self.update_step_fn,
            self.config.update_cfg.batch_size,
            self.config.update_cfg.n_epochs,
            self.prepare_rollout_fn,
        )

    def _store(self, experience: Experience) -> None:
        self.rollout.add(experience)
        if self.rollout.full:
            storage, _ = self.rollout.flush()
            self.run_update(storage)
            # The rollout storage is reused: the update must have read it.
            jax.block_until_ready(self.state)


__all__ = [
    "IAgent",
    "BaseAgent",
    "OffPolicyAgent",
    "OnPolicyAgent",
    "EpisodeTracker",
    "as_vector_env",
    "make_off_policy_update",
    "replay_buffer_from_config",
    "sequence_length_from_config",
    "make_on_policy_update",
]
