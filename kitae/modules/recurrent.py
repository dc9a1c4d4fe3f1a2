"""Recurrent Q-networks: the observation encoder and an MLP torso, an LSTM or GRU core unrolled
over time with episode resets, and a Q head.

Conventions: inputs are time-major, ``[T, B, ...]``. The core state of a batch is one array
``[B, D]`` (an LSTM's ``(c, h)`` concatenated, ``D = 2 * core_size``; a GRU's ``h``,
``D = core_size``), so that replay buffers and checkpoints store it as a plain array.
``resets[t]`` zeroes the core state *before* step ``t`` is processed (step ``t`` starts an
episode). See "Recurrent Experience Replay in Distributed Reinforcement Learning",
Kapturowski et al., 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, resolve_encoder
from kitae.modules.modules import MLP

CELLS = ("lstm", "gru")


def core_state_size(cell: str, core_size: int) -> int:
    """``D``, the width of the packed core state of ``cell`` (``"lstm"`` or ``"gru"``)."""
    return 2 * core_size if cell == "lstm" else core_size


class RecurrentOutput(NamedTuple):
    """What :class:`RecurrentQNetwork` returns for an unroll of ``T`` steps of ``B`` sequences.

    Attributes:
        q: ``[T, B, A]`` Q-values of the observations.
        states: ``[T, B, D]`` core state after each step (``states[-1]`` continues the unroll).
        q_next: ``[T, B, A]`` Q-values of ``next_observations[t]`` from ``states[t]`` (no reset:
            the bootstrap value of transition ``t``, the final observation after an episode
            end), or ``None`` when no next observations were given.
    """

    q: jax.Array
    states: jax.Array
    q_next: jax.Array | None


class ResetCore(nn.Module):
    """One time step of an LSTM/GRU core that zeroes its state where ``reset`` is set.

    Also applies the core to the step's next observation features (from the new state, without
    storing it), which gives the bootstrap features of every transition in the same scan.

    Attributes:
        cell: ``"lstm"`` or ``"gru"``.
        core_size: hidden units.
    """

    cell: str
    core_size: int

    @nn.compact
    def __call__(
        self, state: jax.Array, inputs: tuple[jax.Array, jax.Array, jax.Array | None]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array | None]]:
        x, reset, x_next = inputs
        state = jnp.where(reset[:, None], jnp.zeros_like(state), state)
        if self.cell == "lstm":
            core = nn.OptimizedLSTMCell(self.core_size)

            def step(packed: jax.Array, features: jax.Array) -> tuple[jax.Array, jax.Array]:
                c, h = jnp.split(packed, 2, axis=-1)
                (c, h), y = core((c, h), features)
                return jnp.concatenate([c, h], axis=-1), y

        else:
            core = nn.GRUCell(self.core_size)

            def step(packed: jax.Array, features: jax.Array) -> tuple[jax.Array, jax.Array]:
                return core(packed, features)

        state, y = step(state, x)
        y_next = None if x_next is None else step(state, x_next)[1]
        return state, (y, y_next, state)


class RecurrentQNetwork(nn.Module):
    """``Q(history, .)``: encoder and MLP torso -> LSTM/GRU core (reset at episode starts) -> Q
    head.

    Attributes:
        n_actions: number of discrete actions.
        hidden_sizes: torso widths (applied to every step independently).
        core_size: hidden units of the core.
        cell: ``"lstm"`` (``nn.OptimizedLSTMCell``) or ``"gru"`` (``nn.GRUCell``).
        activation: torso activation.
        dueling: dueling head ``V + A - mean_a A`` (Wang et al., 2016).
        preprocess_fn: applied to observations before the encoder.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`), parameters
            ``observation_encoder``.
    """

    n_actions: int
    hidden_sizes: Sequence[int] = (64,)
    core_size: int = 64
    cell: str = "lstm"
    activation: str = "relu"
    dueling: bool = False
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN

    @property
    def state_size(self) -> int:
        """``D``, the width of the packed core state."""
        return core_state_size(self.cell, self.core_size)

    def initial_state(self, batch_size: int) -> jax.Array:
        """The episode-start core state, zeros ``float32[batch_size, D]``."""
        return jnp.zeros((batch_size, self.state_size), jnp.float32)

    def setup(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell={self.cell!r} is invalid: use one of {list(CELLS)}.")
        self.observation_encoder = Encoder(self.encoder)
        self.torso = MLP(self.hidden_sizes, self.activation)
        self.core = nn.scan(
            ResetCore,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=0,
            out_axes=0,
        )(self.cell, self.core_size)
        if self.dueling:
            self.value_head = nn.Dense(1)
        self.action_head = nn.Dense(self.n_actions)

    def _features(self, observations: Any) -> jax.Array:
        """Torso features ``[T, B, F]`` of ``observations [T, B, ...]`` (or a dict of them)."""
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        t, b = jax.tree.leaves(x)[0].shape[:2]
        x = jax.tree.map(lambda v: v.reshape((t * b, *v.shape[2:])), x)
        return self.torso(self.observation_encoder(x)).reshape((t, b, -1))

    def _head(self, y: jax.Array) -> jax.Array:
        advantages = self.action_head(y)
        if not self.dueling:
            return advantages
        return self.value_head(y) + advantages - advantages.mean(axis=-1, keepdims=True)

    def __call__(
        self,
        observations: Any,
        resets: jax.Array,
        state: jax.Array,
        next_observations: Any = None,
    ) -> RecurrentOutput:
        """Unrolls the network over ``T`` steps.

        Args:
            observations: ``[T, B, ...]`` (or a dict of them).
            resets: ``bool[T, B]``, zero the core state before step ``t``.
            state: ``[B, D]`` core state before step 0.
            next_observations: optional ``[T, B, ...]`` next observation of each step, whose
                Q-values (from the state after the step) come back as ``q_next``.

        Returns:
            A :class:`RecurrentOutput`.
        """
        leading = jax.tree.leaves(observations)[0].shape[:2]
        if resets.shape != leading:
            raise ValueError(
                f"resets has shape {resets.shape}; expected the observations' [T, B] = {leading}."
            )
        x = self._features(observations)
        x_next = None if next_observations is None else self._features(next_observations)
        _, (y, y_next, states) = self.core(state, (x, resets.astype(bool), x_next))
        q_next = None if y_next is None else self._head(y_next)
        return RecurrentOutput(self._head(y), states, q_next)


def recurrent_qvalue_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_sizes: Sequence[int] = (64,),
    core_size: int = 64,
    cell: str = "lstm",
    activation: str = "relu",
    dueling: bool = False,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> RecurrentQNetwork:
    """Builds a :class:`RecurrentQNetwork` for a discrete ``action_space``; ``encoder`` is a spec
    or a name resolved against ``observation_space`` (see
    :func:`~kitae.modules.encoders.resolve_encoder`).

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``, ``cell`` is
            unknown, or the encoder does not fit the observations.
    """
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported by a Q-value network: it needs "
            "a gymnasium.spaces.Discrete action space."
        )
    if cell not in CELLS:
        raise ValueError(f"algo_params.cell={cell!r} is invalid: use one of {list(CELLS)}.")
    return RecurrentQNetwork(
        int(action_space.n),
        tuple(hidden_sizes),
        core_size,
        cell,
        activation,
        dueling,
        preprocess_fn,
        resolve_encoder(observation_space, encoder, preprocess_fn),
    )
