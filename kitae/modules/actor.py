"""Policy networks of off-policy actor-critic agents (SAC, TD3, DDPG).

Continuous actors return *pre-squash* outputs ``u``; the agents map them into the action bounds
with :mod:`kitae.modules.distributions` (``a = loc + scale * tanh(u)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec
from kitae.modules.modules import MLP

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
"""Range of the Gaussian actor's log-std, as in the reference SAC implementation."""


class GaussianActor(nn.Module):
    """``o -> (mean [B, A], log_std [B, A])`` of the pre-squash Gaussian (observation encoder,
    MLP torso, two linear heads), log-std clipped to ``[LOG_STD_MIN, LOG_STD_MAX]``.

    Attributes:
        action_dim: action dimension ``A``.
        hidden_sizes: torso widths.
        activation: torso activation.
        preprocess_fn: applied to observations first.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> tuple[jax.Array, jax.Array]:
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = MLP(self.hidden_sizes, self.activation)(Encoder(self.encoder)(x))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.clip(nn.Dense(self.action_dim)(x), LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std


class LinearHeadActor(nn.Module):
    """``o -> [B, n_outputs]``: the observation encoder, an MLP torso and a linear output layer.
    TD3/DDPG use it for the pre-squash deterministic action, discrete SAC for the logits of its
    categorical policy.

    Attributes:
        n_outputs: output size (the action dimension, or the number of discrete actions).
        hidden_sizes: torso widths.
        activation: torso activation.
        preprocess_fn: applied to observations first.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_outputs: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = MLP(self.hidden_sizes, self.activation)(Encoder(self.encoder)(x))
        return nn.Dense(self.n_outputs)(x)


__all__ = ["GaussianActor", "LinearHeadActor", "LOG_STD_MAX", "LOG_STD_MIN"]
