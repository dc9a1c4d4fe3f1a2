"""Losses shared by the agents. Each returns a scalar (mean over the batch) unless stated."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import rlax


def loss_mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of ``(predictions - targets)^2``.

    Args:
        predictions: ``[B, ...]``.
        targets: same shape as ``predictions``.
    """
    chex.assert_equal_shape([predictions, targets])
    return jnp.mean(jnp.square(predictions - targets))


def loss_huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
    """Mean Huber loss (quadratic within ``delta``, linear outside), via ``optax.huber_loss``.

    Args:
        predictions: ``[B, ...]``.
        targets: same shape as ``predictions``.
        delta: the transition point.
    """
    chex.assert_equal_shape([predictions, targets])
    return jnp.mean(optax.huber_loss(predictions, targets, delta=delta))


def loss_policy_ppo(
    log_probs: jax.Array,
    old_log_probs: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """PPO clipped surrogate objective (as a loss), via ``rlax.clipped_surrogate_pg_loss``.

    See "Proximal Policy Optimization Algorithms", Schulman et al., 2017.

    Args:
        log_probs: ``[B]`` log-probabilities of the taken actions under the current policy.
        old_log_probs: ``[B]`` log-probabilities under the behaviour policy.
        advantages: ``[B]``.
        clip_eps: clipping range of the probability ratio.

    Returns:
        ``(loss, approx_kl)`` where ``approx_kl`` is the ``(r - 1) - log r`` estimator.
    """
    chex.assert_rank([log_probs, old_log_probs, advantages], 1)
    chex.assert_equal_shape([log_probs, old_log_probs, advantages])
    log_ratio = log_probs - old_log_probs
    ratio = jnp.exp(log_ratio)
    loss = rlax.clipped_surrogate_pg_loss(ratio, advantages, clip_eps)
    approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
    return loss, jax.lax.stop_gradient(approx_kl)


def loss_value_clip(
    values: jax.Array,
    targets: jax.Array,
    old_values: jax.Array,
    clip_eps: float | jax.Array | None,
) -> jax.Array:
    """Value regression ``0.5 * (V - target)^2``, optionally clipped around the old values.

    With ``clip_eps`` set, the PPO2 form ``0.5 * max((V - G)^2, (V_old + clip(V - V_old) - G)^2)``.

    Args:
        values: ``[B]`` current predictions.
        targets: ``[B]`` return targets.
        old_values: ``[B]`` predictions at rollout time (used only when clipping).
        clip_eps: clipping range, or ``None`` for the plain squared error.
    """
    chex.assert_equal_shape([values, targets, old_values])
    unclipped = jnp.square(values - targets)
    if clip_eps is None:
        return 0.5 * jnp.mean(unclipped)
    clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    clipped = jnp.square(clipped_values - targets)
    return 0.5 * jnp.mean(jnp.maximum(unclipped, clipped))
