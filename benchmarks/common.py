"""Shared pieces of kitae's benchmark scripts: machine description and the JSON line."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

EVAL_EPISODES = 20
EVAL_SEED = 10_000
"""Greedy evaluation: 20 episodes of gymnasium CartPole-v1 reset with seeds 10000..10019."""


def machine() -> dict[str, Any]:
    """CPU model, core count and JAX backend of this machine."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def versions() -> dict[str, str]:
    import flax
    import gymnasium
    import jax
    import optax

    import kitae

    return {
        "kitae": kitae.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "gymnasium": gymnasium.__version__,
    }


def emit(record: dict[str, Any]) -> None:
    """Prints one JSON line with the machine, versions and load average appended."""
    record = dict(record)
    record["loadavg"] = list(os.getloadavg())
    record["machine"] = machine()
    record["versions"] = versions()
    print(json.dumps(record), flush=True)


def train_and_report(
    agent: Any,
    env: Any,
    algo: str,
    config: str,
    seed: int,
    eval_every: int = 0,
    env_id: str = "CartPole-v1",
) -> None:
    """Trains ``agent`` on ``env``, evaluates it greedily and prints the JSON line.

    ``train_s`` is the wall time of ``agent.train`` (compilation included) minus the time spent
    in the checkpoint evaluations that ``eval_every`` asks for; ``checkpoints`` lists
    ``(env_steps, greedy mean return)`` and ``first_solved`` the first step reaching 475.
    """
    import time

    import numpy as np

    from kitae.evaluation import evaluate

    checkpoints: list[tuple[int, float]] = []
    eval_s = 0.0

    def checkpoint(agent: Any) -> None:
        nonlocal eval_s
        start = time.perf_counter()
        returns = evaluate(agent, env_id, EVAL_EPISODES, EVAL_SEED)
        checkpoints.append((agent.env_steps, float(np.mean(returns))))
        eval_s += time.perf_counter() - start

    start = time.perf_counter()
    summary = agent.train(
        env, callback=checkpoint if eval_every else None, callback_every=eval_every or 10_000
    )
    train_s = time.perf_counter() - start - eval_s
    returns = evaluate(agent, env_id, EVAL_EPISODES, EVAL_SEED)
    if not checkpoints or checkpoints[-1][0] != agent.env_steps:
        checkpoints.append((agent.env_steps, float(np.mean(returns))))
    solved = [step for step, value in checkpoints if value >= 475]
    emit(
        {
            "system": "kitae",
            "algo": algo,
            "config": config,
            "seed": seed,
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
