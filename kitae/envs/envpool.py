"""Atari games in EnvPool's C++ thread pool, with the semantics of :mod:`kitae.envs.atari`.

:func:`make_envpool_atari_env` builds ``n_envs`` copies of an ``ALE/<Game>-v5`` id as one
gymnasium vector env with same-step autoreset, whose observations, rewards, terminations,
truncations and ``info["final_obs"]`` follow :func:`kitae.envs.atari.make_atari_env`:

* EnvPool's ``episodic_life`` plays a no-op frame after every lost life and its new games repeat
  the first frame through the whole stack; here the pool runs whole games (``episodic_life``
  off), a lost life ends a training episode as ``terminated`` with the game going on from the
  same observation (as :class:`kitae.envs.atari.EpisodicLife`), and a new game's stack is
  zero-padded (as ``FrameStackObservation``);
* EnvPool autoresets on the step after an episode ends; here the ended envs are reset at once
  and their final observations go to ``info["final_obs"]`` / ``info["_final_obs"]``;
* rewards are clipped to their sign in training only; the time limit is 108,000 emulator frames
  (``truncated``); sticky actions and no-op starts are those of the gymnasium path.

Given the same actions without sticky actions and with one no-op frame at reset
(``repeat_action_probability=0``, ``noop_max=1``), a game plays the same rewards, lives and
episode ends as on the gymnasium path; frames can differ in a few pixels (EnvPool's own resize
and max-pool). EnvPool always plays at least one no-op frame at reset, so ``noop_max`` must be
at least 1. EnvPool seeds its envs when it builds them: ``reset(seed=s)`` rebuilds the pool
with env ``i`` seeded ``s + i``.

Needs ``pip install 'kitae[envpool]'`` (Linux x86-64 / macOS wheels).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from kitae.envs.atari import (
    ATARI_NAMESPACE,
    STICKY_ACTION_PROBABILITY,
    _check_options,
    is_atari_id,
    register_atari_envs,
)

MAX_EPISODE_FRAMES = 108_000
"""The v5 time limit in emulator frames (30 minutes of play)."""


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError as err:
        raise ImportError(
            "vectorization='envpool' needs envpool: pip install 'kitae[envpool]'."
        ) from err
    return envpool


class EnvPoolAtari(gym.vector.VectorEnv):
    """An EnvPool Atari pool as a same-step-autoreset gymnasium vector env (see the module
    docstring).

    Args:
        task: EnvPool's id of the game (``"Pong-v5"``).
        n_envs: games played side by side.
        life_loss_terminal: a lost life ends the episode (``terminated``).
        pool_kwargs: EnvPool's ``make`` options (``seed`` set by ``reset``).
        spec: the gymnasium registration of the game (``spec.id`` names the env in configs).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: str,
        n_envs: int,
        life_loss_terminal: bool,
        pool_kwargs: dict[str, Any],
        spec: gym.envs.registration.EnvSpec | None = None,
    ):
        self.task = task
        self.spec = spec
        self.num_envs = int(n_envs)
        self.life_loss_terminal = bool(life_loss_terminal)
        self._pool_kwargs = dict(pool_kwargs)
        self._stack = int(pool_kwargs["stack_num"])
        self._pool = self._make_pool(seed=0)
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, self.num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._lives = np.zeros(self.num_envs, np.int32)

    def _make_pool(self, seed: int) -> Any:
        envpool = _import_envpool()
        return envpool.make(
            self.task,
            env_type="gymnasium",
            num_envs=self.num_envs,
            batch_size=self.num_envs,
            seed=int(seed),
            **self._pool_kwargs,
        )

    def _pad_new_games(self, obs: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
        """Zeroes the stack slots older than the start of each game (EnvPool repeats the first
        frame there)."""
        pad = self._stack - 1 - np.asarray(elapsed)
        if (pad > 0).any():
            obs = np.array(obs, copy=True)
            for i in np.flatnonzero(pad > 0):
                obs[i, : pad[i]] = 0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """New games in every env; ``seed`` rebuilds the pool with env ``i`` seeded
        ``seed + i``."""
        if options:
            raise ValueError(f"options={options!r}: EnvPoolAtari.reset takes no options.")
        if seed is not None:
            self._pool.close()
            self._pool = self._make_pool(seed)
        obs, info = self._pool.reset()
        self._lives = np.array(info["lives"], np.int32)
        return self._pad_new_games(obs, info["elapsed_step"]), info

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self._pool.step(np.asarray(actions, np.int32))
        order = np.argsort(info["env_id"])
        if not np.array_equal(order, np.arange(self.num_envs)):  # rows in env order
            obs, rewards, terminated, truncated = (
                np.asarray(x)[order] for x in (obs, rewards, terminated, truncated)
            )
            for key in ("env_id", "lives", "elapsed_step"):
                info[key] = np.asarray(info[key])[order]
        obs = self._pad_new_games(obs, info["elapsed_step"])
        lives = np.array(info["lives"], np.int32)
        game_over = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        terminated = np.asarray(terminated, bool)
        if self.life_loss_terminal:
            terminated = terminated | ((0 < lives) & (lives < self._lives))
        self._lives = lives
        ended = terminated | truncated
        if ended.any():
            info["final_obs"], info["_final_obs"] = np.array(obs, copy=True), ended
        if game_over.any():
            ids = np.flatnonzero(game_over).astype(np.int32)
            reset_obs, reset_info = self._pool.reset(ids)
            rows = np.asarray(reset_info["env_id"])
            obs = np.array(obs, copy=True)
            obs[rows] = self._pad_new_games(reset_obs, reset_info["elapsed_step"])
            self._lives[rows] = reset_info["lives"]
            info["lives"] = self._lives.copy()
        return obs, np.asarray(rewards, np.float64), terminated, np.asarray(truncated, bool), info

    def close(self, **kwargs: Any) -> None:
        self._pool.close()


def make_envpool_atari_env(
    env_id: str,
    n_envs: int,
    *,
    training: bool,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    stack_size: int = 4,
    repeat_action_probability: float = STICKY_ACTION_PROBABILITY,
    terminal_on_life_loss: bool | None = None,
    clip_rewards: bool | None = None,
    **envpool_kwargs: Any,
) -> EnvPoolAtari:
    """``n_envs`` games of ``env_id`` in EnvPool with :func:`kitae.envs.atari.make_atari_env`'s
    preprocessing (arguments as there; ``**envpool_kwargs`` go to ``envpool.make``, e.g.
    ``num_threads``, ``full_action_space``).

    Raises:
        ValueError: for an id outside ``ALE/``, a bad preprocessing value, ``noop_max=0`` or
            an option set here.
        ImportError: if envpool is missing.
    """
    if not is_atari_id(env_id):
        raise ValueError(
            f"env_id={env_id!r}: vectorization='envpool' is for ALE games such as 'ALE/Pong-v5'."
        )
    _check_options(noop_max, frame_skip, screen_size, stack_size, repeat_action_probability)
    if noop_max < 1:
        raise ValueError(
            f"noop_max={noop_max!r} is invalid for vectorization='envpool', which always plays "
            "at least one no-op frame at reset: use noop_max >= 1."
        )
    fixed = {"episodic_life", "reward_clip", "use_fire_reset", "seed", "num_envs", "batch_size"}
    clash = sorted(fixed & set(envpool_kwargs))
    if clash:
        raise ValueError(
            f"{', '.join(clash)} are set by make_envpool_atari_env: use training, "
            "terminal_on_life_loss, clip_rewards and reset(seed=...) instead."
        )
    _import_envpool()
    pool_kwargs = {
        "episodic_life": False,
        "reward_clip": bool(training if clip_rewards is None else clip_rewards),
        "use_fire_reset": False,
        "noop_max": int(noop_max),
        "frame_skip": int(frame_skip),
        "img_height": int(screen_size),
        "img_width": int(screen_size),
        "stack_num": int(stack_size),
        "repeat_action_probability": float(repeat_action_probability),
        "max_episode_steps": MAX_EPISODE_FRAMES // int(frame_skip),
        **envpool_kwargs,
    }
    life_loss = training if terminal_on_life_loss is None else terminal_on_life_loss
    try:  # the ALE/ registration, when ale-py is there too
        register_atari_envs()
    except ImportError:
        pass
    spec = gym.registry.get(env_id)
    return EnvPoolAtari(env_id[len(ATARI_NAMESPACE) :], n_envs, life_loss, pool_kwargs, spec)
