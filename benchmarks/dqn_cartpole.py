"""DQN on gymnasium CartPole-v1 through kitae's gymnasium loop; prints one JSON line.

``--config rl-zoo`` uses the RL-Zoo CartPole hyperparameters (the speed comparison with SBX):
1 env, Adam lr 2.3e-3, batch 64, buffer 100k, learning starts at 1000, gamma 0.99, train every 256
steps with 128 gradient steps, epsilon 1.0 -> 0.04 over the first 16% of 50k steps, 256-256 ReLU,
Huber loss, no gradient clipping, hard target copy. RL-Zoo syncs the target every 10 env steps,
i.e. once between two 128-step bursts; kitae counts ``target_update_period`` in gradient steps, so
128 gives the same schedule (the target is constant during a burst and equals the online net after
it). ``--config default`` uses ``DQN.default_config`` (kitae's own settings).

``train_s`` is the wall time of ``agent.train`` (compilation included); evaluations are not
timed: the final one, and with ``--eval-every K`` one every K steps (``checkpoints``, and
``first_solved``, the first of them whose mean greedy return is >= 475).

Usage::

    python benchmarks/dqn_cartpole.py --seed 0 --config rl-zoo
    python benchmarks/dqn_cartpole.py --seed 0 --config default --steps 50000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import EVAL_EPISODES, EVAL_SEED, emit

import kitae.config as cfg
from kitae.algos import DQN, DQNParams
from kitae.envs.make import make_vec_env
from kitae.evaluation import evaluate

ENV_ID = "CartPole-v1"


def rl_zoo_config(env, seed: int, steps: int) -> cfg.AlgoConfig:
    """The RL-Zoo CartPole-v1 DQN hyperparameters, expressed in kitae's config."""
    params = DQNParams(
        gamma=0.99,
        exploration_start=1.0,
        exploration_end=0.04,
        exploration_fraction=0.16,
        double_q=False,
        dueling=False,
        loss="huber",
        tau=1.0,
        target_update_period=128,
        skip_steps=256,
        start_step=1000,
        hidden_sizes=(256, 256),
        activation="relu",
    )
    update = cfg.UpdateConfig(
        learning_rate=2.3e-3,
        learning_rate_annealing=False,
        max_grad_norm=None,
        max_buffer_size=100_000,
        batch_size=64,
        n_epochs=128,
    )
    return DQN.default_config(
        env, seed=seed, n_env_steps=steps, algo_params=params, update_cfg=update
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--config", choices=("rl-zoo", "default"), default="rl-zoo")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate every this many steps (0: only at the end)",
    )
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    args = parser.parse_args()

    env = make_vec_env(ENV_ID, 1)
    if args.config == "rl-zoo":
        config = rl_zoo_config(env, args.seed, args.steps)
    else:
        config = DQN.default_config(env, seed=args.seed, n_env_steps=args.steps)
    config.train_cfg.progress_bar = args.progress
    agent = DQN(f"dqn-{args.config}-{args.seed}", config)
    checkpoints, eval_s = [], 0.0

    def checkpoint(agent: DQN) -> None:
        nonlocal eval_s
        start = time.perf_counter()
        returns = evaluate(agent, ENV_ID, EVAL_EPISODES, EVAL_SEED)
        checkpoints.append((agent.env_steps, float(np.mean(returns))))
        eval_s += time.perf_counter() - start

    start = time.perf_counter()
    summary = agent.train(
        env,
        callback=checkpoint if args.eval_every else None,
        callback_every=args.eval_every or 10_000,
    )
    train_s = time.perf_counter() - start - eval_s
    returns = evaluate(agent, ENV_ID, EVAL_EPISODES, EVAL_SEED)
    if not checkpoints or checkpoints[-1][0] != agent.env_steps:
        checkpoints.append((agent.env_steps, float(np.mean(returns))))
    solved = [step for step, value in checkpoints if value >= 475]
    emit(
        {
            "system": "kitae",
            "algo": "dqn",
            "config": args.config,
            "seed": args.seed,
            "steps": summary["env_steps"],
            "train_s": round(train_s, 3),
            "sps": round(summary["env_steps"] / train_s, 1),
            "eval_mean": float(np.mean(returns)),
            "eval_std": float(np.std(returns)),
            "eval_returns": returns.tolist(),
            "n_updates": summary["n_updates"],
            "gradient_steps": int(agent.state.step),
            "checkpoints": checkpoints,
            "first_solved": solved[0] if solved else None,
        }
    )


if __name__ == "__main__":
    main()
