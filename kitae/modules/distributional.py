"""Distributional Q-networks for discrete actions: C51, QR-DQN and IQN heads on the observation
encoder and an MLP torso.

All three put the action axis before the distribution axis: C51 logits are ``[B, A, n_atoms]``,
QR-DQN and IQN quantile values ``[B, A, N]``. Q-values are
:func:`kitae.distributional.categorical_q_values` for C51 and the mean over the last axis for
the quantile networks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.config import check_int
from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, resolve_encoder
from kitae.modules.modules import MLP, get_activation


class ActionDistributionHead(nn.Module):
    """Maps features ``[B, F]`` to ``[B, A, n_outputs]``, optionally with a dueling split.

    The dueling form is ``V(x) + A(x, a) - mean_a A(x, a)`` applied to each of the ``n_outputs``
    (atom logits or quantile values), as in "Rainbow: Combining Improvements in Deep
    Reinforcement Learning", Hessel et al., 2018.

    Attributes:
        n_actions: number of discrete actions ``A``.
        n_outputs: outputs per action (atoms or quantiles).
        dueling: use the dueling split (layers ``value`` and ``advantage``; else ``output``).
    """

    n_actions: int
    n_outputs: int
    dueling: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[0], self.n_actions, self.n_outputs)
        if not self.dueling:
            return nn.Dense(self.n_actions * self.n_outputs, name="output")(x).reshape(shape)
        value = nn.Dense(self.n_outputs, name="value")(x)[:, None, :]
        advantages = nn.Dense(self.n_actions * self.n_outputs, name="advantage")(x).reshape(shape)
        return value + advantages - advantages.mean(axis=1, keepdims=True)


class DistributionQValue(nn.Module):
    """A Q-network with ``n_outputs`` values per action on the observation encoder and an MLP
    torso: the logits of C51's
    categorical distributions on a fixed support, or QR-DQN's quantile values at fixed levels.

    See "A Distributional Perspective on Reinforcement Learning", Bellemare et al., 2017, and
    "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018.

    Attributes:
        n_actions: number of discrete actions ``A``.
        n_outputs: values per action (C51: atoms; QR-DQN: quantiles).
        hidden_sizes: torso widths.
        activation: torso activation.
        dueling: dueling head (see :class:`ActionDistributionHead`).
        preprocess_fn: applied to observations before the encoder.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_actions: int
    n_outputs: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    dueling: bool = False
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        """Args: observations ``[B, ...]`` (or a dict of them). Returns: ``[B, A, n_outputs]``."""
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = MLP(self.hidden_sizes, self.activation)(Encoder(self.encoder)(x))
        return ActionDistributionHead(self.n_actions, self.n_outputs, self.dueling, name="head")(x)


def cosine_features(taus: jax.Array, n_cosines: int = 64) -> jax.Array:
    """The IQN basis ``cos(pi * i * tau)`` for ``i = 1..n_cosines``.

    Indices start at 1 as in Dopamine's implicit quantile network (the paper's Eq. 4 starts at
    0, whose feature is the constant 1, redundant with the bias). See "Implicit Quantile Networks
    for Distributional Reinforcement Learning", Dabney et al., 2018.

    Args:
        taus: quantile levels ``[...]``.
        n_cosines: number of basis functions.

    Returns:
        ``[..., n_cosines]`` float32 features.
    """
    i = jnp.arange(1, n_cosines + 1, dtype=jnp.float32)
    return jnp.cos(jnp.pi * i * taus.astype(jnp.float32)[..., None])


class CosineEmbedding(nn.Module):
    """IQN quantile embedding ``phi_j(tau) = ReLU(sum_{i=1}^{n} cos(pi i tau) w_ij + b_j)``.

    See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al.,
    2018 (Eq. 4).

    Attributes:
        features: embedding size (the state embedding's size, for the Hadamard product).
        n_cosines: number of cosine basis functions.
    """

    features: int
    n_cosines: int = 64

    @nn.compact
    def __call__(self, taus: jax.Array) -> jax.Array:
        """Args: taus ``[...]``. Returns: ``[..., features]``."""
        return nn.relu(nn.Dense(self.features)(cosine_features(taus, self.n_cosines)))


class ImplicitQuantileQValue(nn.Module):
    """IQN network: quantile values ``Z_tau(o, a)`` at caller-sampled quantile levels ``tau``.

    The observation encoder and the MLP torso give the state embedding ``psi(o)`` ``[B, d]``;
    the :class:`CosineEmbedding` gives ``phi(tau)`` ``[B, N, d]``; their Hadamard product goes
    through ``head_hidden_sizes`` and the output layer. The parameters do not depend on ``N``.
    See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al.,
    2018.

    Attributes:
        n_actions: number of discrete actions ``A``.
        hidden_sizes: torso widths (the last one is ``d``).
        activation: torso and head activation.
        n_cosines: cosine basis functions of the quantile embedding.
        head_hidden_sizes: hidden layers after the Hadamard product.
        dueling: dueling head (see :class:`ActionDistributionHead`).
        preprocess_fn: applied to observations before the encoder.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    n_cosines: int = 64
    head_hidden_sizes: Sequence[int] = (64,)
    dueling: bool = False
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any, taus: jax.Array) -> jax.Array:
        """Quantile values at ``taus``.

        Args:
            observations: ``[B, ...]`` (or a dict of them).
            taus: ``[B, N]`` quantile levels in ``[0, 1]``, one set per observation.

        Returns:
            Quantile values ``[B, A, N]``; entry ``[b, a, n]`` is at level ``taus[b, n]``.
        """
        chex.assert_rank(taus, 2)
        chex.assert_axis_dimension(taus, 0, jax.tree.leaves(observations)[0].shape[0])
        batch_size, n_taus = taus.shape
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        psi = MLP(self.hidden_sizes, self.activation)(Encoder(self.encoder)(x))  # [B, d]
        phi = CosineEmbedding(psi.shape[-1], self.n_cosines)(taus)  # [B, N, d]
        x = (psi[:, None, :] * phi).reshape(batch_size * n_taus, psi.shape[-1])
        x = MLP(self.head_hidden_sizes, self.activation)(x)
        x = ActionDistributionHead(self.n_actions, 1, self.dueling, name="head")(x)
        return x.reshape(batch_size, n_taus, self.n_actions).transpose(0, 2, 1)


def _discrete_actions(action_space: gym.Space, network: str) -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported by a {network} network: it "
            "needs a gymnasium.spaces.Discrete action space."
        )
    return int(action_space.n)


def _distribution_qvalue(
    action_space: gym.Space,
    algorithm: str,
    size_name: str,
    n_outputs: int,
    minimum: int,
    hidden_sizes: Sequence[int],
    activation: str,
    dueling: bool,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None,
    observation_space: gym.Space,
    encoder: str | EncoderSpec,
) -> DistributionQValue:
    """Validates the shared arguments of the C51 and QR-DQN factories and builds the network."""
    n_actions = _discrete_actions(action_space, algorithm)
    check_int(size_name, n_outputs, minimum)
    get_activation(activation)
    spec = resolve_encoder(observation_space, encoder, preprocess_fn)
    return DistributionQValue(
        n_actions, n_outputs, tuple(hidden_sizes), activation, dueling, preprocess_fn, spec
    )


def categorical_qvalue_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    n_atoms: int = 51,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "relu",
    dueling: bool = False,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> DistributionQValue:
    """Builds C51's :class:`DistributionQValue` (logits ``[B, A, n_atoms]``) for a discrete
    ``action_space``.

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``, ``n_atoms < 2`` or
            ``activation`` is unknown.
    """
    return _distribution_qvalue(
        action_space,
        "C51",
        "n_atoms",
        n_atoms,
        2,
        hidden_sizes,
        activation,
        dueling,
        preprocess_fn,
        observation_space,
        encoder,
    )


def quantile_qvalue_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    n_quantiles: int = 200,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "relu",
    dueling: bool = False,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> DistributionQValue:
    """Builds QR-DQN's :class:`DistributionQValue` (quantiles ``[B, A, N]``) for a discrete
    ``action_space``.

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``,
            ``n_quantiles < 1`` or ``activation`` is unknown.
    """
    return _distribution_qvalue(
        action_space,
        "QR-DQN",
        "n_quantiles",
        n_quantiles,
        1,
        hidden_sizes,
        activation,
        dueling,
        preprocess_fn,
        observation_space,
        encoder,
    )


def implicit_quantile_qvalue_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "relu",
    n_cosines: int = 64,
    head_hidden_sizes: Sequence[int] = (64,),
    dueling: bool = False,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> ImplicitQuantileQValue:
    """Builds an :class:`ImplicitQuantileQValue` (IQN) for a discrete ``action_space``.

    Initialise it with ``init_params(key, module, [observation_space, (n_taus,)])``.

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``, ``n_cosines < 1``
            or ``activation`` is unknown.
    """
    n_actions = _discrete_actions(action_space, "IQN")
    check_int("n_cosines", n_cosines, 1)
    get_activation(activation)
    return ImplicitQuantileQValue(
        n_actions,
        tuple(hidden_sizes),
        activation,
        n_cosines,
        tuple(head_hidden_sizes),
        dueling,
        preprocess_fn,
        resolve_encoder(observation_space, encoder, preprocess_fn),
    )
