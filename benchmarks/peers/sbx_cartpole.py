"""Peer benchmark: SBX (Stable-Baselines-Jax) DQN / PPO on CartPole-v1.

Trains ``sbx.DQN`` or ``sbx.PPO`` with the RL-Zoo CartPole-v1 hyperparameters,
then evaluates the greedy policy on 20 fixed-seed episodes and prints a single
JSON line to stdout.

Only ``model.learn`` is timed (this includes SBX's JIT compilation, which
happens inside ``learn``); model construction and evaluation are excluded from
``train_s``. ``sps`` is ``steps / train_s``; ``env_steps`` records the steps
actually collected (``learn`` rounds up to whole rollouts: 256 transitions for
DQN's ``train_freq`` and 8 x 32 for PPO).

Usage::

    python benchmarks/peers/sbx_cartpole.py --algo dqn --seed 0
    python benchmarks/peers/sbx_cartpole.py --algo ppo --seed 0 --steps 100000

Run it from the peers virtualenv (see ``benchmarks/peers/requirements.txt``).
"""

import argparse
import json
import os
import platform
import time

import gymnasium as gym
import jax
import numpy as np
import sbx
import torch
from stable_baselines3.common.env_util import make_vec_env

ENV_ID = "CartPole-v1"
EVAL_EPISODES = 20
EVAL_SEED_OFFSET = 10_000
DEFAULT_STEPS = {"dqn": 50_000, "ppo": 100_000}


def make_dqn(seed: int) -> sbx.DQN:
    """SBX DQN with the RL-Zoo CartPole-v1 hyperparameters (1 env)."""
    env = gym.make(ENV_ID)
    return sbx.DQN(
        "MlpPolicy",
        env,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1_000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.04,
        policy_kwargs={"net_arch": [256, 256]},
        seed=seed,
        verbose=0,
    )


def make_ppo(seed: int) -> sbx.PPO:
    """SBX PPO with the RL-Zoo CartPole-v1 hyperparameters (8 envs)."""
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    return sbx.PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=lambda progress_remaining: progress_remaining * 1e-3,
        clip_range=lambda progress_remaining: progress_remaining * 0.2,
        ent_coef=0.0,
        seed=seed,
        verbose=0,
    )


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def evaluate(model) -> list[float]:
    """Greedy returns over EVAL_EPISODES episodes, episode i seeded EVAL_SEED_OFFSET + i."""
    env = gym.make(ENV_ID)
    returns = []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("dqn", "ppo"), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="environment steps (default: 50000 for dqn, 100000 for ppo)",
    )
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[args.algo]

    loadavg = list(os.getloadavg())
    model = make_dqn(args.seed) if args.algo == "dqn" else make_ppo(args.seed)

    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - start

    returns = evaluate(model)
    print(
        json.dumps(
            {
                "system": "sbx",
                "algo": args.algo,
                "config": "rl-zoo",
                "seed": args.seed,
                "steps": steps,
                "env_steps": int(model.num_timesteps),
                "train_s": train_s,
                "sps": steps / train_s,
                "eval_mean": float(np.mean(returns)),
                "eval_std": float(np.std(returns)),
                "eval_returns": returns,
                "loadavg": loadavg,
                "machine": {
                    "platform": platform.platform(),
                    "cpu": cpu_model(),
                    "cpu_count": os.cpu_count(),
                    "affinity": len(os.sched_getaffinity(0)),
                    "jax_backend": jax.default_backend(),
                },
                "versions": {
                    "sbx": sbx.__version__,
                    "jax": jax.__version__,
                    "torch": torch.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
