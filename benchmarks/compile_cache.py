"""Time-to-result of a ``kitae train`` command with and without the persistent compilation cache.

Runs the same command as separate processes: once with the cache off, once with an empty cache
folder (compiles and stores), and ``--repeats`` times more with the warm folder. Each run's wall
time is that of the whole process (imports, compilation, training, the final greedy evaluation).
Prints one JSON line per command with the times and ``warm_over_off`` (median warm time / cache-off
time).

Usage::

    python benchmarks/compile_cache.py                      # DQN CartPole-v1 and PPO gymnax:CartPole-v1
    python benchmarks/compile_cache.py --commands dqn --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

COMMANDS = {
    "dqn": ["train", "dqn", "--env", "CartPole-v1"],
    "ppo-compiled": ["train", "ppo", "--env", "gymnax:CartPole-v1"],
}


def timed_run(args: list[str], env: dict[str, str], runs_dir: Path, name: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kitae", *args, "--quiet", "--runs-dir", str(runs_dir)]
        + ["--run-name", name, "--eval-episodes", "5"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per command")
    args = parser.parse_args()

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.commands:
            cache = root / f"cache-{name}"
            off = timed_run(
                COMMANDS[name], dict(base_env, KITAE_COMPILATION_CACHE="0"), root, f"{name}-off"
            )
            with_cache = dict(base_env, KITAE_COMPILATION_CACHE=str(cache))
            cold = timed_run(COMMANDS[name], with_cache, root, f"{name}-cold")
            warm = [
                timed_run(COMMANDS[name], with_cache, root, f"{name}-warm{i}")
                for i in range(args.repeats)
            ]
            size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            emit(
                {
                    "benchmark": "compile_cache",
                    "command": "kitae " + " ".join(COMMANDS[name]),
                    "cache_off_s": round(off, 2),
                    "cold_cache_s": round(cold, 2),
                    "warm_cache_s": [round(w, 2) for w in warm],
                    "warm_over_off": round(statistics.median(warm) / off, 3),
                    "saved_s": round(off - statistics.median(warm), 2),
                    "cache_bytes": size,
                }
            )


if __name__ == "__main__":
    main()
