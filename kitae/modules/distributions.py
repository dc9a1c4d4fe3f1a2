"""Bounded continuous actions: Box bounds, squashing into them, and the tanh-squashed Gaussian.

Conventions: ``low`` and ``high`` are the ``[A]`` finite bounds of a 1-D Box action space;
``loc = (high + low) / 2`` and ``scale = (high - low) / 2`` map ``[-1, 1]`` onto them. A squashed
action is ``a = loc + scale * tanh(u)`` for an unbounded ``u`` (the "pre-squash" action), so its
density follows from the change of variables

    log pi(a) = log N(u; mean, std) - sum_i [log(1 - tanh(u_i)^2) + log(scale_i)].

The distribution is ``distrax.Transformed`` over a diagonal Gaussian with the bijector
``Block(Chain([ScalarAffine(loc, scale), Tanh()]), 1)``; distrax computes the log-determinant of
the tanh in the numerically stable form ``2 * (log 2 - u - softplus(-2u))``.

See "Soft Actor-Critic Algorithms and Applications", Haarnoja et al., 2018, appendix C.
"""

from __future__ import annotations

from typing import NamedTuple

import distrax
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np


class ActionBounds(NamedTuple):
    """The finite bounds of a 1-D Box action space, ``float32[A]`` numpy arrays (static)."""

    low: np.ndarray
    high: np.ndarray

    @property
    def loc(self) -> np.ndarray:
        """``(high + low) / 2``, the image of ``tanh(u) = 0``."""
        return (self.high + self.low) / 2

    @property
    def scale(self) -> np.ndarray:
        """``(high - low) / 2``: half the range; noise levels relative to the bounds use it."""
        return (self.high - self.low) / 2


def action_bounds(space: gym.Space, agent: str = "this agent") -> ActionBounds:
    """The :class:`ActionBounds` of a 1-D Box with finite bounds.

    Args:
        space: ``env_cfg.action_space``.
        agent: the agent's name, for the error message.

    Raises:
        ValueError: for a non-Box space, a Box that is not 1-D, or infinite bounds.
    """
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"env_cfg.action_space={space} is not supported by {agent}: it needs a 1-D "
            "gymnasium.spaces.Box action space."
        )
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"env_cfg.action_space={space} has infinite bounds: {agent} squashes its actions "
            "into the bounds, so they must be finite. Declare the env's true limits, e.g. "
            "gymnasium.wrappers.TransformAction(env, lambda a: a, gymnasium.spaces.Box(low, high))."
        )
    if not np.all(high > low):
        raise ValueError(f"env_cfg.action_space={space} is empty: it needs high > low.")
    return ActionBounds(low, high)


def squash_bijector(bounds: ActionBounds) -> distrax.Bijector:
    """``u [..., A] -> loc + scale * tanh(u)``, a bijector on vectors (event rank 1)."""
    affine = distrax.ScalarAffine(shift=jnp.asarray(bounds.loc), scale=jnp.asarray(bounds.scale))
    return distrax.Block(distrax.Chain([affine, distrax.Tanh()]), 1)


def squash_to_bounds(u, bounds: ActionBounds):
    """``loc + scale * tanh(u)``: numpy in, numpy out (no JAX dispatch in the host loop).

    The same map as :func:`squash_bijector`, written out so that the gymnasium loop can apply it
    to numpy actions without dispatching a JAX computation per step.

    Args:
        u: pre-squash actions ``[..., A]`` (numpy or JAX).
        bounds: the action bounds.

    Returns:
        Actions in ``[low, high]``, same shape and array type as ``u``.
    """
    xp = jnp if isinstance(u, jax.Array) else np
    return (bounds.loc + bounds.scale * xp.tanh(u)).astype(np.float32)


def clip_to_bounds(actions, bounds: ActionBounds):
    """``actions [..., A]`` clipped to ``[low, high]`` (numpy or JAX, matching the input)."""
    clip = jnp.clip if isinstance(actions, jax.Array) else np.clip
    return clip(actions, bounds.low, bounds.high)


def squashed_gaussian(
    mean: jax.Array, log_std: jax.Array, bounds: ActionBounds
) -> distrax.Transformed:
    """The distribution of ``loc + scale * tanh(u)``, ``u ~ N(mean, exp(log_std))`` diagonal.

    ``sample_and_log_prob`` computes the density from the pre-squash sample (stable even when
    ``tanh(u)`` rounds to +-1); ``log_prob(a)`` inverts the squashing (``atanh``) and is only
    reliable away from the bounds: use :func:`squashed_log_prob` when ``u`` is at hand.

    Args:
        mean: ``[B, A]`` Gaussian means.
        log_std: ``[B, A]`` Gaussian log standard deviations.
        bounds: the action bounds.

    Returns:
        A distribution with batch shape ``[B]`` and event shape ``[A]``.
    """
    base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Transformed(base, squash_bijector(bounds))


def squashed_log_prob(dist: distrax.Transformed, u: jax.Array) -> jax.Array:
    """``log pi(a)`` of the squashed action ``a = f(u)``, computed from ``u`` (no ``atanh``).

    Args:
        dist: from :func:`squashed_gaussian`.
        u: pre-squash actions ``[B, A]``.

    Returns:
        ``[B]`` log-densities of the squashed actions.
    """
    return dist.distribution.log_prob(u) - dist.bijector.forward_log_det_jacobian(u)


def squashed_mode(dist: distrax.Transformed) -> jax.Array:
    """The deterministic action ``f(mean)`` ``[B, A]``: the squashed Gaussian mean, used for
    greedy acting (distrax has no closed-form mode for a non-affine transform)."""
    return dist.bijector.forward(dist.distribution.mean())


def squashed_entropy(dist: distrax.Transformed, key: jax.Array) -> jax.Array:
    """A one-sample, reparameterised estimate of the squashed distribution's entropy ``[B]``.

    ``H(f(U)) = H(U) + E[log |det J_f(U)|]``: the Gaussian entropy in closed form plus the
    log-determinant at one sample ``u ~ N(mean, std)`` (distrax has no closed form for it).
    """
    u = dist.distribution.sample(seed=key)
    return dist.distribution.entropy() + dist.bijector.forward_log_det_jacobian(u)


__all__ = [
    "ActionBounds",
    "action_bounds",
    "clip_to_bounds",
    "squash_bijector",
    "squash_to_bounds",
    "squashed_entropy",
    "squashed_gaussian",
    "squashed_log_prob",
    "squashed_mode",
]
