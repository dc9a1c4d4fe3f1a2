"""Peer benchmark: SBX (Stable-Baselines-Jax) DQN / PPO on CartPole-v1.

Trains ``sbx.DQN`` or ``sbx.PPO`` with the RL-Zoo CartPole-v1 hyperparameters
(``sbx_common.RL_ZOO``), then evaluates the greedy policy on 20 fixed-seed episodes
and prints a single JSON line to stdout.

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
import sys
import time
from pathlib import Path

import jax
import numpy as np
import sbx
import torch
from sbx_common import evaluate, make_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py

from common import EVAL_EPISODES, EVAL_SEED, cpu_model  # noqa: E402

ENV_ID = "CartPole-v1"
DEFAULT_STEPS = {"dqn": 50_000, "ppo": 100_000}


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
    model = make_model(args.algo, ENV_ID, args.seed)

    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - start

    returns = evaluate(model, ENV_ID, EVAL_EPISODES, EVAL_SEED)
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
