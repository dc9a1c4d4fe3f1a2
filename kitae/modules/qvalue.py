"""Q-value networks for discrete actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import gymnasium as gym
import jax

from kitae.modules.modules import MLP


class QValue(nn.Module):
    """``Q(o, .)``: an MLP torso and one output per action, optionally dueling.

    Attributes:
        n_actions: number of discrete actions.
        hidden_sizes: torso widths.
        activation: torso activation.
        dueling: use the dueling head ``V(o) + A(o, a) - mean_a A(o, a)``
            ("Dueling Network Architectures for Deep RL", Wang et al., 2016).
        preprocess_fn: applied to observations before the torso.
    """

    n_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    dueling: bool = False
    preprocess_fn: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = MLP(self.hidden_sizes, self.activation)(x)
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
) -> QValue:
    """Builds a :class:`QValue` for a discrete ``action_space``.

    Raises:
        ValueError: if ``action_space`` is not ``gymnasium.spaces.Discrete``.
    """
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"env_cfg.action_space={action_space} is not supported by a Q-value network: it needs "
            "a gymnasium.spaces.Discrete action space."
        )
    del observation_space  # the torso flattens any observation shape
    return QValue(int(action_space.n), tuple(hidden_sizes), activation, dueling, preprocess_fn)
