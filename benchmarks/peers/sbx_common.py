"""Shared pieces of the SBX peer scripts: RL-Zoo settings, model construction, greedy evaluation.

Runs in the peers virtualenv (see ``requirements.txt``): it imports no kitae.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import sbx
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise


@dataclass(frozen=True)
class Linear:
    """RL-Zoo's ``lin_<x>`` schedule: ``initial`` decayed linearly to 0 over the run."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial

    def __repr__(self) -> str:
        return f"lin_{self.initial}"


@dataclass(frozen=True)
class ZooSettings:
    """An RL-Zoo entry: the SBX class, the number of envs, the constructor's keyword arguments
    (``noise_std``: Gaussian action noise of that std, in SB3's [-1, 1] action scale), and the
    label of the variant."""

    algo: str
    n_envs: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    variant: str = "base"


_PENDULUM_TD3 = {
    "gamma": 0.98,
    "buffer_size": 200_000,
    "learning_starts": 10_000,
    "noise_std": 0.1,
    "gradient_steps": 1,
    "train_freq": 1,
    "learning_rate": 1e-3,
    "policy_kwargs": {"net_arch": [400, 300]},
}

RL_ZOO: dict[tuple[str, str], ZooSettings] = {
    # hyperparams/dqn.yml, CartPole-v1.
    ("dqn", "CartPole-v1"): ZooSettings(
        "DQN",
        1,
        {
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1_000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_initial_eps": 1.0,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    ),
    # hyperparams/dqn.yml, Acrobot-v1.
    ("dqn", "Acrobot-v1"): ZooSettings(
        "DQN",
        1,
        {
            "learning_rate": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "gamma": 0.99,
            "target_update_interval": 250,
            "train_freq": 4,
            "gradient_steps": -1,
            "exploration_fraction": 0.12,
            "exploration_final_eps": 0.1,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    ),
    # hyperparams/ppo.yml, CartPole-v1.
    ("ppo", "CartPole-v1"): ZooSettings(
        "PPO",
        8,
        {
            "n_steps": 32,
            "batch_size": 256,
            "n_epochs": 20,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "learning_rate": Linear(1e-3),
            "clip_range": Linear(0.2),
            "ent_coef": 0.0,
        },
    ),
    # hyperparams/ppo.yml, Pendulum-v1 (tuned with gSDE; n_timesteps 1e5).
    ("ppo-continuous", "Pendulum-v1"): ZooSettings(
        "PPO",
        4,
        {
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
        variant="gSDE",
    ),
    # hyperparams/sac.yml, Pendulum-v1 (n_timesteps 2e4; the rest are SAC's defaults).
    ("sac", "Pendulum-v1"): ZooSettings("SAC", 1, {"learning_rate": 1e-3}),
    # hyperparams/td3.yml and ddpg.yml, Pendulum-v1 (n_timesteps 2e4).
    ("td3", "Pendulum-v1"): ZooSettings("TD3", 1, _PENDULUM_TD3),
    ("ddpg", "Pendulum-v1"): ZooSettings("DDPG", 1, _PENDULUM_TD3),
}
"""``(algo, env) -> ZooSettings``, from the RL Baselines3 Zoo's ``hyperparams/*.yml``."""


def make_model(algo: str, env_id: str, seed: int) -> Any:
    """The SBX model of ``(algo, env_id)`` with its RL-Zoo settings, on a seeded vector env."""
    settings = RL_ZOO[(algo, env_id)]
    env = make_vec_env(env_id, n_envs=settings.n_envs, seed=seed)
    kwargs = dict(settings.kwargs)
    noise_std = kwargs.pop("noise_std", None)
    if noise_std is not None:
        n_actions = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(
            np.zeros(n_actions), noise_std * np.ones(n_actions)
        )
    return getattr(sbx, settings.algo)("MlpPolicy", env, seed=seed, verbose=0, **kwargs)


def evaluate(model: Any, env_id: str, n_episodes: int, seed: int) -> list[float]:
    """Deterministic-action returns of ``n_episodes`` episodes; episode ``i`` starts from
    ``reset(seed=seed + i)``, all run side by side."""
    envs = gym.make_vec(env_id, num_envs=n_episodes, vectorization_mode="sync")
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(n_episodes)
    running = np.ones(n_episodes, bool)
    while running.any():
        actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        returns += rewards * running
        running &= ~(terminated | truncated)
    envs.close()
    return returns.tolist()
