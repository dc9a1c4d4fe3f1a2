"""Return and advantage targets over time.

Conventions (rlax-style): ``r_t`` is the reward of transition ``t``; ``terminated_t`` /
``truncated_t`` say that the episode ended after transition ``t``; ``v_tp1`` is the value of the
transition's true next observation (the final observation when the episode ended). Truncation
bootstraps (``v_tp1`` is used) but stops the recursion into the next episode; termination does
neither.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import rlax


def compute_td_targets(r_t: jax.Array, discount_t: jax.Array, v_tp1: jax.Array) -> jax.Array:
    """One-step TD targets ``r_t + discount_t * v_tp1``.

    Args:
        r_t: rewards, any shape ``[...]``.
        discount_t: ``gamma * (1 - terminated_t)``, same shape.
        v_tp1: bootstrap values of the next observations, same shape.

    Returns:
        Targets of the same shape, with gradients stopped.
    """
    chex.assert_equal_shape([r_t, discount_t, v_tp1])
    return jax.lax.stop_gradient(r_t + discount_t * v_tp1)


def compute_gae(
    r_t: jax.Array,
    v_t: jax.Array,
    v_tp1: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimation over one trajectory, time-major.

    Written here rather than with ``rlax.truncated_generalized_advantage_estimation`` because
    that takes one value sequence ``v[0..T]`` and so cannot bootstrap a time-limit truncation
    from the final observation's value while starting the next episode from the reset value.

    See "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
    Schulman et al., 2016.

    Args:
        r_t: rewards ``[T]``.
        v_t: values of the observations ``[T]``.
        v_tp1: values of the true next observations ``[T]``.
        terminated_t: ``[T]``, 1 where the episode terminated after step ``t``.
        truncated_t: ``[T]``, 1 where the episode was truncated after step ``t``.
        gamma: discount.
        gae_lambda: GAE lambda (0: one-step TD, 1: Monte-Carlo with bootstrap).

    Returns:
        ``(advantages [T], returns [T])`` with ``returns = advantages + v_t``, gradients stopped.
    """
    chex.assert_rank([r_t, v_t, v_tp1, terminated_t, truncated_t], 1)
    chex.assert_equal_shape([r_t, v_t, v_tp1, terminated_t, truncated_t])
    not_terminated = 1.0 - terminated_t.astype(r_t.dtype)
    not_ended = not_terminated * (1.0 - truncated_t.astype(r_t.dtype))
    deltas = r_t + gamma * not_terminated * v_tp1 - v_t
    decays = gamma * gae_lambda * not_ended

    def step(next_advantage, inputs):
        delta, decay = inputs
        advantage = delta + decay * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(step, jnp.zeros((), r_t.dtype), (deltas, decays), reverse=True)
    advantages = jax.lax.stop_gradient(advantages)
    return advantages, jax.lax.stop_gradient(advantages + v_t)


def compute_n_step_return(
    r_t: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    gamma: float | jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Truncated n-step return of one window of consecutive transitions of one env.

    The window is cut after the first transition that ends its episode: with ``k`` the number of
    transitions kept, the return is ``sum_{i<k} gamma^i r_i``, the bootstrap discount is
    ``gamma^k`` (0 if transition ``k - 1`` terminated) and the bootstrap observation is the next
    observation of transition ``k - 1``. Written here because ``rlax.n_step_bootstrapped_returns``
    needs a value at every step of the window, while a replay sample only has the last one.
    See "Learning to predict by the methods of temporal differences", Sutton, 1988.

    Args:
        r_t: rewards ``[n]``.
        terminated_t: ``[n]``, the episode terminated after transition ``t``.
        truncated_t: ``[n]``, the episode was truncated after transition ``t``.
        gamma: discount.

    Returns:
        ``(return, discount, last)``: scalars, ``last = k - 1`` the index of the transition whose
        next observation is bootstrapped from.
    """
    chex.assert_rank([r_t, terminated_t, truncated_t], 1)
    chex.assert_equal_shape([r_t, terminated_t, truncated_t])
    ended = (terminated_t | truncated_t).astype(jnp.float32)
    # alive_i = 1 while no earlier transition of the window ended its episode.
    alive = jnp.cumprod(jnp.concatenate([jnp.ones((1,), jnp.float32), 1.0 - ended[:-1]]))
    powers = gamma ** jnp.arange(r_t.shape[0], dtype=jnp.float32)
    n_return = jnp.sum(alive * powers * r_t.astype(jnp.float32))
    last = (jnp.sum(alive) - 1).astype(jnp.int32)
    discount = gamma ** (last + 1.0) * (1.0 - terminated_t[last].astype(jnp.float32))
    return n_return, discount, last


def compute_lambda_returns(
    r_t: jax.Array,
    v_tp1: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    gamma: float,
    lambda_: float,
) -> jax.Array:
    """λ-returns of one env's rollout, cut at episode ends (``lambda_ = 1``: Monte-Carlo).

    See "Reinforcement Learning: An Introduction", Sutton and Barto, 2018, chapter 12.

    ``G_t = r_t + gamma_t * ((1 - λ_t) v_tp1 + λ_t G_{t+1})`` with ``gamma_t = gamma * (1 -
    terminated_t)`` and ``λ_t = lambda_ * (1 - terminated_t - truncated_t)``: a terminated
    episode stops there, a truncated one bootstraps from its final observation's value, the
    rollout's last step bootstraps from ``v_tp1``; nothing leaks into the next episode.
    Computed by ``rlax.lambda_returns`` with these per-step discounts and λs.

    Args:
        r_t: rewards ``[T]``.
        v_tp1: values of the true next observations ``[T]``.
        terminated_t: ``[T]``, the episode terminated after step ``t``.
        truncated_t: ``[T]``, the episode was truncated after step ``t``.
        gamma: discount.
        lambda_: λ in ``[0, 1]``.

    Returns:
        Targets ``[T]``, gradients stopped.
    """
    chex.assert_rank([r_t, v_tp1, terminated_t, truncated_t], 1)
    chex.assert_equal_shape([r_t, v_tp1, terminated_t, truncated_t])
    terminated = terminated_t.astype(jnp.float32)
    ended = jnp.maximum(terminated, truncated_t.astype(jnp.float32))
    returns = rlax.lambda_returns(
        r_t.astype(jnp.float32), gamma * (1.0 - terminated), v_tp1, lambda_ * (1.0 - ended)
    )
    return jax.lax.stop_gradient(returns)
