"""Partially observed variants of JAX-native envs: keep only some observation entries.

``MaskedObservation(gymnax_env, keep=(0, 2))`` is a gymnax-style env (it plugs into
:class:`~kitae.envs.jax_env.JaxEnv` and the compiled loop) whose observations are the kept
entries of the wrapped env's flat observations, e.g. CartPole without its velocities, a memory
task that a feed-forward agent cannot solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CARTPOLE_POSITIONS = (0, 2)
"""CartPole's cart position and pole angle (its velocities, entries 1 and 3, are hidden)."""


class MaskedObservation:
    """A gymnax env whose observations keep only the entries ``keep`` of the wrapped env's.

    Everything else (params, dynamics, rewards, termination, truncation) is the wrapped env's.

    Args:
        env: a gymnax ``Environment`` with flat (rank-1) observations.
        keep: indices of the observation entries to keep.
        name: the env's name (default ``"<env name>-masked"``).

    Raises:
        ValueError: if ``keep`` is empty or out of range.
    """

    def __init__(self, env: Any, keep: Sequence[int], name: str | None = None):
        size = int(np.prod(env.observation_space(env.default_params).shape))
        keep = tuple(int(i) for i in keep)
        if not keep or min(keep) < 0 or max(keep) >= size:
            raise ValueError(f"keep={keep} is invalid: use indices in [0, {size}).")
        self._env = env
        self.keep = keep
        self._index = jnp.asarray(keep)
        self.name = name or f"{getattr(env, 'name', type(env).__name__)}-masked"

    def __getattr__(self, attr: str) -> Any:  # params, is_truncated, action_space, ...
        return getattr(self._env, attr)

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        obs, state = self._env.reset_env(key, params)
        return obs[self._index], state

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any) -> tuple:
        obs, state, reward, done, info = self._env.step_env(key, state, action, params)
        return (obs[self._index], state, reward, done, info)

    def observation_space(self, params: Any) -> Any:
        from gymnax.environments import spaces

        space = self._env.observation_space(params)
        low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape)[list(self.keep)]
        high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)[list(self.keep)]
        return spaces.Box(low, high, (len(self.keep),), jnp.float32)


def masked_cartpole() -> MaskedObservation:
    """gymnax ``CartPole-v1`` observing only the cart position and pole angle."""
    import gymnax

    env, _ = gymnax.make("CartPole-v1")
    return MaskedObservation(env, CARTPOLE_POSITIONS, name="CartPole-v1-positions")
