"""Observation normalisation and reward scaling with running statistics, as pure JAX functions.

The semantics are those of Stable-Baselines3's ``VecNormalize`` (``norm_obs``, ``norm_reward``,
``clip_obs``, ``clip_reward``, ``gamma``, ``epsilon``):

* running statistics start at ``count = 1e-4``, ``mean = 0``, ``var = 1`` and merge each batch
  with the parallel variance algorithm (Chan et al.), so merging batches one after the other
  gives the statistics of their concatenation;
* observations become ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``;
* rewards are divided by the standard deviation of the discounted return: a per-env accumulator
  ``R <- gamma * R + r`` whose values are merged into the return statistics at every step, then
  ``clip(r / sqrt(var_R + epsilon), -clip_reward, clip_reward)``; ``R`` is reset to 0 where an
  episode ended (terminated or truncated). Rewards are not centred.

The statistics live in the agent's state (:class:`NormalizedTrainState`) rather than in
``gymnasium.wrappers.vector.NormalizeObservation`` / ``NormalizeReward``: they must be saved in
checkpoints and be the same on the compiled path (JAX envs), where no gymnasium wrapper runs.

Timing: acting reads the statistics (frozen); :func:`normalize_rollout` runs once per rollout, at
the start of the update. It normalises the rollout's observations with the statistics the
behaviour policy used (so the update sees exactly the inputs the policy saw and the probability
ratio is exact), then merges the rollout's observations into them. At every rollout boundary the
observation statistics equal those of a per-step merge; reward scaling is replayed step by step,
as ``VecNormalize`` does it. Evaluation and greedy acting never change the statistics. The one
difference from ``VecNormalize``: within a rollout the policy acts on statistics frozen at its
start (``VecNormalize`` merges every step), so the first rollout sees the initial statistics.
Statistics are float32 (counts stay exact up to 2^24 transitions, then lose precision slowly).

See "Updating Formulae and a Pairwise Algorithm for Computing Sample Variances", Chan, Golub and
LeVeque, 1979, and Stable-Baselines3's ``VecNormalize``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from kitae.modules.train_state import TrainState

INITIAL_COUNT = 1e-4
"""Initial weight of the running statistics (``VecNormalize``'s ``epsilon`` count)."""


@struct.dataclass
class RunningStatistics:
    """Running mean and (population) variance of a stream of arrays of one shape.

    Attributes:
        count: ``float32[]`` weight of what was merged (starts at :data:`INITIAL_COUNT`).
        mean: ``float32[*shape]``.
        var: ``float32[*shape]``.
    """

    count: jax.Array
    mean: jax.Array
    var: jax.Array


def init_statistics(shape: tuple[int, ...] = ()) -> RunningStatistics:
    """Statistics of nothing seen yet: ``count = 1e-4``, ``mean = 0``, ``var = 1``."""
    return RunningStatistics(
        count=jnp.asarray(INITIAL_COUNT, jnp.float32),
        mean=jnp.zeros(shape, jnp.float32),
        var=jnp.ones(shape, jnp.float32),
    )


def update_statistics(stats: RunningStatistics, batch: jax.Array) -> RunningStatistics:
    """Merges a batch into the statistics (parallel Welford / Chan et al. update).

    Args:
        stats: statistics of shape ``[*shape]``.
        batch: ``[B, *shape]``.

    Returns:
        The statistics of everything seen so far and ``batch``.
    """
    batch = jnp.asarray(batch, jnp.float32)
    if batch.shape[1:] != stats.mean.shape:
        raise ValueError(
            f"batch of shape {batch.shape} does not fit statistics of shape {stats.mean.shape}: "
            "it must be [B, *shape]."
        )
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = batch.mean(axis=0)
    batch_var = batch.var(axis=0)
    total = stats.count + batch_count
    delta = batch_mean - stats.mean
    m2 = (
        stats.var * stats.count
        + batch_var * batch_count
        + jnp.square(delta) * stats.count * batch_count / total
    )
    return RunningStatistics(
        count=total, mean=stats.mean + delta * batch_count / total, var=m2 / total
    )


def normalize(
    stats: RunningStatistics, x: jax.Array, clip: float, epsilon: float = 1e-8
) -> jax.Array:
    """``clip((x - mean) / sqrt(var + epsilon), -clip, clip)``, ``x: [..., *shape]`` (float32)."""
    z = (x.astype(jnp.float32) - stats.mean) / jnp.sqrt(stats.var + epsilon)
    return jnp.clip(z, -clip, clip)


def scale_rewards(
    return_stats: RunningStatistics,
    discounted_return: jax.Array,
    r_t: jax.Array,
    ended_t: jax.Array,
    gamma: float,
    clip: float,
    epsilon: float = 1e-8,
) -> tuple[RunningStatistics, jax.Array, jax.Array]:
    """Scales a trajectory of rewards by the running std of the discounted return, step by step.

    At each step ``t``: ``R <- gamma * R + r_t``, the ``[N]`` values of ``R`` are merged into the
    return statistics, ``r_t`` becomes ``clip(r_t / sqrt(var + epsilon), -clip, clip)``, then
    ``R <- 0`` where ``ended_t``.

    Args:
        return_stats: statistics of the discounted return (shape ``[]``).
        discounted_return: ``[N]`` accumulator of each env.
        r_t: ``[T, N]`` rewards.
        ended_t: ``[T, N]`` episode ended after step ``t`` (terminated or truncated).
        gamma: discount of the accumulator.
        clip: bound of the scaled rewards.
        epsilon: added to the variance.

    Returns:
        ``(return_stats, discounted_return [N], scaled rewards float32[T, N])``.
    """
    if r_t.ndim != 2 or ended_t.shape != r_t.shape or discounted_return.shape != r_t.shape[1:]:
        raise ValueError(
            f"rewards {r_t.shape}, ended {ended_t.shape} and accumulator "
            f"{discounted_return.shape} must be [T, N], [T, N] and [N]."
        )

    def step(carry, inputs):
        stats, ret = carry
        r, ended = inputs
        ret = gamma * ret + r
        stats = update_statistics(stats, ret)
        scaled = jnp.clip(r / jnp.sqrt(stats.var + epsilon), -clip, clip)
        return (stats, jnp.where(ended, 0.0, ret)), scaled

    (return_stats, discounted_return), scaled = jax.lax.scan(
        step, (return_stats, discounted_return), (r_t.astype(jnp.float32), ended_t)
    )
    return return_stats, discounted_return, scaled


@struct.dataclass
class NormalizationState:
    """What an agent normalises with: running statistics and their static settings.

    Attributes:
        observation: observation statistics (``None``: observations pass unchanged).
        returns: discounted-return statistics, shape ``[]`` (``None``: rewards unscaled).
        discounted_return: ``float32[N]`` accumulator per env (``None`` with ``returns``).
        clip_observations: bound of the normalised observations (static).
        clip_rewards: bound of the scaled rewards (static).
        gamma: discount of the return accumulator (static).
        epsilon: added to the variances (static).
    """

    observation: RunningStatistics | None
    returns: RunningStatistics | None
    discounted_return: jax.Array | None
    clip_observations: float = struct.field(pytree_node=False, default=10.0)
    clip_rewards: float = struct.field(pytree_node=False, default=10.0)
    gamma: float = struct.field(pytree_node=False, default=0.99)
    epsilon: float = struct.field(pytree_node=False, default=1e-8)


class NormalizedTrainState(TrainState):
    """A :class:`~kitae.modules.train_state.TrainState` that also carries the
    :class:`NormalizationState`, so checkpoints save it and the compiled loop carries it."""

    normalization: NormalizationState | None = None


def init_normalization(
    observation_shape: tuple[int, ...] | None,
    n_envs: int,
    *,
    normalize_rewards: bool,
    clip_observations: float = 10.0,
    clip_rewards: float = 10.0,
    gamma: float = 0.99,
    epsilon: float = 1e-8,
) -> NormalizationState:
    """Fresh statistics; ``observation_shape=None`` leaves observations unnormalised."""
    return NormalizationState(
        observation=None if observation_shape is None else init_statistics(observation_shape),
        returns=init_statistics(()) if normalize_rewards else None,
        discounted_return=jnp.zeros((n_envs,), jnp.float32) if normalize_rewards else None,
        clip_observations=float(clip_observations),
        clip_rewards=float(clip_rewards),
        gamma=float(gamma),
        epsilon=float(epsilon),
    )


def with_normalization(state: TrainState, normalization: NormalizationState) -> TrainState:
    """``state`` as a :class:`NormalizedTrainState` carrying ``normalization``."""
    fields = {name: getattr(state, name) for name in state.__dataclass_fields__}
    return NormalizedTrainState(**{**fields, "normalization": normalization})


def validate_normalization(params: Any, config: Any) -> None:
    """Checks the normalisation fields of ``params`` (``normalize_observations``,
    ``normalize_rewards``, ``clip_observations``, ``clip_rewards``) against ``config``.

    Raises:
        ValueError: naming the field and the fix.
    """
    for name in ("normalize_observations", "normalize_rewards"):
        if not isinstance(getattr(params, name, False), bool):
            raise ValueError(
                f"algo_params.{name}={getattr(params, name)!r} is invalid: use True or False."
            )
    for name in ("clip_observations", "clip_rewards"):
        value = getattr(params, name, 10.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"algo_params.{name}={value!r} is invalid: it must be a number > 0.")
    space = config.env_cfg.observation_space
    if getattr(params, "normalize_observations", False) and not (
        isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating)
    ):
        raise ValueError(
            f"algo_params.normalize_observations=True needs a float Box observation space, got "
            f"{space}; set it to False (images and discrete observations are not normalised)."
        )


def normalization_from_params(state: TrainState, config: Any, gamma: float) -> TrainState:
    """``state`` carrying fresh statistics when ``config.algo_params`` asks for normalisation
    (unchanged otherwise); the accumulator has one entry per env of ``config.env_cfg``."""
    p = config.algo_params
    observations = bool(getattr(p, "normalize_observations", False))
    rewards = bool(getattr(p, "normalize_rewards", False))
    if not (observations or rewards):
        return state
    shape = tuple(config.env_cfg.observation_space.shape) if observations else None
    return with_normalization(
        state,
        init_normalization(
            shape,
            config.env_cfg.n_envs,
            normalize_rewards=rewards,
            clip_observations=getattr(p, "clip_observations", 10.0),
            clip_rewards=getattr(p, "clip_rewards", 10.0),
            gamma=gamma,
        ),
    )


def normalization_of(state: Any) -> NormalizationState | None:
    """The :class:`NormalizationState` a state carries, or ``None``."""
    return getattr(state, "normalization", None)


def normalize_observation(state: Any, observations: jax.Array) -> jax.Array:
    """``observations [B, *shape]`` normalised by the state's frozen statistics (unchanged when
    the state normalises no observation)."""
    norm = normalization_of(state)
    if norm is None or norm.observation is None:
        return observations
    return normalize(norm.observation, observations, norm.clip_observations, norm.epsilon)


def normalize_rollout(state: Any, rollout: Any) -> tuple[Any, Any]:
    """Normalises a rollout and advances the statistics (the start of an on-policy update).

    Observations and next observations are normalised with the statistics acting used, then the
    rollout's observations are merged into them; rewards are scaled step by step by
    :func:`scale_rewards` (episodes end where ``done`` or ``truncated``).

    Args:
        state: the agent state (returned unchanged without :class:`NormalizationState`).
        rollout: an :class:`~kitae.buffer.Experience` with leaves ``[T, N, ...]``.

    Returns:
        ``(state, rollout)`` with the new statistics and the normalised rollout.
    """
    norm = normalization_of(state)
    if norm is None:
        return state, rollout
    if norm.observation is not None:
        obs_stats = norm.observation
        raw = rollout.observation
        rollout = rollout._replace(
            observation=normalize(obs_stats, raw, norm.clip_observations, norm.epsilon),
            next_observation=normalize(
                obs_stats, rollout.next_observation, norm.clip_observations, norm.epsilon
            ),
        )
        flat = raw.reshape((-1, *obs_stats.mean.shape))
        norm = norm.replace(observation=update_statistics(obs_stats, flat))
    if norm.returns is not None:
        ended = rollout.done
        if rollout.truncated is not None:
            ended = jnp.logical_or(ended, rollout.truncated)
        returns, discounted_return, rewards = scale_rewards(
            norm.returns,
            norm.discounted_return,
            rollout.reward,
            ended,
            norm.gamma,
            norm.clip_rewards,
            norm.epsilon,
        )
        norm = norm.replace(returns=returns, discounted_return=discounted_return)
        rollout = rollout._replace(reward=rewards)
    return state.replace(normalization=norm), rollout


def reset_returns(state: Any) -> Any:
    """``state`` with its return accumulators set to 0 (all episodes start over)."""
    norm = normalization_of(state)
    if norm is None or norm.discounted_return is None:
        return state
    return state.replace(
        normalization=norm.replace(discounted_return=jnp.zeros_like(norm.discounted_return))
    )


__all__ = [
    "INITIAL_COUNT",
    "NormalizationState",
    "NormalizedTrainState",
    "RunningStatistics",
    "init_normalization",
    "init_statistics",
    "normalization_from_params",
    "normalization_of",
    "normalize",
    "normalize_observation",
    "normalize_rollout",
    "reset_returns",
    "scale_rewards",
    "update_statistics",
    "validate_normalization",
    "with_normalization",
]
