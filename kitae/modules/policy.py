"""Actor-critic networks and the action distributions they parameterise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import distrax
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from kitae.masking import MASKED_VALUE, apply_mask
from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, resolve_encoder
from kitae.modules.modules import MLP, SQRT2, orthogonal


class ActorCritic(nn.Module):
    """Policy and value heads over separate or shared torsos, each an observation encoder and an
    MLP.

    Returns ``(policy_output, value)``: for discrete actions ``policy_output`` is the logits
    ``[B, n_actions]``; for MultiDiscrete actions (``nvec``) the logits ``[B, D, max(nvec)]`` of
    each sub-action, padded with :data:`~kitae.masking.MASKED_VALUE` where a sub-action has fewer
    choices; for continuous actions it is ``(mean [B, A], log_std [B, A])`` with a
    state-independent ``log_std`` parameter (or a state-dependent head when
    ``state_dependent_std``). Orthogonal initialisation as in "What Matters in On-Policy RL",
    Andrychowicz et al., 2021.

    Attributes:
        action_dim: number of discrete actions (``sum(nvec)`` for MultiDiscrete), or the
            continuous action dimension.
        discrete: whether actions are discrete.
        hidden_sizes: torso widths.
        activation: torso activation.
        shared_encoder: one torso (encoder and MLP) for both heads; else each head has its own
            encoder and MLP.
        state_dependent_std: continuous only: predict ``log_std`` from the torso.
        log_std_init: continuous only: initial ``log_std``.
        preprocess_fn: applied to observations first.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
        nvec: MultiDiscrete only: the number of choices of each sub-action (``discrete`` too).
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared_encoder: bool = False
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None
    encoder: EncoderSpec = FLATTEN
    nvec: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, observations: Any):
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)

        def torso(x: Any) -> jax.Array:
            features = Encoder(self.encoder)(x)
            return MLP(self.hidden_sizes, self.activation, kernel_scale=SQRT2)(features)

        actor_x = torso(x)
        critic_x = actor_x if self.shared_encoder else torso(x)
        value = nn.Dense(1, kernel_init=orthogonal(1.0))(critic_x)[..., 0]
        head = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01))(actor_x)
        if self.nvec:
            return multi_discrete_logits(head, self.nvec), value
        if self.discrete:
            return head, value
        if self.state_dependent_std:
            log_std = nn.Dense(
                self.action_dim,
                kernel_init=orthogonal(0.01),
                bias_init=nn.initializers.constant(self.log_std_init),
            )(actor_x)
        else:
            log_std = self.param(
                "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
            )
            log_std = jnp.broadcast_to(log_std, head.shape)
        return (head, log_std), value


def multi_discrete_logits(logits: jax.Array, nvec: Sequence[int]) -> jax.Array:
    """Flat logits ``[B, sum(nvec)]`` split per sub-action into ``[B, D, max(nvec)]``, padded
    with :data:`~kitae.masking.MASKED_VALUE` (probability 0) past each sub-action's choices."""
    width = max(nvec)
    splits = np.cumsum(nvec)[:-1].tolist()
    parts = [
        jnp.pad(part, ((0, 0), (0, width - n)), constant_values=MASKED_VALUE)
        for part, n in zip(jnp.split(logits, splits, axis=-1), nvec, strict=True)
    ]
    return jnp.stack(parts, axis=-2)


def action_distribution(
    policy_output, discrete: bool, mask: jax.Array | None = None
) -> distrax.Distribution:
    """The distribution of :class:`ActorCritic`'s policy output.

    Args:
        policy_output: logits ``[B, A]`` (Categorical), logits ``[B, D, K]`` (MultiDiscrete: a
            product of ``D`` independent Categoricals, ``distrax.Independent``: log-probabilities
            and entropies are sums over sub-actions, actions ``int32[B, D]``), or
            ``(mean, log_std)`` ``[B, A]`` each (diagonal Normal).
        discrete: whether actions are discrete.
        mask: ``bool[B, A]`` valid actions of a Categorical (see :mod:`kitae.masking`): invalid
            ones get probability 0.
    """
    if discrete:
        if policy_output.ndim == 3:
            return distrax.Independent(distrax.Categorical(logits=policy_output), 1)
        return distrax.Categorical(logits=apply_mask(policy_output, mask))
    mean, log_std = policy_output
    return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


def actor_critic_factory(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    shared_encoder: bool = False,
    state_dependent_std: bool = False,
    log_std_init: float = 0.0,
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None,
    encoder: str | EncoderSpec = "auto",
) -> ActorCritic:
    """Builds an :class:`ActorCritic` for a Discrete, MultiDiscrete (1-D, starting at 0) or 1-D
    Box ``action_space``; ``encoder`` is
    a spec or a name resolved against ``observation_space`` (see
    :func:`~kitae.modules.encoders.resolve_encoder`).

    Raises:
        ValueError: for any other action space, or an encoder that does not fit the observations.
    """
    nvec: tuple[int, ...] = ()
    if isinstance(action_space, gym.spaces.Discrete):
        action_dim, discrete = int(action_space.n), True
    elif isinstance(action_space, gym.spaces.MultiDiscrete):
        check_multi_discrete(action_space)
        nvec = tuple(int(n) for n in action_space.nvec)
        action_dim, discrete = sum(nvec), True
    elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ValueError(
                f"env_cfg.action_space={action_space} has infinite bounds; declare the env's "
                "true limits, e.g. gymnasium.wrappers.TransformAction(env, lambda a: a, "
                "gymnasium.spaces.Box(low, high))."
            )
        action_dim, discrete = int(action_space.shape[0]), False
    else:
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported: use Discrete, MultiDiscrete "
            "or a 1-D Box."
        )
    return ActorCritic(
        action_dim,
        discrete,
        tuple(hidden_sizes),
        activation,
        shared_encoder,
        state_dependent_std,
        log_std_init,
        preprocess_fn,
        resolve_encoder(observation_space, encoder, preprocess_fn),
        nvec,
    )


def check_multi_discrete(action_space: gym.spaces.MultiDiscrete) -> None:
    """Raises a ``ValueError`` unless ``action_space`` is a 1-D MultiDiscrete starting at 0."""
    if len(action_space.shape) != 1 or np.any(action_space.start != 0):
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported: use a 1-D MultiDiscrete whose "
            "sub-actions start at 0 (shift them with gymnasium.wrappers.TransformAction)."
        )
