"""R2D2 against a feed-forward DQN on memory tasks, same env-step budget; one JSON line per run.

Tasks (JAX-native, trained on the compiled path; ``--path gymnasium`` runs the Recall task
through the gymnasium loop instead):

* ``memory-chain``: gymnax ``MemoryChain-bsuite`` (a context bit shown at the first step only,
  the action at the last step must name it: return +1 or -1, so 0 without memory).
* ``cartpole-positions``: gymnax ``CartPole-v1`` observing only the cart position and pole
  angle (:func:`kitae.envs.partial.masked_cartpole`); the velocities must be inferred from
  the history.
* ``cartpole-full``: the control, gymnax ``CartPole-v1`` with the same settings (velocities
  observed), to show that the feed-forward agent's settings do learn when nothing is hidden.
* ``recall`` (gymnasium only): the cue-recall task of ``tests/test_r2d2.py`` with a delay of
  ``--delay`` blank steps.

Each line holds the algo, env, seed, env steps, steps/s (``env_steps / train_s``), compile s,
train s and the final greedy return (mean over ``--eval-episodes`` episodes), with the machine,
versions and config. Training logs go through kitae's logger (``--run-dir`` writes them).

Usage::

    python benchmarks/r2d2_memory.py --env memory-chain --algo r2d2 dqn --seeds 0 1 2
    python benchmarks/r2d2_memory.py --env cartpole-positions --algo r2d2 dqn --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import learning_start, machine, versions

from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.r2d2 import R2D2, R2D2Params
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, config_to_json
from kitae.envs.jax_env import make_jax_env
from kitae.envs.partial import masked_cartpole
from kitae.evaluation import evaluate, evaluate_jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SETTINGS = {
    # env: (n_envs, n_env_steps, shared Q-learning params, R2D2 params, update config)
    "memory-chain": (
        8,
        20_000,
        {"start_step": 500, "skip_steps": 8, "exploration_fraction": 0.3, "n_step": 3},
        {"sequence_length": 10, "burn_in": 2, "core_size": 64, "hidden_sizes": (64,)},
        UpdateConfig(
            learning_rate=1e-3,
            learning_rate_annealing=False,
            max_grad_norm=10.0,
            max_buffer_size=20_000,
            batch_size=32,
            n_epochs=1,
        ),
    ),
    "cartpole-positions": (
        8,
        100_000,
        {"start_step": 1_000, "skip_steps": 8, "exploration_fraction": 0.2, "n_step": 3},
        {"sequence_length": 20, "burn_in": 5, "core_size": 64, "hidden_sizes": (64,)},
        UpdateConfig(
            learning_rate=1e-3,
            learning_rate_annealing=False,
            max_grad_norm=10.0,
            max_buffer_size=50_000,
            batch_size=32,
            n_epochs=1,
        ),
    ),
    "cartpole-full": None,  # the control: same settings, velocities observed
    "recall": (
        4,
        6_000,
        {"start_step": 200, "skip_steps": 4, "exploration_fraction": 0.3, "n_step": 3},
        {"sequence_length": 8, "burn_in": 2, "core_size": 32, "hidden_sizes": (32,)},
        UpdateConfig(
            learning_rate=1e-3,
            learning_rate_annealing=False,
            max_grad_norm=10.0,
            max_buffer_size=4_000,
            batch_size=32,
            n_epochs=1,
        ),
    ),
}
SETTINGS["cartpole-full"] = SETTINGS["cartpole-positions"]


def make_env(name: str, delay: int):
    """``(env, env_cfg)``: a JaxEnv, or a gymnasium vector env for ``recall``."""
    if name == "recall":
        from envs import make_vec
        from test_r2d2 import Recall

        n_envs = SETTINGS[name][0]
        env = make_vec(lambda: Recall(delay), n_envs)
        return env, EnvConfig.from_env(env)
    if name == "memory-chain":
        jax_env = make_jax_env("MemoryChain-bsuite")
    elif name == "cartpole-full":
        jax_env = make_jax_env("CartPole-v1")
    else:
        jax_env = make_jax_env(masked_cartpole())
    env_cfg = EnvConfig(
        task_name=jax_env.name,
        observation_space=jax_env.observation_space,
        action_space=jax_env.action_space,
        n_envs=SETTINGS[name][0],
    )
    return jax_env, env_cfg


def make_agent(algo: str, name: str, env_cfg: EnvConfig, seed: int, steps: int, run_dir):
    _, _, shared, recurrent, update = SETTINGS[name]
    shared = {**shared, "start_step": learning_start(shared["start_step"], steps)}
    if algo == "r2d2":
        params = R2D2Params(**shared, **recurrent)
        agent_cls = R2D2
    else:  # the same torso widths plus a layer as wide as the recurrent core
        hidden = (*recurrent["hidden_sizes"], recurrent["core_size"])
        params = DQNParams(**shared, hidden_sizes=hidden, loss="mse")
        agent_cls = DQN
    config = AlgoConfig(
        seed=seed,
        algo_params=params,
        update_cfg=dataclasses.replace(update),
        train_cfg=TrainConfig(n_env_steps=steps, progress_bar=False, log_frequency=steps // 20),
        env_cfg=env_cfg,
    )
    return agent_cls(f"{algo}_{name}_seed{seed}", config, run_dir=run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=sorted(SETTINGS), default="memory-chain")
    parser.add_argument("--algo", nargs="+", choices=["r2d2", "dqn"], default=["r2d2", "dqn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env steps (default per env)")
    parser.add_argument("--delay", type=int, default=3, help="recall: blank steps")
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--run-dir", default=None, help="write kitae's logs under this dir")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = parser.parse_args()
    steps = args.steps or SETTINGS[args.env][1]
    for algo in args.algo:
        for seed in args.seeds:
            env, env_cfg = make_env(args.env, args.delay)
            agent = make_agent(algo, args.env, env_cfg, seed, steps, args.run_dir)
            start = time.perf_counter()
            summary = agent.train(env, steps)
            wall = time.perf_counter() - start
            if args.env == "recall":
                gym.register("BenchRecall-v0", entry_point="test_r2d2:Recall")
                returns = evaluate(agent, "BenchRecall-v0", args.eval_episodes, delay=args.delay)
                gym.registry.pop("BenchRecall-v0")
                path = "gymnasium"
            else:
                returns = evaluate_jax(agent, env, args.eval_episodes)
                path = "compiled"
            train_s = float(summary["train_s"])
            row = {
                "benchmark": "r2d2_memory",
                "algo": algo,
                "env": args.env,
                "path": path,
                "seed": seed,
                "env_steps": int(summary["env_steps"]),
                "n_updates": int(summary["n_updates"]),
                "steps_per_s": round(summary["env_steps"] / train_s, 1),
                "compile_s": round(float(summary.get("compile_s", float("nan"))), 2),
                "train_s": round(train_s, 2),
                "wall_s": round(wall, 2),
                "final_greedy_return": round(float(np.mean(returns)), 3),
                "final_greedy_return_std": round(float(np.std(returns)), 3),
                "eval_episodes": args.eval_episodes,
                "loadavg": list(os.getloadavg()),
                "machine": machine(),
                "versions": versions(),
                "config": config_to_json(agent.config),
            }
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
