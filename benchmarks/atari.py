"""DQN on an Atari game through the gymnasium host loop; prints one JSON line per run.

The agent is ``DQN.default_config`` on ``ALE/<Game>-v5`` (``kitae.envs.make.make_vec_env``:
sticky actions, ``AtariPreprocessing``, 4 stacked 84x84 frames, clipped rewards and life-loss
terminals for training), so it takes kitae's tuned ``("dqn", "ALE/*")`` entry: RL-Zoo's Atari
DQN (Nature CNN and a 512-unit layer, lr 1e-4, buffer 100k, batch 32, one gradient step every
4 transitions, target copy every 1,000 transitions, epsilon 1 -> 0.01 over 10% of the run).
``--learning-starts`` replaces the entry's 100k so that a short run updates (the same value is
given to the SBX peer, ``peers/sbx_atari.py``); ``--buffer`` the replay capacity; the replay
stores each frame once (``update_cfg.frame_stack_replay="auto"``).

Fields: ``train_s`` (wall time of ``agent.train``, compilation included), ``sps``,
``cpu_s`` (CPU time of the process during training, all threads: on a shared core, the time
it was given), ``sps_cpu`` (steps per CPU second),
``max_rss_mb`` (peak resident memory of the process, ``getrusage``), ``n_updates``, and
``curve``: ``(env step, return)`` of every training episode (game score: Pong's clipped
rewards are its score), with ``first_rise`` the first step whose episode return is at least
``--rise`` above the first episode's.

Usage::

    python benchmarks/atari.py --env ALE/Pong-v5 --steps 20000 --learning-starts 5000
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
from common import emit


class EpisodeLog(gym.Wrapper):
    """Records ``(env step, undiscounted return)`` at every episode end, counting the steps of
    all the envs that share ``log`` (sync vectorization: one process)."""

    def __init__(self, env: gym.Env, log: dict):
        super().__init__(env)
        self.log = log
        self.ret = 0.0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log["steps"] += 1
        self.ret += float(reward)
        if terminated or truncated:
            if info.get("lives", 0) == 0 or truncated:
                self.log["episodes"].append((self.log["steps"], self.ret))
                self.ret = 0.0
        return obs, reward, terminated, truncated, info


def first_rise(episodes: list[tuple[int, float]], rise: float) -> int | None:
    """The step of the first episode whose return is ``>= rise`` above the first episode's."""
    if not episodes:
        return None
    base = episodes[0][1]
    return next((step for step, value in episodes if value >= base + rise), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--buffer", type=int, default=100_000)
    parser.add_argument("--rise", type=float, default=3.0)
    args = parser.parse_args()
    if args.steps < 1 or args.learning_starts < 0 or args.buffer < 1:
        raise SystemExit("--steps and --buffer must be >= 1, --learning-starts >= 0.")

    from kitae.algos import DQN
    from kitae.envs.make import make_vec_env

    log: dict = {"steps": 0, "episodes": []}
    env = make_vec_env(args.env, 1, wrappers=[lambda e: EpisodeLog(e, log)])
    config = DQN.default_config(env, seed=args.seed, n_env_steps=args.steps)
    config.algo_params.start_step = args.learning_starts
    config.update_cfg.max_buffer_size = args.buffer
    config.train_cfg.progress_bar = False
    try:
        agent = DQN(f"dqn-{args.env}", config)
    except ValueError as err:
        raise SystemExit(f"invalid configuration: {err}") from None
    start, cpu_start = time.perf_counter(), time.process_time()
    agent.train(env, args.steps)
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit(
        {
            "benchmark": "atari",
            "system": "kitae",
            "algo": "dqn",
            "env": args.env,
            "seed": args.seed,
            "steps": agent.env_steps,
            "learning_starts": args.learning_starts,
            "buffer": args.buffer,
            "frame_stack_replay": config.update_cfg.frame_stack_replay,
            "train_s": round(train_s, 3),
            "cpu_s": round(cpu_s, 3),
            "sps_cpu": round(agent.env_steps / cpu_s, 1),
            "sps": round(agent.env_steps / train_s, 1),
            "max_rss_mb": round(rss_mb, 1),
            "n_updates": agent.n_updates,
            "gradient_steps": int(agent.state.step),
            "curve": log["episodes"],
            "first_rise": first_rise(log["episodes"], args.rise),
            "rise": args.rise,
        }
    )


if __name__ == "__main__":
    main()
