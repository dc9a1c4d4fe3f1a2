"""Ensembles of Q-value critics for actor-critic agents (twin critics: ``n_critics=2``).

Each member has its own parameters; the ensemble is one ``flax.linen.vmap`` over the member
module, so ``apply`` returns every member's values stacked on a leading axis ``[C, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.modules.distributions import action_bounds
from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec
from kitae.modules.modules import MLP
from kitae.modules.qvalue import QValue


class ContinuousQ(nn.Module):
    """``Q(o, a)`` for Box actions: an MLP over the encoded observation and the action
    (``MLP(concat(Encoder(o), a))``), one output.

    The action is first mapped from its bounds to ``[-1, 1]``, so the network sees the same
    input scale whatever the env's bounds.

    Attributes:
        action_low: ``[A]`` lower bounds.
        action_high: ``[A]`` upper bounds.
        hidden_sizes: torso widths.
        activation: torso activation.
        preprocess_fn: applied to observations first.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    action_low: Sequence[float]
    action_high: Sequence[float]
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any, actions: jax.Array) -> jax.Array:
        """``observations [B, ...]`` (or a dict of them), ``actions [B, A]`` -> ``[B]``."""
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = Encoder(self.encoder)(x)
        low, high = jnp.asarray(self.action_low), jnp.asarray(self.action_high)
        scaled = (actions.astype(jnp.float32) - (high + low) / 2) / ((high - low) / 2)
        x = MLP(self.hidden_sizes, self.activation)(jnp.concatenate([x, scaled], axis=-1))
        return nn.Dense(1)(x)[..., 0]


class ContinuousCritics(nn.Module):
    """``n_critics`` independent :class:`ContinuousQ`; returns ``[C, B]``."""

    n_critics: int
    action_low: Sequence[float]
    action_high: Sequence[float]
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any, actions: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            ContinuousQ,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(
            self.action_low,
            self.action_high,
            self.hidden_sizes,
            self.activation,
            self.preprocess_fn,
            self.encoder,
        )(observations, actions)


class DiscreteCritics(nn.Module):
    """``n_critics`` independent :class:`~kitae.modules.qvalue.QValue`; returns ``[C, B, K]``."""

    n_critics: int
    n_actions: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        ensemble = nn.vmap(
            QValue,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(
            self.n_actions,
            self.hidden_sizes,
            self.activation,
            False,
            self.preprocess_fn,
            self.encoder,
        )(observations)


def critics_factory(
    action_space: gym.Space,
    n_critics: int,
    *,
    hidden_sizes: Sequence[int] = (256, 256),
    activation: str = "relu",
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: EncoderSpec = FLATTEN,
) -> ContinuousCritics | DiscreteCritics:
    """Critics for ``action_space``: ``Q(o, a) -> [C, B]`` for a 1-D Box with finite bounds,
    ``Q(o, .) -> [C, B, K]`` for ``Discrete(K)``; each critic has its own ``encoder``.

    Raises:
        ValueError: for any other action space, or a Box with infinite bounds.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return DiscreteCritics(
            n_critics, int(action_space.n), tuple(hidden_sizes), activation, preprocess_fn, encoder
        )
    bounds = action_bounds(action_space, "a Q(o, a) critic")
    return ContinuousCritics(
        n_critics,
        tuple(float(x) for x in bounds.low),
        tuple(float(x) for x in bounds.high),
        tuple(hidden_sizes),
        activation,
        preprocess_fn,
        encoder,
    )


__all__ = ["ContinuousQ", "ContinuousCritics", "DiscreteCritics", "critics_factory"]
