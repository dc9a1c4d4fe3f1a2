"""Tiny deterministic gymnasium envs for the agent tests.

* :class:`Corridor`: walk right along a line to reach the goal (discrete actions).
* :class:`Target`: one-step continuous control, the action should equal the observation.
* :class:`Counting`: the observation is ``[episode_id, t]``, so a stored transition tells exactly
  which episode and step it came from; episodes have a fixed length and end by termination or
  truncation depending on the parity of the episode id.

:func:`make_vec` builds same-step-autoreset vector envs from them, as kitae's loop needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """A corridor of ``length`` cells; the goal is the rightmost cell.

    Observation: one-hot ``float32[length]`` of the position. Actions: ``0`` left, ``1`` right
    (left at cell 0 stays there). Reward ``1`` and ``terminated`` on reaching the goal,
    ``step_reward`` otherwise. Episodes start on a uniformly drawn non-goal cell
    (``random_start``) or on cell 0. Build it with :func:`corridor` to get the time limit.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 5, step_reward: float = -0.01, random_start: bool = True):
        if length < 2:
            raise ValueError("length must be >= 2")
        self.length = length
        self.step_reward = step_reward
        self.random_start = random_start
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.position] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.random_start:
            self.position = int(self.np_random.integers(0, self.length - 1))
        else:
            self.position = 0
        return self._obs(), {}

    def step(self, action):
        move = 1 if int(action) == 1 else -1
        self.position = min(max(self.position + move, 0), self.length - 1)
        terminated = self.position == self.length - 1
        reward = 1.0 if terminated else self.step_reward
        return self._obs(), reward, terminated, False, {}


def corridor(length: int = 5, max_episode_steps: int = 20, **kwargs) -> gym.Env:
    """A :class:`Corridor` under a ``TimeLimit`` (truncation) of ``max_episode_steps``."""
    return gym.wrappers.TimeLimit(Corridor(length, **kwargs), max_episode_steps)


def corridor_observations(length: int = 5) -> np.ndarray:
    """The observations of every non-goal cell, ``float32[length - 1, length]``."""
    return np.eye(length, dtype=np.float32)[: length - 1]


class Target(gym.Env):
    """One-step episodes: observe a target ``x ~ U[-1, 1]``, act ``a`` in ``[-2, 2]``,
    get ``-(a - x)^2`` and terminate."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.target = np.zeros(1, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action):
        error = float(np.asarray(action, np.float64).reshape(-1)[0] - self.target[0])
        return self.target.copy(), -(error**2), True, False, {}


class Counting(gym.Env):
    """Observation ``[episode_id, t]`` (``float32``): the env's episode counter and step index.

    Every episode lasts exactly ``length`` steps. Episode ``k`` ends with ``terminated`` when
    ``k`` is even and ``truncated`` when ``k`` is odd (``mixed_endings``), else always
    ``terminated``. The reward of step ``t -> t + 1`` is ``t + 1``, so an episode returns
    ``length * (length + 1) / 2``. Actions are ignored. ``reset(seed=...)`` restarts the counter
    at episode 0; a reset without seed starts the next episode.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 4, mixed_endings: bool = True):
        self.length = length
        self.mixed_endings = mixed_endings
        self.observation_space = gym.spaces.Box(0.0, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = 0 if seed is not None else self.episode + 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        del action
        self.t += 1
        reward = float(self.t)
        ended = self.t >= self.length
        truncated = ended and self.mixed_endings and self.episode % 2 == 1
        terminated = ended and not truncated
        return self._obs(), reward, terminated, truncated, {}

    @staticmethod
    def episode_return(length: int) -> float:
        return length * (length + 1) / 2


def make_vec(
    env_fn: Callable[[], gym.Env] | Sequence[Callable[[], gym.Env]], n_envs: int | None = None
) -> gym.vector.SyncVectorEnv:
    """A same-step-autoreset ``SyncVectorEnv`` of ``n_envs`` copies of ``env_fn()``, or of the
    given list of thunks (one per env)."""
    fns = list(env_fn) if isinstance(env_fn, Sequence) else [env_fn] * int(n_envs)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
