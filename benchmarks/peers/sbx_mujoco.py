"""Peer MuJoCo benchmark: SBX's SAC and PPO with RL-Zoo settings; prints one JSON line per run.

The same run as ``benchmarks/mujoco_halfcheetah.py`` (system ``"sbx"``). ``sac``: RL-Zoo's
``hyperparams/sac.yml`` MuJoCo entry (SB3's SAC defaults: 1 env, lr 3e-4, buffer 1M, batch
256, tau 0.005, automatic temperature, 256-256) with ``--learning-starts`` (RL-Zoo: 10k).
``ppo``: ``hyperparams/ppo.yml`` HalfCheetah entry: ``VecNormalize`` (observations and rewards,
gamma 0.98), 1 env x 512 steps, batch 64, 20 epochs, gamma 0.98, GAE lambda 0.92, lr
2.0633e-5, clip 0.1, entropy 4.01762e-4, value 0.58096, grad norm 0.8, log-std -2, 256-256
ReLU. ``train_s`` is the wall time of ``model.learn`` (compilation included), ``cpu_s`` its CPU
time (all threads); the evaluation
runs the deterministic policy on ``--eval-episodes`` episodes reset with seeds 10000.. (with
PPO, observations normalised by the frozen training statistics).

Run it from the peers virtualenv (``benchmarks/peers/requirements.txt`` plus
``gymnasium[mujoco]``)::

    python benchmarks/peers/sbx_mujoco.py --algo sac --env HalfCheetah-v5 --steps 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import EVAL_SEED, emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("sac", "ppo"), required=True)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    args = parser.parse_args()

    import flax.linen as nn
    import gymnasium as gym
    import numpy as np
    import sbx
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    if args.algo == "sac":
        model = sbx.SAC(
            "MlpPolicy", env, learning_starts=args.learning_starts, seed=args.seed, verbose=0
        )
    else:
        env = VecNormalize(env, gamma=0.98)
        model = sbx.PPO(
            "MlpPolicy",
            env,
            n_steps=512,
            batch_size=64,
            n_epochs=20,
            gamma=0.98,
            gae_lambda=0.92,
            learning_rate=2.0633e-5,
            clip_range=0.1,
            ent_coef=0.000401762,
            vf_coef=0.58096,
            max_grad_norm=0.8,
            policy_kwargs={
                "log_std_init": -2.0,
                "ortho_init": False,
                "activation_fn": nn.relu,
                "net_arch": {"pi": [256, 256], "vf": [256, 256]},
            },
            seed=args.seed,
            verbose=0,
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(args.steps)
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    returns = []
    for i in range(args.eval_episodes):
        eval_env = gym.make(args.env)
        obs, _ = eval_env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            x = env.normalize_obs(obs) if isinstance(env, VecNormalize) else obs
            action, _ = model.predict(x[None], deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    emit(
        {
            "benchmark": "mujoco",
            "system": "sbx",
            "algo": args.algo,
            "env": args.env,
            "seed": args.seed,
            "steps": int(model.num_timesteps),
            "learning_starts": args.learning_starts if args.algo == "sac" else None,
            "train_s": round(train_s, 3),
            "cpu_s": round(cpu_s, 3),
            "sps_cpu": round(model.num_timesteps / cpu_s, 1),
            "sps": round(model.num_timesteps / train_s, 1),
            "max_rss_mb": round(rss_mb, 1),
            "eval_mean": float(np.mean(returns)),
            "eval_returns": returns,
        },
        {
            "sbx": sbx.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gym.__version__,
        },
    )


if __name__ == "__main__":
    main()
