"""Peer Atari benchmark: SBX's DQN with RL-Zoo's Atari settings; prints one JSON line per run.

The same run as ``benchmarks/atari.py`` (system ``"sbx"``): ``ALE/<Game>-v5`` with sticky
actions (0.25) and the emulator's frame skip off, SB3's ``AtariWrapper`` (no-ops, 4-frame max
and skip, life-loss terminals, 84x84 grayscale, clipped rewards) and ``VecFrameStack(4)``;
RL-Zoo's ``hyperparams/dqn.yml`` atari entry (CnnPolicy, lr 1e-4, buffer 100k, batch 32,
target update every 1,000 transitions, train_freq 4, exploration 10% to 0.01) with
``--learning-starts`` and ``--buffer`` given as for kitae. ``train_s`` is the wall time of
``model.learn`` (compilation included), ``cpu_s`` its CPU time (all threads), ``max_rss_mb``
the process's peak resident memory,
``curve`` the ``(env step, return)`` of every game (the ``Monitor`` wrapper under
``AtariWrapper`` records whole games).

Run it from the peers virtualenv (``benchmarks/peers/requirements.txt`` plus ``ale-py`` and
``opencv-python-headless``)::

    python benchmarks/peers/sbx_atari.py --env ALE/Pong-v5 --steps 20000 --learning-starts 5000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--buffer", type=int, default=100_000)
    parser.add_argument("--rise", type=float, default=3.0)
    args = parser.parse_args()

    import ale_py
    import gymnasium as gym
    import sbx
    import stable_baselines3
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = make_atari_env(
        args.env,
        n_envs=1,
        seed=args.seed,
        env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25},
    )
    env = VecFrameStack(env, 4)
    model = sbx.DQN(
        "CnnPolicy",
        env,
        learning_rate=1e-4,
        buffer_size=args.buffer,
        learning_starts=args.learning_starts,
        batch_size=32,
        target_update_interval=1_000,
        train_freq=4,
        gradient_steps=1,
        exploration_fraction=0.1,
        exploration_final_eps=0.01,
        optimize_memory_usage=False,
        seed=args.seed,
        verbose=0,
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(args.steps)
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    monitor = env.venv.envs[0]
    while not hasattr(monitor, "get_episode_rewards"):
        monitor = monitor.env
    rewards = monitor.get_episode_rewards()
    lengths = monitor.get_episode_lengths()
    steps, curve = 0, []
    for reward, length in zip(rewards, lengths, strict=True):
        steps += length // 4  # Monitor sits under the 4-frame skip: lengths are in frames
        curve.append((steps, float(reward)))
    base = curve[0][1] if curve else None
    rise = next((s for s, r in curve if r >= base + args.rise), None) if curve else None
    emit(
        {
            "benchmark": "atari",
            "system": "sbx",
            "algo": "dqn",
            "env": args.env,
            "seed": args.seed,
            "steps": int(model.num_timesteps),
            "learning_starts": args.learning_starts,
            "buffer": args.buffer,
            "train_s": round(train_s, 3),
            "cpu_s": round(cpu_s, 3),
            "sps_cpu": round(model.num_timesteps / cpu_s, 1),
            "sps": round(model.num_timesteps / train_s, 1),
            "max_rss_mb": round(rss_mb, 1),
            "gradient_steps": int(model._n_updates),
            "curve": curve,
            "first_rise": rise,
            "rise": args.rise,
        },
        {
            "sbx": sbx.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gym.__version__,
            "ale_py": ale_py.__version__,
        },
    )


if __name__ == "__main__":
    main()
