"""Fully compiled training on JAX-native envs: the same four factories, one ``lax.scan`` program.

:func:`make_train` follows the ``make_train(config, env, ...builders)`` pattern: it returns
``train(key, hyperparams=None) -> (runner, metrics)``, a pure function that can be wrapped in
``jax.jit(jax.vmap(train))`` to train many seeds (and, through ``hyperparams``, many learning
rates or exploration rates) in one program. The builders are the agent's four factories (preload
extra arguments with ``functools.partial``) plus ``explore_hyperparams``, which gives the keyword
arguments of ``explore_fn`` at a given step.

Inside the program, one *iteration* is

* off-policy: one step of the ``N`` envs, the transitions written to the replay buffer at the top
  level of the scan body (in place), and the updates that became due (each
  :func:`~kitae.updates.make_off_policy_update`, i.e. ``n_epochs`` x sample/process/step);
* on-policy: a rollout of ``T = max_buffer_size // N`` steps (an inner scan), then one
  :func:`~kitae.updates.make_on_policy_update`.

Iterations are grouped in chunks of ``log_interval`` transitions; each chunk yields one row of
:class:`Metrics` (and, with ``log_callback``, one host callback, never one per step).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
from flax import struct
from tqdm.auto import tqdm

from kitae import guards
from kitae.buffer import Experience, PrioritizedSampling
from kitae.checkpoint import checkpoint_interval, restore_runner, save_agent
from kitae.config import AlgoConfig, validate_config
from kitae.envs.jax_env import JaxEnv, make_jax_env
from kitae.evaluation import evaluate_compiled, make_jax_evaluator
from kitae.frame_replay import check_frame_stacks
from kitae.modules.encoders import observation_shapes
from kitae.modules.optimizer import learning_rate_metrics, set_learning_rate
from kitae.modules.train_state import TrainState
from kitae.schedules import off_policy_min_transitions, off_policy_update_count
from kitae.updates import (
    make_off_policy_update,
    make_on_policy_update,
    replay_buffer_from_config,
    sequence_length_from_config,
)

ActFn = Callable[..., tuple]
"""``act_fn(state, key, observations, env_steps, hyperparams) -> (actions, log_probs)``; for
agents with an acting state (``init_actor_state`` given, e.g. recurrent agents)
``act_fn(state, key, observations, env_steps, hyperparams, actor_state) -> (actions, log_probs,
actor_state)``."""


@struct.dataclass
class RunnerState:
    """The carry of the compiled loop.

    Attributes:
        agent_state: the learner state (from ``train_state_factory``).
        buffer_state: the replay buffer state (``None`` on-policy).
        env_state: the ``[N]`` env states.
        observation: the ``[N, ...]`` current observations.
        key: PRNG key of the loop.
        env_steps: transitions collected so far (``int32``).
        episode_return: ``[N]`` return of the running episodes.
        episode_length: ``[N]`` length of the running episodes.
        hyperparams: traced hyperparameters of this run (e.g. ``learning_rate``).
        actor_state: the acting state carried between env steps (e.g. a recurrent core state
            ``[N, D]``, reset where an episode ended); ``None`` for agents without one.
    """

    agent_state: Any
    buffer_state: Any
    env_state: Any
    observation: Any
    key: jax.Array
    env_steps: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    hyperparams: dict
    actor_state: Any = None


@struct.dataclass
class Metrics:
    """Per-chunk training statistics (stacked over chunks by :func:`make_train`).

    Attributes:
        env_steps: transitions collected at the end of the chunk.
        episode_return: mean return of the episodes that ended in the chunk (NaN if none).
        episode_length: their mean length (NaN if none).
        n_episodes: how many episodes ended in the chunk.
        n_updates: update calls in the chunk.
        info: the update diagnostics averaged over the chunk's updates (NaN if none).
        divergence: the chunk's first update with a non-finite quantity
            (:class:`kitae.guards.DivergenceRecord`).
    """

    env_steps: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    n_episodes: jax.Array
    n_updates: jax.Array
    info: dict
    divergence: Any = None


@struct.dataclass
class _Accumulator:
    return_sum: jax.Array
    length_sum: jax.Array
    n_episodes: jax.Array
    n_updates: jax.Array
    info_sum: dict
    divergence: Any = None


def _largest_divisor_at_most(n: int, bound: int) -> int:
    for d in range(max(1, min(bound, n)), 0, -1):
        if n % d == 0:
            return d
    return 1


def check_compiled_config(config: AlgoConfig, env: JaxEnv) -> None:
    """Checks ``config`` against a JAX env (spaces); raises ``ValueError`` naming the field."""
    validate_config(config)
    obs_space, act_space = env.observation_space, env.action_space
    expected = observation_shapes(config.env_cfg.observation_space)
    found = observation_shapes(obs_space)
    if expected != found:
        raise ValueError(
            f"env_cfg.observation_space has shape {expected} but the env's observations have "
            f"shape {found}; build the config from the env."
        )
    if type(config.env_cfg.action_space) is not type(act_space) or (
        isinstance(act_space, gym.spaces.Discrete) and config.env_cfg.action_space.n != act_space.n
    ):
        raise ValueError(
            f"env_cfg.action_space={config.env_cfg.action_space} differs from the env's action "
            f"space {act_space}; build the config from the env."
        )


class CompiledTrain:
    """The object :func:`make_train` returns: call it as ``train(key, hyperparams=None)``.

    Set :attr:`axis_name` to run it as one replica of a data-parallel group (see
    :func:`kitae.distributed.data_parallel`).

    Attributes:
        n_iterations: loop iterations of the run.
        steps_per_iteration: transitions per iteration.
        chunk_iterations: iterations per metrics row.
        n_chunks: metrics rows (``n_iterations // chunk_iterations``).
    """

    def __init__(
        self,
        config: AlgoConfig,
        env: JaxEnv,
        train_state_factory: Callable[..., Any],
        act_fn: ActFn,
        process_experience_fn: Callable,
        update_step_fn: Callable,
        *,
        algo_type: str,
        to_env_action: Callable[[jax.Array], jax.Array] | None,
        n_env_steps: int,
        log_interval: int | None,
        log_callback: Callable[[Metrics], None] | None,
        start_step: int = -1,
        skip_steps: int = 1,
        axis_name: str | None = None,
        initial_env_steps: int = 0,
        init_actor_state: Callable[[int], Any] | None = None,
        prepare_rollout_fn: Callable | None = None,
    ):
        if algo_type not in ("off_policy", "on_policy"):
            raise ValueError(
                f"algo_type={algo_type!r} is invalid: use 'off_policy' or 'on_policy'."
            )
        self.config = config
        self.env = env
        self.algo_type = algo_type
        self.train_state_factory = train_state_factory
        self.act_fn = act_fn
        self.init_actor_state = init_actor_state
        self.to_env_action = to_env_action or (lambda a: a)
        self.log_callback = log_callback
        self.axis_name = axis_name
        u, n_envs = config.update_cfg, config.env_cfg.n_envs
        self.n_envs = n_envs
        if algo_type == "off_policy":
            # Prioritized replay anneals beta over the configured run (as the learning rate is),
            # so that a run split into several calls anneals as one.
            run_updates = off_policy_update_count(
                config.train_cfg.n_env_steps,
                n_envs,
                skip_steps,
                start_step,
                off_policy_min_transitions(config),
            )
            self.buffer = replay_buffer_from_config(config, run_updates)
            self.update_fn = make_off_policy_update(
                self.buffer,
                process_experience_fn,
                update_step_fn,
                u.batch_size,
                u.n_epochs,
                sequence_length=sequence_length_from_config(config),
            )
            self.steps_per_iteration = n_envs
            self.skip_steps = skip_steps
            self.first_update_step = max(start_step, off_policy_min_transitions(config), 1)
        else:
            if u.max_buffer_size % n_envs or u.max_buffer_size % u.batch_size:
                raise ValueError(
                    f"update_cfg.max_buffer_size={u.max_buffer_size} must be a multiple of "
                    f"env_cfg.n_envs={n_envs} and of update_cfg.batch_size={u.batch_size}."
                )
            self.buffer = None
            self.rollout_steps = u.max_buffer_size // n_envs
            self.update_fn = make_on_policy_update(
                process_experience_fn, update_step_fn, u.batch_size, u.n_epochs, prepare_rollout_fn
            )
            self.steps_per_iteration = u.max_buffer_size
        self.n_iterations = math.ceil(n_env_steps / self.steps_per_iteration)
        if self.n_iterations < 1:
            raise ValueError(f"n_env_steps={n_env_steps} is invalid: it must be >= 1.")
        if algo_type == "off_policy":

            def count(steps: int) -> int:
                return off_policy_update_count(
                    steps, n_envs, skip_steps, start_step, off_policy_min_transitions(config)
                )

            n_updates = count(initial_env_steps + self.n_iterations * n_envs) - count(
                initial_env_steps
            )
            if n_updates == 0:
                raise ValueError(
                    f"n_env_steps={n_env_steps} would perform zero updates: learning starts after "
                    f"max(start_step={start_step}, batch_size={u.batch_size}) transitions."
                )
        interval = log_interval or max(n_env_steps // 100, self.steps_per_iteration)
        target = max(1, interval // self.steps_per_iteration)
        self.chunk_iterations = _largest_divisor_at_most(self.n_iterations, target)
        self.n_chunks = self.n_iterations // self.chunk_iterations

    # ---- pieces -----------------------------------------------------------------------------
    def init(
        self, key: jax.Array, hyperparams: dict | None = None, agent_state: Any = None
    ) -> RunnerState:
        """Initial carry: the agent state, reset envs, an empty buffer.

        Args:
            key: PRNG key of the run.
            hyperparams: may hold ``learning_rate`` (written into every optimizer state) and any
                exploration hyperparameter that the acting function reads.
            agent_state: start from this state instead of ``train_state_factory(key, config)``.
        """
        hyperparams = dict(hyperparams or {})
        key, init_key, reset_key = jax.random.split(key, 3)
        if self.axis_name is not None:
            # Data-parallel replicas share the agent's init but not envs nor sampling.
            index = jax.lax.axis_index(self.axis_name)
            key, reset_key = jax.random.fold_in(key, index), jax.random.fold_in(reset_key, index)
        if agent_state is None:
            agent_state = self.train_state_factory(init_key, self.config)
        if "learning_rate" in hyperparams:
            agent_state = jax.tree.map(
                lambda s: (
                    s.replace(
                        opt_state=set_learning_rate(s.opt_state, hyperparams["learning_rate"])
                    )
                    if isinstance(s, TrainState)
                    else s
                ),
                agent_state,
                is_leaf=lambda s: isinstance(s, TrainState),
            )
        observation, env_state = jax.vmap(self.env.reset)(jax.random.split(reset_key, self.n_envs))
        actor_state = None
        if self.init_actor_state is not None:
            actor_state = self.init_actor_state(self.n_envs)
        buffer_state = None
        if self.buffer is not None:
            example = self._example_experience(agent_state, observation, hyperparams, actor_state)
            buffer_state = self.buffer.init(example)
        return RunnerState(
            agent_state=agent_state,
            buffer_state=buffer_state,
            env_state=env_state,
            observation=observation,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            episode_return=jnp.zeros((self.n_envs,), jnp.float32),
            episode_length=jnp.zeros((self.n_envs,), jnp.int32),
            hyperparams={k: jnp.asarray(v) for k, v in hyperparams.items()},
            actor_state=actor_state,
        )

    def _example_experience(
        self, agent_state, observation, hyperparams, actor_state=None
    ) -> Experience:
        args = (agent_state, jax.random.PRNGKey(0), observation, jnp.zeros((), jnp.int32))
        if actor_state is None:
            actions, log_probs = jax.eval_shape(self.act_fn, *args, hyperparams)
        else:
            actions, log_probs, _ = jax.eval_shape(self.act_fn, *args, hyperparams, actor_state)
        zeros = lambda s: jnp.zeros(s.shape, s.dtype)  # noqa: E731
        n = self.n_envs
        return Experience(
            observation=observation,
            action=zeros(actions),
            reward=jnp.zeros((n,), jnp.float32),
            done=jnp.zeros((n,), bool),
            next_observation=observation,
            log_prob=zeros(log_probs),
            truncated=jnp.zeros((n,), bool),
            actor_state=actor_state,
        )

    def _env_step(self, runner: RunnerState, keys: jax.Array):
        """One step of the N envs with ``keys [N + 1, 2]`` (acting, then one per env); returns
        the new runner pieces and the transition."""
        args = (runner.agent_state, keys[0], runner.observation, runner.env_steps)
        if runner.actor_state is None:
            actions, log_probs = self.act_fn(*args, runner.hyperparams)
            actor_state = None
        else:
            actions, log_probs, actor_state = self.act_fn(
                *args, runner.hyperparams, runner.actor_state
            )
        step = jax.vmap(self.env.step)(keys[1:], runner.env_state, self.to_env_action(actions))
        experience = Experience(
            observation=runner.observation,
            action=actions,
            reward=step.reward,
            done=step.terminated,
            next_observation=step.next_observation,
            log_prob=log_probs,
            truncated=step.truncated,
            actor_state=runner.actor_state,
        )
        ended = step.terminated | step.truncated
        if actor_state is not None:  # the next step of an ended episode starts a new one
            actor_state = jax.tree.map(
                lambda first, x: jnp.where(ended.reshape((-1,) + (1,) * (x.ndim - 1)), first, x),
                self.init_actor_state(self.n_envs),
                actor_state,
            )
        episode_return = runner.episode_return + step.reward
        episode_length = runner.episode_length + 1
        finished = (
            jnp.sum(jnp.where(ended, episode_return, 0.0)),
            jnp.sum(jnp.where(ended, episode_length, 0)),
            jnp.sum(ended),
        )
        runner = runner.replace(
            env_state=step.state,
            observation=step.observation,
            env_steps=runner.env_steps + self.n_envs,
            episode_return=jnp.where(ended, 0.0, episode_return),
            episode_length=jnp.where(ended, 0, episode_length),
            actor_state=actor_state,
        )
        return runner, experience, finished

    def _zero_info(self, runner: RunnerState) -> dict:
        data = runner.buffer_state if self.buffer is not None else self._rollout_shape(runner)
        info = jax.eval_shape(self.update_fn, runner.agent_state, data, runner.key)[-1]
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info)

    def _rollout_shape(self, runner: RunnerState):
        example = self._example_experience(
            runner.agent_state, runner.observation, runner.hyperparams, runner.actor_state
        )
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((self.rollout_steps, *x.shape), x.dtype), example
        )

    def _iteration(self, carry, _):
        runner, acc = carry
        n = self.n_envs
        if self.algo_type == "off_policy":
            # One split per iteration: loop key, update key, acting key and one key per env.
            keys = jax.random.split(runner.key, n + 3)
            runner, k_update, step_keys = runner.replace(key=keys[0]), keys[1], keys[2:]
        else:
            keys = jax.random.split(runner.key, 2 + self.rollout_steps * (n + 1))
            runner, k_update = runner.replace(key=keys[0]), keys[1]
            step_keys = keys[2:].reshape(self.rollout_steps, n + 1, *keys.shape[1:])
        zero_info = jax.tree.map(jnp.zeros_like, acc.info_sum)
        if self.algo_type == "off_policy":
            runner, experience, finished = self._env_step(runner, step_keys)
            # Top-level, unconditional write: the buffer is updated in place.
            runner = runner.replace(buffer_state=self.buffer.add(runner.buffer_state, experience))
            steps = runner.env_steps
            due = steps // self.skip_steps - (steps - self.n_envs) // self.skip_steps
            due = jnp.where(steps >= self.first_update_step, due, 0)

            prioritized = isinstance(self.buffer, PrioritizedSampling)
            buffer_state = runner.buffer_state

            def priorities_of(state):
                # Only the priorities leave the branch: the storage stays untouched in place.
                return (state.priorities, state.max_priority, state.updates) if prioritized else ()

            def do_updates(agent_state):
                def one(i, carry):
                    state, priorities, key, info_sum = carry
                    current = buffer_state
                    if prioritized:
                        current = buffer_state.replace(
                            priorities=priorities[0],
                            max_priority=priorities[1],
                            updates=priorities[2],
                        )
                    state, current, key, info = self.update_fn(state, current, key)
                    return state, priorities_of(current), key, jax.tree.map(jnp.add, info_sum, info)

                state, priorities, _, info_sum = jax.lax.fori_loop(
                    0, due, one, (agent_state, priorities_of(buffer_state), k_update, zero_info)
                )
                return state, priorities, info_sum

            agent_state, priorities, info_sum = jax.lax.cond(
                due > 0,
                do_updates,
                lambda s: (s, priorities_of(buffer_state), zero_info),
                runner.agent_state,
            )
            if prioritized:
                runner = runner.replace(
                    buffer_state=buffer_state.replace(
                        priorities=priorities[0],
                        max_priority=priorities[1],
                        updates=priorities[2],
                    )
                )
            n_updates = due
        else:

            def rollout_step(inner, step_key):
                inner, experience, finished = self._env_step(inner, step_key)
                return inner, (experience, finished)

            runner, (rollout, finished_steps) = jax.lax.scan(rollout_step, runner, step_keys)
            finished = jax.tree.map(jnp.sum, finished_steps)
            agent_state, _, info_sum = self.update_fn(runner.agent_state, rollout, k_update)
            n_updates = jnp.ones((), jnp.int32)
        runner = runner.replace(agent_state=agent_state)
        acc = _Accumulator(
            return_sum=acc.return_sum + finished[0],
            length_sum=acc.length_sum + finished[1],
            n_episodes=acc.n_episodes + finished[2],
            n_updates=acc.n_updates + n_updates,
            info_sum=jax.tree.map(jnp.add, acc.info_sum, info_sum),
            divergence=guards.first_divergence(acc.divergence, info_sum, runner.env_steps),
        )
        return (runner, acc), None

    def run_chunk(self, runner: RunnerState) -> tuple[RunnerState, Metrics]:
        """Runs ``chunk_iterations`` iterations; returns the carry and one :class:`Metrics` row."""
        zero_info = self._zero_info(runner)
        acc = _Accumulator(
            return_sum=jnp.zeros((), jnp.float32),
            length_sum=jnp.zeros((), jnp.int32),
            n_episodes=jnp.zeros((), jnp.int32),
            n_updates=jnp.zeros((), jnp.int32),
            info_sum=zero_info,
            divergence=guards.no_divergence(zero_info),
        )
        (runner, acc), _ = jax.lax.scan(self._iteration, (runner, acc), None, self.chunk_iterations)
        n_episodes = jnp.maximum(acc.n_episodes, 1)
        nan = jnp.float32(jnp.nan)
        metrics = Metrics(
            env_steps=runner.env_steps,
            episode_return=jnp.where(acc.n_episodes > 0, acc.return_sum / n_episodes, nan),
            episode_length=jnp.where(acc.n_episodes > 0, acc.length_sum / n_episodes, nan),
            n_episodes=acc.n_episodes,
            n_updates=acc.n_updates,
            info=jax.tree.map(
                lambda s: jnp.where(acc.n_updates > 0, s / jnp.maximum(acc.n_updates, 1), nan),
                guards.without_flags(acc.info_sum),
            ),
            divergence=acc.divergence,
        )
        if self.log_callback is not None:
            jax.debug.callback(self.log_callback, metrics)
        return runner, metrics

    def run(self, runner: RunnerState, n_chunks: int | None = None) -> tuple[RunnerState, Metrics]:
        """Runs ``n_chunks`` chunks (default: the whole run); metrics stacked over chunks."""
        return jax.lax.scan(
            lambda r, _: self.run_chunk(r),
            runner,
            None,
            self.n_chunks if n_chunks is None else n_chunks,
        )

    def __call__(
        self, key: jax.Array, hyperparams: dict | None = None
    ) -> tuple[RunnerState, Metrics]:
        """The whole training run as one pure function of ``key`` (and ``hyperparams``)."""
        return self.run(self.init(key, hyperparams))


_TRAIN_PIECES_RESOLVER: Callable[..., tuple] | None = None
"""Maps builders and missing factories onto :func:`make_train`'s pieces; set by
:func:`register_train_pieces_resolver` (:mod:`kitae.builders`, when the agents are imported)."""


def register_train_pieces_resolver(resolver: Callable[..., tuple]) -> None:
    """Sets how :func:`make_train` fills in factories left out and maps jax-neurorl's builders
    (see :func:`kitae.builders.resolve_train_pieces`). The agents above this module register it
    when :mod:`kitae.algos` is imported, so the compiled loop never imports them."""
    global _TRAIN_PIECES_RESOLVER
    _TRAIN_PIECES_RESOLVER = resolver


def make_train(
    config: AlgoConfig,
    env: JaxEnv | Any,
    train_state_factory: Callable[..., Any] | None = None,
    explore_factory: Callable[[AlgoConfig], Callable] | None = None,
    process_experience_factory: Callable[[AlgoConfig], Callable] | None = None,
    update_step_factory: Callable[[AlgoConfig], Callable] | None = None,
    *,
    algo_type: str | None = None,
    explore_hyperparams: Callable[[jax.Array, dict], dict] | None = None,
    to_env_action: Callable[[jax.Array], jax.Array] | None = None,
    n_env_steps: int | None = None,
    log_interval: int | None = None,
    log_callback: Callable[[Metrics], None] | None = None,
    init_actor_state: Callable[[int], Any] | None = None,
    prepare_rollout_fn: Callable | None = None,
    **builders: Callable,
) -> CompiledTrain:
    """Builds ``train(key, hyperparams=None) -> (runner, metrics)`` from the four factories.

    jax-neurorl's builders (``make_agent``, ``make_optimizer``, ``make_loss_fn_class``,
    ``make_actor``, ``make_logger``; see :mod:`kitae.builders`) may stand for factories, and
    factories left out come from the algorithm of ``config.algo_params``, so
    ``functools.partial(make_train, make_agent=..., make_optimizer=...)(config, env)`` works.

    Args:
        config: the agent's config; ``env_cfg.n_envs`` envs run side by side.
        env: a :class:`~kitae.envs.jax_env.JaxEnv`, a gymnax env or a gymnax id.
        train_state_factory: ``(key, config) -> state`` (preload extra arguments with
            ``functools.partial``).
        explore_factory: ``config -> explore_fn(state, key, obs, **kwargs)``.
        process_experience_factory: ``config -> process_experience_fn``.
        update_step_factory: ``config -> update_step_fn``.
        algo_type: ``"off_policy"`` (replay buffer; schedule from ``algo_params.skip_steps`` and
            ``start_step``) or ``"on_policy"`` (rollouts of ``max_buffer_size`` transitions);
            default: the algorithm's, else ``"off_policy"``.
        explore_hyperparams: ``(env_steps, hyperparams) -> kwargs`` of ``explore_fn`` at a step,
            e.g. an epsilon schedule; ``hyperparams`` holds the traced values passed to ``train``.
        to_env_action: maps stored actions to env actions (e.g. clipping to the bounds).
        n_env_steps: transitions to train for (default ``config.train_cfg.n_env_steps``).
        log_interval: transitions per metrics row (default: 1% of the run).
        log_callback: called on the host with each :class:`Metrics` row while the program runs.
        init_actor_state: ``n_envs -> actor_state`` for an explore function with an acting
            state, ``explore_fn(state, key, obs, actor_state, **kwargs) -> (actions, log_probs,
            actor_state)`` (e.g. a recurrent core state); the loop carries it between steps and
            resets it to this initial value where an episode ended.
        prepare_rollout_fn: on-policy: ``(state, rollout) -> (state, rollout)`` at the start of
            each update (e.g. :func:`kitae.normalization.normalize_rollout`).

    Returns:
        A :class:`CompiledTrain`; ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key.
    """
    env = make_jax_env(env)
    check_compiled_config(config, env)
    factories = (train_state_factory, explore_factory, process_experience_factory)
    if builders or None in (*factories, update_step_factory):
        if _TRAIN_PIECES_RESOLVER is None:
            raise ValueError(
                "make_train without all four factories takes them (and jax-neurorl's builders) "
                "from kitae's agents: import kitae.algos (or kitae.builders) first, or pass the "
                "four factories."
            )
        (train_state_factory, explore_factory, process_experience_factory, update_step_factory,
         algo_type, explore_hyperparams, init_actor_state, log_callback) = _TRAIN_PIECES_RESOLVER(
            config, env, (*factories, update_step_factory), algo_type=algo_type,
            explore_hyperparams=explore_hyperparams, init_actor_state=init_actor_state,
            log_callback=log_callback, **builders,
        )  # fmt: skip
    explore_fn = explore_factory(config)

    def act_fn(state, key, observations, env_steps, hyperparams, *actor_state):
        kwargs = {} if explore_hyperparams is None else explore_hyperparams(env_steps, hyperparams)
        return explore_fn(state, key, observations, *actor_state, **kwargs)

    p = config.algo_params
    return CompiledTrain(
        config,
        env,
        lambda key, cfg: train_state_factory(key, cfg),
        act_fn,
        process_experience_factory(config),
        update_step_factory(config),
        algo_type=algo_type or "off_policy",
        to_env_action=to_env_action,
        n_env_steps=config.train_cfg.n_env_steps if n_env_steps is None else n_env_steps,
        log_interval=log_interval,
        log_callback=log_callback,
        start_step=int(getattr(p, "start_step", -1)),
        skip_steps=int(getattr(p, "skip_steps", 1)),
        init_actor_state=init_actor_state,
        prepare_rollout_fn=prepare_rollout_fn,
    )


def config_for_jax_env(config: AlgoConfig, env: JaxEnv, n_envs: int | None = None) -> AlgoConfig:
    """A copy of ``config`` whose ``env_cfg`` describes ``env`` (spaces, ``n_envs``)."""
    env_cfg = dataclasses.replace(
        config.env_cfg,
        task_name=env.name,
        observation_space=env.observation_space,
        action_space=env.action_space,
        n_envs=config.env_cfg.n_envs if n_envs is None else n_envs,
    )
    return dataclasses.replace(config, env_cfg=env_cfg)


def metrics_logger(logger: Any, stream: str = "train") -> Callable[[Metrics], None]:
    """A ``log_callback`` for :func:`make_train` / :func:`make_agent_train` that writes each
    chunk's :class:`Metrics` as one row of ``stream`` of a :class:`kitae.logger.Logger`, while
    the compiled program runs (through ``jax.debug.callback``, once per chunk).

    Under ``vmap`` the callback runs once per seed; log a vmapped run per seed with
    :func:`kitae.checkpoint.save_vmapped` run directories instead.
    """

    def log(metrics: Metrics) -> None:
        row = jax.device_get(metrics)
        logger.log(
            stream,
            int(row.env_steps),
            {
                "episode_return": row.episode_return,
                "episode_length": row.episode_length,
                "n_episodes": row.n_episodes,
                "n_updates": row.n_updates,
                **row.info,
            },
        )

    return log


def make_agent_train(
    agent: Any,
    env: JaxEnv | Any,
    n_env_steps: int | None = None,
    *,
    log_interval: int | None = None,
    log_callback: Callable[[Metrics], None] | None = None,
    initial_env_steps: int = 0,
) -> CompiledTrain:
    """The compiled ``train(key, hyperparams=None)`` of a kitae agent on a JAX env.

    It uses the agent's own factories and runs the agent's :meth:`explore` method inside the
    program (see :meth:`kitae.agent.BaseAgent.tracing`), so a custom agent trains unchanged. An
    agent with an ``init_actor_state(n_envs)`` method (e.g. a recurrent agent) has its acting
    state carried by the loop (see :class:`RunnerState`).
    ``train(key)`` initialises a fresh state from ``key``: vmap it over keys for many seeds.
    """
    env = make_jax_env(env)
    config = agent.config
    check_compiled_config(config, env)
    p = config.algo_params
    return CompiledTrain(
        config,
        env,
        lambda key, cfg: agent.train_state_factory(key, cfg, preprocess_fn=agent.preprocess_fn),
        agent.act_fn(greedy=False),
        agent.process_experience_fn,
        agent.update_step_fn,
        algo_type=agent.algo_type,
        to_env_action=agent.to_env_action,
        n_env_steps=config.train_cfg.n_env_steps if n_env_steps is None else n_env_steps,
        log_interval=log_interval,
        log_callback=log_callback,
        start_step=int(getattr(p, "start_step", -1)),
        skip_steps=int(getattr(p, "skip_steps", 1)),
        initial_env_steps=initial_env_steps,
        init_actor_state=getattr(agent, "init_actor_state", None),
        prepare_rollout_fn=getattr(agent, "prepare_rollout_fn", None),
    )


def train_agent_compiled(
    agent: Any,
    env: JaxEnv | Any,
    n_env_steps: int,
    *,
    progress_bar: bool | None = None,
    log_interval: int | None = None,
) -> dict[str, Any]:
    """Trains ``agent`` in place on a JAX env with the compiled loop (what ``agent.train`` does
    for JAX envs).

    The run starts from ``agent.state`` and ``agent.env_steps`` (so schedules continue); called
    again with the same env object it also continues the envs' episodes and the replay buffer.
    It executes in chunks of ``log_interval`` transitions (one
    compiled call each, the carry donated so the replay buffer is updated in place), shows a
    progress bar between chunks, and logs each chunk's :class:`Metrics` to ``agent.logger``.
    With ``train_cfg.eval_frequency``, after each chunk that reaches a multiple of it, the greedy
    policy is evaluated on ``train_cfg.eval_episodes`` episodes of the same JAX env (compiled
    once, the same reset key each time) and ``eval_return_mean`` / ``eval_return_std`` are logged
    to the ``eval`` stream.
    With ``train_cfg.save_frequency``, it saves a checkpoint (the whole carry included) after
    each chunk that reaches a multiple of it, and at the end. After ``agent.restore`` (or
    ``Agent.resume``), the first call continues the checkpoint's envs, episodes and buffer on
    ``env``, which must be the same kind of env.

    Returns:
        ``env_steps``, ``n_updates``, ``episodes``, ``compile_s`` and ``train_s``.
    """
    save_every = checkpoint_interval(agent)
    trainer = make_agent_train(
        agent, env, n_env_steps, log_interval=log_interval, initial_env_steps=agent.env_steps
    )
    cache = agent.__dict__.setdefault("_compiled_cache", {})
    restored = agent.__dict__.pop("_restored_runner", None)
    if restored is not None:  # the carry of a checkpoint continues on this env
        cache.clear()
        cache["env"], cache["runner"] = env, restore_runner(trainer, agent, restored)
    if cache.get("env") is env and cache.get("runner") is not None:
        # Continue the previous call: same envs, episodes and replay buffer.
        # (a copy: the carry is donated, the caller's state must stay valid)
        runner = cache["runner"].replace(agent_state=jax.tree.map(jnp.copy, agent.state))
    else:
        agent._update_key, key = jax.random.split(agent._update_key)
        runner = jax.jit(trainer.init)(key, {}, agent.state)
        runner = runner.replace(env_steps=jnp.asarray(agent.env_steps, jnp.int32))
        cache.clear()
    start = time.perf_counter()
    run_chunk = cache.get(("run_chunk", trainer.chunk_iterations))
    if run_chunk is None:
        run_chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(runner).compile()
        cache[("run_chunk", trainer.chunk_iterations)] = run_chunk
    compile_s = time.perf_counter() - start
    show = agent.config.train_cfg.progress_bar if progress_bar is None else progress_bar
    steps_per_chunk = trainer.chunk_iterations * trainer.steps_per_iteration
    eval_every = agent.config.train_cfg.eval_frequency
    last_eval = agent.env_steps // eval_every if eval_every > 0 else 0
    if eval_every > 0:
        evaluator = cache.get(("evaluate", agent.config.train_cfg.eval_episodes))
        if evaluator is None:
            evaluator = make_jax_evaluator(agent, env, agent.config.train_cfg.eval_episodes)
            cache[("evaluate", agent.config.train_cfg.eval_episodes)] = evaluator
        eval_key = jax.random.PRNGKey(agent.config.seed + 10_000)
    bar = tqdm(total=trainer.n_chunks * steps_per_chunk, unit="step", disable=not show)
    episodes = updates = 0
    last_save, saved_at = (agent.env_steps // save_every if save_every else 0), None
    start = time.perf_counter()
    for _ in range(trainer.n_chunks):
        runner, metrics = run_chunk(runner)
        row = jax.device_get(metrics)
        guards.raise_if_diverged(agent, row)
        check_frame_stacks(runner.buffer_state)
        episodes += int(row.n_episodes)
        updates += int(row.n_updates)
        step = int(row.env_steps)
        logged = {
            "episode_return": row.episode_return,
            "episode_length": row.episode_length,
            "n_episodes": row.n_episodes,
            **row.info,
            **learning_rate_metrics(runner.agent_state),
        }
        if callable(getattr(agent, "exploration", None)):
            logged["epsilon"] = float(agent.exploration(step))
        agent.logger.log("train", step, logged)
        if eval_every > 0 and step // eval_every > last_eval:
            last_eval = step // eval_every
            returns = jax.device_get(evaluator(runner.agent_state, eval_key))
            agent.logger.log(
                "eval", step, {"eval_return_mean": returns.mean(), "eval_return_std": returns.std()}
            )
        bar.update(steps_per_chunk)
        bar.set_postfix(ret=f"{float(row.episode_return):.1f}", refresh=False)
        if save_every and step // save_every > last_save:
            last_save, saved_at = step // save_every, step
            save_agent(agent, runner=runner, n_updates=agent.n_updates + updates)
        if guards.stop_requested():  # a signal asked to stop (see kitae.guards)
            break
    bar.close()
    train_s = time.perf_counter() - start
    agent.state = runner.agent_state
    agent._acting_state = None
    agent.env_steps = int(runner.env_steps)
    agent.n_updates += updates
    cache["env"], cache["runner"] = env, runner
    agent.logger.flush()
    if save_every and saved_at != agent.env_steps:
        agent.save()
    return {
        "env_steps": agent.env_steps,
        "n_updates": updates,
        "episodes": episodes,
        "compile_s": compile_s,
        "train_s": train_s,
    }


__all__ = [
    "CompiledTrain",
    "Metrics",
    "RunnerState",
    "make_train",
    "make_agent_train",
    "metrics_logger",
    "train_agent_compiled",
    "config_for_jax_env",
    "evaluate_compiled",
]
