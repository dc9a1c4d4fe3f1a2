"""JAX-native environments (gymnax; Brax and MuJoCo Playground through the subclass in
:mod:`kitae.envs.brax`) behind one small pure interface.

:class:`JaxEnv` exposes ``reset(key) -> (obs, state)`` and
``step(key, state, action) -> JaxStep`` for a single env (vmap it for many). ``step`` resets
the env when an episode ends and returns both the first observation of the next episode
(``observation``) and the true last observation of the finished one (``next_observation``), with
termination and time-limit truncation kept apart. It works with gymnax >= 1.0 (``step`` returns
``obs, state, reward, terminated, truncated, info``) and, through the same adapter, with the
older 5-tuple API (``obs, state, reward, done, info``), whose ``done`` also fires at the time
limit: there the env's own terminal condition is recovered by stepping it once more (in the same
compiled program, from the same key and state) with the time limit lifted, and only an end that
this step does not reproduce counts as truncation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np


class JaxStep(NamedTuple):
    """The result of :meth:`JaxEnv.step` for one env.

    Attributes:
        observation: the observation to act on next (after an automatic reset when the episode
            ended).
        state: the env state matching ``observation``.
        reward: ``r_t``.
        terminated: the episode reached a terminal state.
        truncated: the episode hit its time limit (and did not terminate).
        next_observation: the true observation after the action (the final one when it ended).
    """

    observation: Any
    state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_observation: Any


def _to_gym_space(space: Any) -> gym.Space:
    """Converts a gymnax Discrete/Box/Dict space (or one with an ``nvec``, as MultiDiscrete) to its
    gymnasium counterpart."""
    if isinstance(getattr(space, "spaces", None), dict):
        return gym.spaces.Dict({k: _to_gym_space(s) for k, s in space.spaces.items()})
    if hasattr(space, "nvec"):
        return gym.spaces.MultiDiscrete(np.asarray(space.nvec, np.int64))
    if hasattr(space, "n") and not hasattr(space, "low"):
        return gym.spaces.Discrete(int(space.n))
    if hasattr(space, "low") and hasattr(space, "high"):
        shape = tuple(space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
        return gym.spaces.Box(low, high, shape, np.float32)
    raise ValueError(f"unsupported JAX env space {space!r}: use Discrete, Box or Dict spaces.")


class JaxEnv:
    """A gymnax environment (either step API) as pure single-env ``reset`` / ``step``.

    Args:
        env: a gymnax ``Environment``.
        params: its ``EnvParams`` (default: ``env.default_params``).
        name: the env id, for configs and logs.
    """

    def __init__(self, env: Any, params: Any = None, name: str | None = None):
        if not (hasattr(env, "step_env") and hasattr(env, "reset_env")):
            raise TypeError(
                f"{type(env).__name__} is not a gymnax environment: it needs step_env and "
                "reset_env."
            )
        self.env = env
        self.params = env.default_params if params is None else params
        self.name = name or getattr(env, "name", type(env).__name__)
        # gymnax >= 1.0 splits time-limit truncation out of step_env (is_truncated).
        self.legacy_api = not hasattr(env, "is_truncated")
        self._params_without_limit = _without_time_limit(self.params) if self.legacy_api else None

    @property
    def observation_space(self) -> gym.Space:
        return _to_gym_space(self.env.observation_space(self.params))

    @property
    def action_space(self) -> gym.Space:
        return _to_gym_space(self.env.action_space(self.params))

    def observe(self, observation: Any, state: Any) -> Any:
        """What the agent is given of ``(observation, state)``: the observation (a subclass may
        add the state, e.g. for a search over the true dynamics)."""
        del state
        return observation

    def reset_env(self, key: jax.Array) -> tuple[Any, Any]:
        """The raw ``(observation, state)`` of a fresh episode (before :meth:`observe`)."""
        return self.env.reset_env(key, self.params)

    def reset(self, key: jax.Array) -> tuple[Any, Any]:
        """``(observation, state)`` of a fresh episode."""
        observation, state = self.reset_env(key)
        return self.observe(observation, state), state

    def transition(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array]:
        """One transition of the dynamics, without automatic reset.

        Returns:
            ``(observation, state, reward, terminated, truncated)``: the raw next observation
            and state, ``r_t``, and termination and time-limit truncation kept apart.
        """
        next_obs, next_state, reward, done, _ = self.env.step_env(key, state, action, self.params)
        done = jnp.asarray(done, bool)
        if self.legacy_api:
            if self._params_without_limit is None:  # no time limit: every end is terminal
                truncated = jnp.zeros_like(done)
                return next_obs, next_state, jnp.asarray(reward, jnp.float32), done, truncated
            # 5-tuple API: ``done`` includes the time limit. The same step with the limit lifted
            # says whether the env's own terminal condition fired (XLA shares the dynamics).
            *_, terminal, _ = self.env.step_env(key, state, action, self._params_without_limit)
            terminated = done & jnp.asarray(terminal, bool)
            truncated = done & ~terminated
        else:
            terminated = done
            truncated = jnp.asarray(self.env.is_truncated(next_state, self.params), bool)
            truncated = truncated & ~terminated
        return next_obs, next_state, jnp.asarray(reward, jnp.float32), terminated, truncated

    def step(self, key: jax.Array, state: Any, action: jax.Array) -> JaxStep:
        """One transition, resetting automatically at the end of an episode."""
        key_step, key_reset = jax.random.split(key)
        next_obs, next_state, reward, terminated, truncated = self.transition(
            key_step, state, action
        )
        ended = terminated | truncated
        reset_obs, reset_state = self.reset_env(key_reset)
        state_out = jax.tree.map(lambda r, s: jax.lax.select(ended, r, s), reset_state, next_state)
        obs_out = jax.tree.map(lambda r, s: jax.lax.select(ended, r, s), reset_obs, next_obs)
        return JaxStep(
            self.observe(obs_out, state_out),
            state_out,
            reward,
            terminated,
            truncated,
            self.observe(next_obs, next_state),
        )


def _without_time_limit(params: Any) -> Any:
    """``params`` with ``max_steps_in_episode`` raised out of reach, or ``None`` when the params
    have no such field (a legacy env without a time limit).

    Raises:
        ValueError: if the params have the field but are neither a dataclass nor a NamedTuple.
    """
    if not hasattr(params, "max_steps_in_episode"):
        return None
    unreachable = int(np.iinfo(np.int32).max)
    if dataclasses.is_dataclass(params):
        return dataclasses.replace(params, max_steps_in_episode=unreachable)
    if hasattr(params, "_replace"):
        return params._replace(max_steps_in_episode=unreachable)
    raise ValueError(
        f"env params {type(params).__name__} have max_steps_in_episode but are neither a "
        "dataclass nor a NamedTuple, so the time limit cannot be told apart from the env's "
        "own terminations: make the params a (flax.struct) dataclass."
    )


def make_jax_env(env: str | Any, params: Any = None) -> JaxEnv:
    """A :class:`JaxEnv` from a gymnax id (e.g. ``"CartPole-v1"``), a Brax or Playground id
    (``"brax:halfcheetah"``, ``"playground:CartpoleBalance"``, see :mod:`kitae.envs.brax`), a
    gymnax env or a JaxEnv.

    Raises:
        ImportError: if gymnax (``pip install 'kitae[jax-envs]'``) or the Brax / Playground
            library is needed and not installed.
    """
    if isinstance(env, JaxEnv):
        return env
    if isinstance(env, str) and env.startswith(("brax:", "playground:")):
        from kitae.envs.brax import make_brax_env

        if params is not None:
            raise ValueError("params are for gymnax envs: build a BraxEnv for other options.")
        return make_brax_env(env)
    if isinstance(env, str):
        try:
            import gymnax
        except ImportError as err:
            raise ImportError(
                "JAX-native envs need gymnax: pip install 'kitae[jax-envs]'."
            ) from err
        gymnax_env, default_params = gymnax.make(env)
        return JaxEnv(gymnax_env, default_params if params is None else params, name=env)
    return JaxEnv(env, params)


def is_jax_env(env: Any) -> bool:
    """Whether ``env`` is a JaxEnv or a gymnax environment (rather than a gymnasium one)."""
    return isinstance(env, JaxEnv) or (hasattr(env, "step_env") and hasattr(env, "reset_env"))
