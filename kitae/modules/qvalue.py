"""Q-value networks for discrete actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import gymnasium as gym
import jax

from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, resolve_encoder
from kitae.modules.modules import MLP


class QValue(nn.Module):
    """``Q(o, .)``: the observation encoder, an MLP torso and one output per action, optionally
    dueling.

    Attributes:
        n_actions: number of discrete actions.
        hidden_sizes: torso widths.
        activation: torso activation.
        dueling: use the dueling head ``V(o) + A(o, a) - mean_a A(o, a)``
            ("Dueling Network Architectures for Deep RL", Wang et al., 2016).
        preprocess_fn: applied to observations before the encoder.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    dueling: bool = False
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        """Args: observations ``[B, ...]`` (or a dict of them). Returns: ``[B, n_actions]``."""
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = MLP(self.hidden_sizes, self.activation)(Encoder(self.encoder)(x))
        if not self.dueling:
            return nn.Dense(self.n_actions)(x)
        value = nn.Dense(1)(x)
        advantages = nn.Dense(self.n_actions)(x)
        return value + advantages - advantages.mean(axis=-1, keepdims=True)


def qvalue_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "relu",
    dueling: bool = False,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> QValue:
    """Builds a :class:`QValue` for a discrete ``action_space``; ``encoder`` is a spec or a name
    resolved against ``observation_space`` (see :func:`~kitae.modules.encoders.resolve_encoder`).

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``, or the encoder does
            not fit the observations.
    """
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported by a Q-value network: it needs "
            "a gymnasium.spaces.Discrete action space."
        )
    spec = resolve_encoder(observation_space, encoder, preprocess_fn)
    return QValue(
        int(action_space.n), tuple(hidden_sizes), activation, dueling, preprocess_fn, spec
    )
