"""Command line: ``kitae train ALGO --env ENV_ID`` trains, then prints the greedy return.

Example::

    kitae train dqn --env CartPole-v1 --steps 50000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from kitae.algos import C51, DDPG, DQN, IQN, PPO, QRDQN, SAC, TD3
from kitae.envs.make import make_vec_env
from kitae.evaluation import evaluate

AGENTS = {
    "dqn": (DQN, "CartPole-v1", 50_000),
    "c51": (C51, "CartPole-v1", 100_000),
    "qrdqn": (QRDQN, "CartPole-v1", 100_000),
    "iqn": (IQN, "CartPole-v1", 100_000),
    "ppo": (PPO, "CartPole-v1", 200_000),
    "sac": (SAC, "Pendulum-v1", 20_000),
    "td3": (TD3, "Pendulum-v1", 20_000),
    "ddpg": (DDPG, "Pendulum-v1", 20_000),
}
"""name -> (agent class, default env id, default number of env steps)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kitae", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an agent and print its greedy return")
    train.add_argument("algo", choices=sorted(AGENTS), help="the algorithm")
    defaults = ", ".join(f"{name}: {env} / {steps}" for name, (_, env, steps) in AGENTS.items())
    train.add_argument(
        "--env", default=None, help=f"gymnasium env id (default per algo: {defaults})"
    )
    train.add_argument(
        "--steps", type=int, default=None, help="env transitions to train for (default per algo)"
    )
    train.add_argument("--seed", type=int, default=0, help="the one seed of the run")
    train.add_argument(
        "--n-envs", type=int, default=None, help="vectorized envs (default: the agent's own)"
    )
    train.add_argument(
        "--eval-episodes", type=int, default=20, help="greedy evaluation episodes after training"
    )
    train.add_argument(
        "--run-dir",
        default=None,
        help="write config and logs to RUN_DIR/<algo>-<env>-<seed> (default: no files)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def train_command(args: argparse.Namespace) -> dict:
    agent_cls, default_env, default_steps = AGENTS[args.algo]
    args.env = args.env or default_env
    n_envs = args.n_envs or agent_cls.default_n_envs
    steps = args.steps or default_steps
    env = make_vec_env(args.env, n_envs)
    config = agent_cls.default_config(env, seed=args.seed, n_env_steps=steps)
    config.train_cfg.progress_bar = not args.no_progress
    run_name = f"{args.algo}-{args.env}-{args.seed}"
    agent = agent_cls(run_name, config, run_dir=args.run_dir)
    summary = agent.train(env)
    env.close()
    returns = evaluate(agent, args.env, n_episodes=args.eval_episodes, seed=10_000)
    result = {
        "algo": args.algo,
        "env": args.env,
        "seed": args.seed,
        "env_steps": summary["env_steps"],
        "n_updates": summary["n_updates"],
        "train_s": round(summary["train_s"], 2),
        "eval_mean": float(np.mean(returns)),
        "eval_std": float(np.std(returns)),
    }
    print(
        f"greedy return over {args.eval_episodes} episodes: "
        f"{result['eval_mean']:.1f} +/- {result['eval_std']:.1f}"
    )
    print(json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train_command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
