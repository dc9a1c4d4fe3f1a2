"""Brax and MuJoCo Playground environments as :class:`~kitae.envs.jax_env.JaxEnv` s.

Both libraries describe an env by pure ``reset(key) -> State`` and ``step(state, action) ->
State`` over a ``State`` with ``obs``, ``reward``, ``done``, ``info`` and ``metrics``.
:class:`BraxEnv` wraps such an env in Brax's ``EpisodeWrapper`` (the time limit, which sets
``state.info["truncation"]`` when the limit, not the env, ended the episode) and exposes the
:class:`~kitae.envs.jax_env.JaxEnv` protocol that the compiled loop uses: a single env's
``reset`` / ``transition`` / ``step``, with ``step`` resetting at the end of an episode and
returning the true final observation as ``next_observation``, termination and truncation kept
apart.

Ids: ``brax:<name>`` (``brax.envs.get_environment``, e.g. ``brax:halfcheetah``) with an optional
backend, ``brax:<name>:<backend>`` (``spring`` by default, the cheapest to compile and run on a
CPU; ``generalized``, ``positional`` or ``mjx``), and ``playground:<name>``
(``mujoco_playground.registry.load``, e.g. ``playground:CartpoleBalance``, with the env's own
``episode_length``). Needs ``pip install 'kitae[brax]'`` or ``'kitae[playground]'``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from kitae.envs.jax_env import JaxEnv

BRAX_PREFIX = "brax:"
PLAYGROUND_PREFIX = "playground:"
DEFAULT_BRAX_BACKEND = "spring"
DEFAULT_EPISODE_LENGTH = 1000


@dataclasses.dataclass(frozen=True)
class BraxParams:
    """Static parameters of a :class:`BraxEnv`.

    Attributes:
        max_steps_in_episode: agent steps before truncation (``ceil(episode_length /
            action_repeat)``), the compiled evaluation's default step cap.
        episode_length: the time limit in simulator steps.
        action_repeat: simulator steps per agent step.
    """

    max_steps_in_episode: int
    episode_length: int
    action_repeat: int


def is_brax_id(env_id: str) -> bool:
    """Whether ``env_id`` names a Brax (``brax:``) or MuJoCo Playground (``playground:``) env."""
    return env_id.startswith((BRAX_PREFIX, PLAYGROUND_PREFIX))


class BraxEnv(JaxEnv):
    """A Brax or MuJoCo Playground env, time-limited, as a :class:`JaxEnv`.

    Args:
        env: an env with ``reset(key) -> State`` and ``step(state, action) -> State`` (a Brax
            ``Env`` or a Playground ``MjxEnv``) whose observations are one array.
        episode_length: the time limit in simulator steps (truncation, not termination).
        action_repeat: simulator steps per agent step (rewards summed).
        name: the env id, for configs and logs.

    Raises:
        ValueError: for a non-positive ``episode_length`` or ``action_repeat``, or observations
            that are not one array (e.g. a dict).
    """

    def __init__(
        self,
        env: Any,
        episode_length: int = DEFAULT_EPISODE_LENGTH,
        action_repeat: int = 1,
        name: str | None = None,
    ):
        from brax.envs.wrappers.training import EpisodeWrapper

        for field, value in (("episode_length", episode_length), ("action_repeat", action_repeat)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{field}={value!r} is invalid: it must be an integer >= 1.")
        self.raw_env = env
        self.env = EpisodeWrapper(env, int(episode_length), int(action_repeat))
        self.params = BraxParams(
            -(-int(episode_length) // int(action_repeat)), int(episode_length), int(action_repeat)
        )
        self.name = name or type(env).__name__
        self.legacy_api = False
        self._params_without_limit = None
        shapes = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        if not isinstance(shapes.obs, jax.ShapeDtypeStruct):
            raise ValueError(
                f"{self.name} has {type(shapes.obs).__name__} observations: BraxEnv needs one "
                "array (choose the env's array observation mode)."
            )
        self._obs_shape = tuple(shapes.obs.shape)
        self._action_low, self._action_high = _action_bounds(env)

    @property
    def observation_space(self) -> gym.Space:
        return gym.spaces.Box(-np.inf, np.inf, self._obs_shape, np.float32)

    @property
    def action_space(self) -> gym.Space:
        return gym.spaces.Box(
            self._action_low, self._action_high, self._action_low.shape, np.float32
        )

    def reset_env(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """The observation and ``State`` of a fresh episode (step counter at 0)."""
        state = self.env.reset(key)
        return state.obs, state

    def transition(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array]:
        """One agent step without automatic reset (the dynamics are deterministic: ``key`` is
        unused).

        Returns:
            ``(observation, state, reward, terminated, truncated)``; ``truncated`` is the time
            limit (Brax's ``info["truncation"]``), ``terminated`` every other end.
        """
        del key
        next_state = self.env.step(state, action)
        done = next_state.done > 0
        truncated = done & (next_state.info["truncation"] > 0)
        terminated = done & ~truncated
        reward = jnp.asarray(next_state.reward, jnp.float32)
        return next_state.obs, next_state, reward, terminated, truncated


def _action_bounds(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """``float32[A]`` bounds of the actuators' control ranges (``[-1, 1]`` where the env does not
    say)."""
    size = int(env.action_size)
    ranges = None
    sys = getattr(env, "sys", None)
    if sys is not None and getattr(sys, "actuator", None) is not None:
        ranges = np.asarray(sys.actuator.ctrl_range, np.float32)
    elif getattr(env, "mjx_model", None) is not None:
        ranges = np.asarray(env.mjx_model.actuator_ctrlrange, np.float32)
    if ranges is None or ranges.shape != (size, 2) or not np.all(ranges[:, 0] < ranges[:, 1]):
        return -np.ones(size, np.float32), np.ones(size, np.float32)
    return ranges[:, 0].copy(), ranges[:, 1].copy()


def make_brax_env(
    env_id: str,
    *,
    episode_length: int | None = None,
    action_repeat: int = 1,
    **env_kwargs: Any,
) -> BraxEnv:
    """A :class:`BraxEnv` from a ``brax:<name>[:<backend>]`` or ``playground:<name>`` id.

    Args:
        env_id: the id (see the module docstring).
        episode_length: the time limit in simulator steps (default: 1000 for Brax, the env
            config's ``episode_length`` for Playground).
        action_repeat: simulator steps per agent step.
        **env_kwargs: passed to ``brax.envs.get_environment`` (Brax) or as ``config_overrides``
            to ``mujoco_playground.registry.load`` (Playground).

    Raises:
        ValueError: for an unknown prefix, name or backend.
        ImportError: if the library is missing, with the command that installs it.
    """
    from kitae.envs.make import route_mujoco_warnings

    route_mujoco_warnings()  # MuJoCo compiles the models
    if env_id.startswith(BRAX_PREFIX):
        try:
            from brax import envs as brax_envs
        except ImportError as err:
            raise ImportError("Brax envs need brax: pip install 'kitae[brax]'.") from err
        name, _, backend = env_id[len(BRAX_PREFIX) :].partition(":")
        known = sorted(brax_envs._envs)  # the registry behind get_environment
        if name not in known:
            raise ValueError(f"env={env_id!r}: unknown Brax env {name!r}; choose from {known}.")
        backend = backend or DEFAULT_BRAX_BACKEND
        backends = ("spring", "positional", "generalized", "mjx")
        if backend not in backends:
            raise ValueError(
                f"env={env_id!r}: unknown Brax backend {backend!r}; choose from {backends}."
            )
        env = brax_envs.get_environment(name, backend=backend, **env_kwargs)
        length = DEFAULT_EPISODE_LENGTH if episode_length is None else episode_length
        return BraxEnv(env, length, action_repeat, name=env_id)
    if env_id.startswith(PLAYGROUND_PREFIX):
        try:
            from mujoco_playground import registry
        except ImportError as err:
            raise ImportError(
                "MuJoCo Playground envs need playground: pip install 'kitae[playground]'."
            ) from err
        name = env_id[len(PLAYGROUND_PREFIX) :]
        if name not in registry.ALL_ENVS:
            raise ValueError(
                f"env={env_id!r}: unknown Playground env {name!r}; see "
                "mujoco_playground.registry.ALL_ENVS."
            )
        env = registry.load(name, config_overrides=env_kwargs or None)
        if episode_length is None:
            episode_length = int(
                registry.get_default_config(name).get("episode_length", DEFAULT_EPISODE_LENGTH)
            )
        return BraxEnv(env, episode_length, action_repeat, name=env_id)
    raise ValueError(
        f"env_id={env_id!r} is neither a Brax ({BRAX_PREFIX}<name>) nor a Playground "
        f"({PLAYGROUND_PREFIX}<name>) id."
    )
