"""Tiny deterministic gymnasium envs for the agent tests.

* :class:`Corridor`: walk right along a line to reach the goal (discrete actions).
* :class:`Target`: one-step continuous control, the action should equal the observation.
* :class:`Counting`: the observation is ``[episode_id, t]``, so a stored transition tells exactly
  which episode and step it came from; episodes have a fixed length and end by termination or
  truncation depending on the parity of the episode id.

Envs whose optimal policy depends on one detail of the targets (their optimal Q-values, and those
of the broken variant, are computed in each docstring):

* :class:`NearFar`: a small reward now or a large one later; flips with the discount, and
  bootstrapping through its terminations prefers the small one.
* :class:`TreasureChain`: the time limit always cuts the path to the treasure; only an agent that
  bootstraps at truncations walks the path.
* :class:`TwoGoals`: the continuous (1-D point) version of :class:`NearFar`, several steps long.

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


class NearFar(gym.Env):
    """A small reward now or a large reward ``far_length`` steps later.

    States: the start ``0`` and the corridor cells ``1 .. far_length - 1``; the observation is the
    one-hot ``float32[far_length]`` of the state. At the start, action ``0`` (*near*) pays
    ``near_reward`` and terminates; action ``1`` (*far*) enters cell 1 (reward 0). In a cell every
    action moves one cell on (reward 0); leaving the last cell pays ``far_reward`` and terminates.
    Every episode starts at the start, and **the final observation of every episode is the start's
    observation**, so an agent that bootstraps through terminations values each episode's end as
    the start of another episode.

    Optimal Q-values (``R = far_reward``, ``r = near_reward``, ``k = far_length``): a cell ``i``
    is worth ``gamma^(k - 1 - i) R`` whatever the action; at the start ``Q(near) = r`` and
    ``Q(far) = gamma^(k - 1) R``. Bootstrapping through terminations instead solves the continuing
    task that loops back to the start: ``V = max(r / (1 - gamma), gamma^(k - 1) R / (1 - gamma^k))``
    and ``Q(near) = r + gamma V``, ``Q(far) = gamma^(k - 1) (R + gamma V)``, which prefers *near*
    as soon as ``r (1 - gamma^k) > gamma^(k - 1) R (1 - gamma)``.

    * ``NearFar(0.5, 3)`` (the discount decides): with gamma 0.99, ``Q(start) = [0.5, 0.9801]``
      (*far*), cells ``[0.99, 1]``; with gamma 0.5, ``Q(start) = [0.5, 0.25]`` (*near*), cells
      ``[0.5, 1]``.
    * ``NearFar(0.7, 2)`` with gamma 0.9 (terminations decide): ``Q(start) = [0.7, 0.9]`` (*far*),
      cell ``1``. Bootstrapping through terminations: ``V = 7``, ``Q(start) = [7.0, 6.57]``
      (*near*), cell ``7.3``.
    """

    metadata = {"render_modes": []}

    def __init__(self, near_reward: float = 0.5, far_length: int = 3, far_reward: float = 1.0):
        if far_length < 2:
            raise ValueError("far_length must be >= 2")
        self.near_reward = near_reward
        self.far_length = far_length
        self.far_reward = far_reward
        self.observation_space = gym.spaces.Box(0.0, 1.0, (far_length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.state = 0

    def _obs(self) -> np.ndarray:
        return np.eye(self.far_length, dtype=np.float32)[self.state]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self._obs(), {}

    def step(self, action):
        if self.state == 0 and int(action) == 0:
            reward, terminated = self.near_reward, True
        else:
            self.state += 1
            terminated = self.state == self.far_length
            reward = self.far_reward if terminated else 0.0
        if terminated:
            self.state = 0
        return self._obs(), float(reward), terminated, False, {}

    def optimal_q_values(self, gamma: float) -> np.ndarray:
        """``float64[far_length, 2]``: the optimal Q-value of every state and action."""
        k = self.far_length
        q = np.array([[gamma ** (k - 1 - i) * self.far_reward] * 2 for i in range(k)])
        q[0] = [self.near_reward, gamma ** (k - 1) * self.far_reward]
        return q


class TreasureChain(gym.Env):
    """A chain ``0 .. length`` whose time limit always cuts the path to the treasure at ``length``.

    Observation: the one-hot ``float32[length + 1]`` of the position (no time). Half the episodes
    start at ``0``, half on the treasure (drawn with the env's generator). Action ``0`` (*quit*)
    pays ``quit_reward`` and terminates; action ``1`` (*go*) moves one cell right (reward 0). On
    the treasure every action pays ``treasure_reward`` and terminates. Build it with
    :func:`treasure_chain` to get the time limit of ``length`` steps: from ``0``, walking the
    chain reaches the treasure exactly when the episode is truncated, so every *go* from position
    ``length - 1`` is a truncated transition, and the treasure's value is only learned from the
    episodes that start on it.

    Optimal Q-values (time-limit-free values, which an agent bootstrapping at truncations learns;
    ``R = treasure_reward``, ``q = quit_reward``): ``Q(i, go) = gamma^(length - i) R``,
    ``Q(i, quit) = q``, treasure ``R``. With length 3, gamma 0.9, ``q = 0.5``, ``R = 1``:
    ``Q(0) = [0.5, 0.729]``, ``Q(1) = [0.5, 0.81]``, ``Q(2) = [0.5, 0.9]`` (*go* everywhere).
    Treating truncation as termination sets ``Q(length - 1, go) = 0``; then ``V(i) = q`` and
    ``Q(i, go) = gamma q = 0.45 < 0.5`` at the other positions: *quit* everywhere.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 3, quit_reward: float = 0.5, treasure_reward: float = 1.0):
        if length < 2:
            raise ValueError("length must be >= 2")
        self.length = length
        self.quit_reward = quit_reward
        self.treasure_reward = treasure_reward
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0

    def _obs(self) -> np.ndarray:
        return np.eye(self.length + 1, dtype=np.float32)[self.position]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.length if self.np_random.random() < 0.5 else 0
        return self._obs(), {}

    def step(self, action):
        if self.position == self.length:
            return self._obs(), float(self.treasure_reward), True, False, {}
        if int(action) == 0:
            return self._obs(), float(self.quit_reward), True, False, {}
        self.position += 1
        return self._obs(), 0.0, False, False, {}

    def optimal_q_values(self, gamma: float) -> np.ndarray:
        """``float64[length + 1, 2]``: the optimal (time-limit-free) Q-values."""
        n = self.length
        q = np.array(
            [[self.quit_reward, gamma ** (n - i) * self.treasure_reward] for i in range(n + 1)]
        )
        q[n] = self.treasure_reward
        return q


def treasure_chain(length: int = 3, **kwargs) -> gym.Env:
    """A :class:`TreasureChain` under a ``TimeLimit`` of ``length`` steps."""
    return gym.wrappers.TimeLimit(TreasureChain(length, **kwargs), length)


class TwoGoals(gym.Env):
    """A 1-D point between a near goal with a small reward and a far goal with a large one.

    Observation ``[x]``; action ``a`` in ``[-1, 1]`` moves ``x`` by ``speed * a``. Reaching
    ``x <= near`` pays ``near_reward`` and terminates, reaching ``x >= far`` pays ``far_reward``
    and terminates; other steps pay 0. Episodes start at ``x`` drawn uniformly in ``(near, far)``
    (``random_start``, so that both goals are met early in training) or at ``x = 0``. As in
    :class:`NearFar`, the final observation is the home position's, ``[0]``. Build it with
    :func:`two_goals` for a time limit.

    With the defaults (speed 0.5, near -0.4, far 1.25, rewards 0.5 and 1) and gamma 0.9: from
    ``x = 0`` the near goal is one step away (``a <= -0.8``), worth 0.5, the far one three steps
    away at full speed, worth ``0.9^2 = 0.81``, so the optimal policy drives right for three steps
    (from any start the far goal is at most four steps away, worth ``0.9^3 = 0.729 > 0.5``).
    Acting on the immediate reward, or with gamma below ``sqrt(0.5)``, goes left from ``x = 0``.
    Bootstrapping through terminations solves the loop back to ``x = 0`` instead, worth
    ``0.5 / (1 - 0.9) = 5`` by the near goal against ``0.81 / (1 - 0.9^3) = 2.99`` by the far one:
    left too.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        speed: float = 0.5,
        near: float = -0.4,
        far: float = 1.25,
        near_reward: float = 0.5,
        far_reward: float = 1.0,
        random_start: bool = True,
    ):
        self.speed, self.near, self.far = speed, near, far
        self.random_start = random_start
        self.near_reward, self.far_reward = near_reward, far_reward
        self.observation_space = gym.spaces.Box(near - speed, far + speed, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(self.near, self.far)) if self.random_start else 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        a = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -1.0, 1.0))
        self.x += self.speed * a
        reward, terminated = 0.0, False
        if self.x <= self.near:
            reward, terminated = self.near_reward, True
        elif self.x >= self.far:
            reward, terminated = self.far_reward, True
        if terminated:
            self.x = 0.0
        return np.array([self.x], np.float32), float(reward), terminated, False, {}


def two_goals(max_episode_steps: int = 10, **kwargs) -> gym.Env:
    """A :class:`TwoGoals` under a ``TimeLimit`` (truncation) of ``max_episode_steps``."""
    return gym.wrappers.TimeLimit(TwoGoals(**kwargs), max_episode_steps)


def make_vec(
    env_fn: Callable[[], gym.Env] | Sequence[Callable[[], gym.Env]], n_envs: int | None = None
) -> gym.vector.SyncVectorEnv:
    """A same-step-autoreset ``SyncVectorEnv`` of ``n_envs`` copies of ``env_fn()``, or of the
    given list of thunks (one per env)."""
    fns = list(env_fn) if isinstance(env_fn, Sequence) else [env_fn] * int(n_envs)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class PixelGoal(gym.Env):
    """A one-step pixel task: the image shows where the goal is, the action names its quadrant.

    Observation: ``uint8[size, size, 1]``, 255 at the goal's cell, 0 elsewhere; the goal is
    drawn uniformly among the cells. Actions: the quadrant ``2 * (row >= size / 2) +
    (col >= size / 2)`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) pays 1, any
    other action 0; every episode ends after one step (terminated). A policy that ignores the
    pixels earns 1/4 on average; only one that reads them earns 1 (see
    :func:`pixel_goal_observations`).
    """

    metadata = {"render_modes": []}

    def __init__(self, size: int = 10):
        if size < 2 or size % 2:
            raise ValueError("size must be an even number >= 2")
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.goal = (0, 0)

    def _draw(self) -> np.ndarray:
        self.goal = tuple(int(n) for n in self.np_random.integers(0, self.size, 2))
        return pixel_goal_image(self.size, *self.goal)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def step(self, action):
        reward = float(int(action) == pixel_goal_quadrant(self.size, *self.goal))
        return self._draw(), reward, True, False, {}


def pixel_goal_image(size: int, row: int, col: int) -> np.ndarray:
    """The :class:`PixelGoal` observation of a goal at ``(row, col)``."""
    image = np.zeros((size, size, 1), np.uint8)
    image[row, col, 0] = 255
    return image


def pixel_goal_quadrant(size: int, row: int, col: int) -> int:
    """The paying action of a goal at ``(row, col)``."""
    half = size // 2
    return 2 * int(row >= half) + int(col >= half)


def pixel_goal_observations(size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Every :class:`PixelGoal` observation ``uint8[size * size, size, size, 1]`` and its paying
    action ``int[size * size]``, goals in row-major order."""
    cells = [(r, c) for r in range(size) for c in range(size)]
    images = np.stack([pixel_goal_image(size, r, c) for r, c in cells])
    return images, np.array([pixel_goal_quadrant(size, r, c) for r, c in cells])


# ---- action masks and MultiDiscrete actions ---------------------------------------------------

MASKED_ACTIONS = 4
"""Actions of :class:`MaskedChoice`."""


def draw_action_mask(rng: np.random.Generator) -> np.ndarray:
    """``int8[MASKED_ACTIONS]``: each action valid with probability 1/2, at least one valid."""
    mask = (rng.random(MASKED_ACTIONS) < 0.5).astype(np.int8)
    if not mask.any():
        mask[rng.integers(MASKED_ACTIONS)] = 1
    return mask


class MaskedChoice(gym.Env):
    """Choose among the valid actions, whose mask changes every step; an invalid action raises.

    Observation: ``{"observation": float32[4], "action_mask": int8[4]}`` (``mask_in="observation"``)
    or the ``float32[4]`` alone with the mask in ``info["action_mask"]`` (``mask_in="info"``);
    the ``float32[4]`` is the mask itself. Each action is valid with probability 1/2 (at least one
    is). The highest valid action pays 1, the other valid ones 0. Episodes last ``length`` steps
    (truncated).

    Raises:
        ValueError: at ``step`` with an invalid action.
    """

    metadata = {"render_modes": []}

    def __init__(self, mask_in: str = "observation", length: int = 5):
        if mask_in not in ("observation", "info"):
            raise ValueError("mask_in must be 'observation' or 'info'")
        self.mask_in, self.length = mask_in, length
        vector = gym.spaces.Box(0.0, 1.0, (MASKED_ACTIONS,), np.float32)
        mask = gym.spaces.Box(0, 1, (MASKED_ACTIONS,), np.int8)
        self.observation_space = (
            gym.spaces.Dict({"observation": vector, "action_mask": mask})
            if mask_in == "observation"
            else vector
        )
        self.action_space = gym.spaces.Discrete(MASKED_ACTIONS)
        self.mask = np.ones(MASKED_ACTIONS, np.int8)
        self.t = 0

    def _observe(self) -> tuple:
        self.mask = draw_action_mask(self.np_random)
        vector = self.mask.astype(np.float32)
        if self.mask_in == "info":
            return vector, {"action_mask": self.mask.copy()}
        return {"observation": vector, "action_mask": self.mask.copy()}, {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe()

    def step(self, action):
        action = int(action)
        if not self.mask[action]:
            raise ValueError(f"invalid action {action} under the mask {self.mask}")
        reward = float(action == int(np.flatnonzero(self.mask)[-1]))
        self.t += 1
        obs, info = self._observe()
        return obs, reward, False, self.t >= self.length, info


TWO_SWITCHES_NVEC = (2, 3)
"""The MultiDiscrete action space of :class:`TwoSwitches`."""


def two_switches_observation(c0: int, c1: int) -> np.ndarray:
    """``float32[5]``: one-hot of ``c0`` (2 values) then of ``c1`` (3 values)."""
    obs = np.zeros(5, np.float32)
    obs[c0] = 1.0
    obs[2 + c1] = 1.0
    return obs


def two_switches_reward(action: np.ndarray, c0: int, c1: int) -> float:
    """1/2 for ``action[0] == c0`` plus 1/2 for ``action[1] == (c1 + 1) % 3``."""
    return 0.5 * float(action[0] == c0) + 0.5 * float(action[1] == (c1 + 1) % 3)


def two_switches_cases() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Every :class:`TwoSwitches` observation ``float32[6, 5]`` and its context ``(c0, c1)``."""
    cases = [(c0, c1) for c0 in range(2) for c1 in range(3)]
    return np.stack([two_switches_observation(*c) for c in cases]), cases


class TwoSwitches(gym.Env):
    """A one-step contextual bandit with two independent sub-actions (``MultiDiscrete([2, 3])``).

    The observation shows two contexts ``c0`` (2 values) and ``c1`` (3 values), drawn uniformly
    (:func:`two_switches_observation`); :func:`two_switches_reward` pays 1/2 for each sub-action
    right (``a0 = c0``, ``a1 = (c1 + 1) % 3``). A uniformly random policy earns
    ``1/4 + 1/6 = 5/12``; only one that sets both sub-actions from the observation earns 1.
    """

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (5,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(TWO_SWITCHES_NVEC)
        self.context = (0, 0)

    def _draw(self) -> np.ndarray:
        self.context = (int(self.np_random.integers(2)), int(self.np_random.integers(3)))
        return two_switches_observation(*self.context)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def step(self, action):
        reward = two_switches_reward(np.asarray(action), *self.context)
        return self._draw(), reward, True, False, {}
