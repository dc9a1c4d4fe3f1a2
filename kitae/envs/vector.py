"""Gymnasium vector-env helpers of the host training loop: the same-step autoreset check, the
true next observations of ended episodes, and per-env episode tracking (also saved in
checkpoints)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np


class EpisodeTracker:
    """Per-env running episode return and length; records every finished episode."""

    def __init__(self, n_envs: int, window: int = 20):
        self.returns = np.zeros(n_envs, np.float64)
        self.lengths = np.zeros(n_envs, np.int64)
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.finished: list[tuple[float, int]] = []

    def step(self, rewards: np.ndarray, ended: np.ndarray) -> list[tuple[float, int]]:
        """Adds one vector step; returns the ``(return, length)`` of episodes that just ended."""
        self.returns += rewards
        self.lengths += 1
        if not ended.any():
            return []
        done = []
        for i in np.flatnonzero(ended):
            done.append((float(self.returns[i]), int(self.lengths[i])))
            self.recent_returns.append(float(self.returns[i]))
        self.returns[ended] = 0.0
        self.lengths[ended] = 0
        self.finished.extend(done)
        return done

    @property
    def recent_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")


def as_vector_env(env: gym.Env | gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """Returns ``env`` if it is a vector env with same-step autoreset; wraps a plain env.

    Raises:
        ValueError: for a vector env whose autoreset mode is not ``SAME_STEP``: with next-step
            autoreset every reset would produce a transition that crosses episodes.
    """
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(
                f"env has autoreset_mode={mode}: kitae's loop needs "
                "gymnasium.vector.AutoresetMode.SAME_STEP so that no stored transition crosses an "
                "episode reset. Build it with kitae.envs.make.make_vec_env, or pass "
                "vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP} to "
                "gymnasium.make_vec."
            )
        return env
    if isinstance(env, gym.Env):
        return gym.vector.SyncVectorEnv(
            [lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
    raise TypeError(f"env must be a gymnasium Env or VectorEnv, got {type(env).__name__}.")


def true_next_observation(next_obs: Any, infos: dict, ended: np.ndarray) -> Any:
    """``next_obs`` (an array ``[N, ...]`` or a dict of them, e.g. for a Dict space) with the
    final observation of the envs whose episode just ended."""
    if not ended.any():
        return next_obs
    real = _copy_observation(next_obs)
    final_obs, mask = infos["final_obs"], infos["_final_obs"]
    for i in np.flatnonzero(mask):
        _set_observation_row(real, i, final_obs[i])
    return real


def _copy_observation(obs: Any) -> Any:
    if isinstance(obs, Mapping):
        return type(obs)((k, _copy_observation(v)) for k, v in obs.items())
    return np.array(obs, copy=True)


def _set_observation_row(batch: Any, i: int, obs: Any) -> None:
    if isinstance(batch, Mapping):
        for k, v in batch.items():
            _set_observation_row(v, i, obs[k])
    else:
        batch[i] = obs


__all__ = ["EpisodeTracker", "as_vector_env", "true_next_observation"]
