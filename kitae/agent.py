"""The agent shell: the four factories wired to a buffer, jitted once, with acting, the
update hooks of the two kinds of agents and the save/restore API.

An agent is built from four factories, each returning one pure function that is jitted once:

* ``train_state_factory(key, config, *, preprocess_fn, tabulate) -> state``
* ``explore_factory(config) -> explore_fn(state, key, observations, **hyper)``, which returns
  ``(actions, log_probs)``
* ``process_experience_factory(config) -> process_experience_fn(state, key, experience) -> batch``
* ``update_step_factory(config) -> update_step_fn(state, key, batch) -> (state, info)``

:class:`BaseAgent` inherits its gymnasium training loop from
:class:`kitae.host_loop.GymnasiumLoop`; the agents that learn from a replay buffer or from
rollouts are :class:`kitae.off_policy.OffPolicyAgent` and :class:`kitae.on_policy.OnPolicyAgent`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from kitae import guards
from kitae.buffer import Experience
from kitae.config import (
    AlgoConfig,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    recording_update_reads,
    validate_config,
    warn_unread_update_fields,
)
from kitae.envs.vector import EpisodeTracker
from kitae.host_loop import GymnasiumLoop
from kitae.logger import Logger
from kitae.modules.train_state import TrainState
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


class BaseAgent(GymnasiumLoop, IAgent):
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
    def acting_keys(self) -> tuple[jax.Array, np.ndarray, int]:
        """The interaction-key stream ``(key, pool, index)``: the key the next pool is split
        from, the current pool ``uint32[P, 2]`` (``P`` is :data:`KEY_POOL_SIZE`, 0 before the
        first draw) and the index of its next unused key (see :meth:`interact_keys`). Saved with
        the agent and set back on load, it makes acting after a reload draw the keys it would
        have drawn."""
        return self._interact_key, self._key_pool, self._key_index

    @acting_keys.setter
    def acting_keys(self, keys: tuple[jax.Array, np.ndarray, int]) -> None:
        self._interact_key, self._key_pool, self._key_index = keys

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


__all__ = ["KEY_POOL_SIZE", "IAgent", "BaseAgent", "config_to_dict"]
