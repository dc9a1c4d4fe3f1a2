"""Peer benchmark: rejax PQN on gymnax CartPole-v1; prints one JSON line.

Trains ``rejax.PQN`` with the PQN entry of rejax's ``configs/gymnax/cartpole.yaml`` (16 envs x
128 steps, 5 epochs of 16 minibatches, lr 3e-4, gradient clip 10, gamma 0.99, lambda 0.9,
epsilon 1 -> 0.05 over half the run, 524,288 steps) on K seeds at once
(``jax.jit(jax.vmap(algo.train))``), then evaluates each seed's greedy policy (argmax of the
Q-values) on 128 gymnax CartPole-v1 episodes. The same settings in kitae are
``benchmarks/pqn_cartpole.py --config rejax``.

rejax's in-training evaluation is switched off as in ``rejax_cartpole.py`` (whose evaluation
and machine description this script reuses). ``compile_s`` is the time of
``train_fn.lower(keys).compile()``; ``train_s`` the best of ``--repeats`` executions of the
compiled function; ``sps`` the aggregate ``seeds * steps / train_s``.

Usage (from the rejax virtualenv, see ``requirements-rejax.txt``)::

    python benchmarks/peers/rejax_pqn.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version

import jax
import numpy as np
import rejax
from rejax_cartpole import cpu_model, make_evaluate

# rejax configs/gymnax/cartpole.yaml, pqn (total_timesteps and eval_freq set per run).
PQN_CONFIG = {
    "env": "CartPole-v1",
    "num_envs": 16,
    "num_steps": 128,
    "num_minibatches": 16,
    "max_grad_norm": 10.0,
    "learning_rate": 3e-4,
    "num_epochs": 5,
    "eps_start": 1.0,
    "eps_end": 0.05,
    "exploration_fraction": 0.5,
    "gamma": 0.99,
    "td_lambda": 0.9,
    "normalize_observations": False,
}
DEFAULT_STEPS = 524_288


def make_algo(steps: int):
    """rejax PQN with the CartPole config and in-training evaluation disabled."""
    config = dict(PQN_CONFIG, total_timesteps=steps, eval_freq=steps)
    config["skip_initial_evaluation"] = True
    agent = rejax.get_algo("pqn").create(**config)
    return agent.replace(eval_callback=lambda agent, ts, rng: ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds trained in one vmap")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="env steps per seed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    loadavg = list(os.getloadavg())
    agent = make_algo(args.steps)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    train_fn = jax.jit(jax.vmap(agent.train))

    start = time.perf_counter()
    compiled = train_fn.lower(keys).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(max(args.repeats, 1)):
        start = time.perf_counter()
        ts, _ = jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
    train_s = min(times)

    # The Q-network sits where rejax_cartpole.py finds DQN's (agent.agent, ts.q_ts).
    returns = np.asarray(make_evaluate(agent, "pqn")(ts))
    per_seed = [round(float(r), 2) for r in returns.mean(axis=1)]
    env_steps = int(np.asarray(ts.global_step)[0])
    print(
        json.dumps(
            {
                "system": "rejax",
                "algo": "pqn",
                "config": "rejax",
                "seeds": args.seeds,
                "steps": env_steps,
                "compile_s": round(compile_s, 3),
                "train_s": round(train_s, 3),
                "train_s_all": [round(t, 3) for t in times],
                "sps": round(args.seeds * env_steps / train_s, 1),
                "eval_mean": float(np.mean(per_seed)),
                "eval_per_seed": per_seed,
                "loadavg": loadavg,
                "machine": {
                    "platform": platform.platform(),
                    "cpu": cpu_model(),
                    "cpu_count": os.cpu_count(),
                    "affinity": len(os.sched_getaffinity(0)),
                    "jax_backend": jax.default_backend(),
                },
                "versions": {
                    name: version(name)
                    for name in ("rejax", "gymnax", "jax", "jaxlib", "flax", "optax")
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
