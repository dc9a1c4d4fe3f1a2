"""Summarises benchmarks/results/*.jsonl as the markdown tables of benchmarks/README.md.

Usage::

    python benchmarks/summarize.py [--results benchmarks/results]
    python benchmarks/summarize.py --learning benchmarks/results/learning*.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def gymnasium_table(rows: list[dict]) -> list[str]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("system") in ("kitae", "sbx") and "seeds" not in r and not is_learning(r):
            groups[(r["algo"], r["config"], r["system"])].append(r)
    out = [
        "| algo | config | system | seeds | median train_s | median steps/s | "
        "greedy return per seed | seeds >= 475 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (algo, config, system), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        returns = ", ".join(f"{r['eval_mean']:.0f}" for r in rs)
        solved = sum(r["eval_mean"] >= 475 for r in rs)
        out.append(
            f"| {algo} | {config} | {system} | {len(rs)} | "
            f"{median([r['train_s'] for r in rs]):.1f} | "
            f"{median([r['sps'] for r in rs]):,.0f} | {returns} | {solved}/{len(rs)} |"
        )
    return out


def compiled_table(rows: list[dict]) -> list[str]:
    out = [
        "| system | algo | config | seeds | buffer | compile_s | train_s | steps/s (all seeds) "
        "| greedy return per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "seeds" not in r:
            continue
        per_seed = ", ".join(f"{x:.0f}" for x in r.get("eval_per_seed", []))
        out.append(
            f"| {r['system']} | {r['algo']} | {r['config']} | {r['seeds']} | "
            f"{r.get('buffer') or '-'} | {r['compile_s']:.1f} | {r['train_s']:.2f} | "
            f"{r['sps']:,.0f} | {per_seed} |"
        )
    return out


def is_learning(row: dict) -> bool:
    return row.get("benchmark") == "learning"


def learning_table(rows: list[dict]) -> list[str]:
    """One row per (env, algo, system, variant, config, budget) of the learning benchmark."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if is_learning(r):
            config = "; ".join([r["config"], *r.get("overrides", [])])
            if r.get("compiled"):
                config += " (compiled)"
            budget = r.get("budget_steps", r["steps"])
            key = (r["env"], r["algo"], r["system"], r["variant"], config, budget)
            groups[key].append(r)
    out = [
        "| env | algo | system | variant | config | steps | threshold | seeds | >= threshold "
        "| final eval per seed | median eval (min - max) | median steps to threshold "
        "| median train_s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env, algo, system, variant, config, budget), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        threshold = rs[0]["threshold"]
        evals = [r["eval_mean"] for r in rs]
        per_seed = ", ".join(f"{e:.1f}" for e in evals)
        solved = "-" if threshold is None else f"{sum(e >= threshold for e in evals)}/{len(rs)}"
        reached = [r["first_step_over_threshold"] for r in rs]
        reached = [s for s in reached if s is not None]
        to_threshold = f"{median(reached):,.0f} ({len(reached)}/{len(rs)})" if reached else "-"
        out.append(
            f"| {env} | {algo} | {system} | {variant} | {config} | {budget:,} | "
            f"{'-' if threshold is None else f'{threshold:g}'} | {len(rs)} | {solved} | "
            f"{per_seed} | {median(evals):.1f} ({min(evals):.1f} - {max(evals):.1f}) | "
            f"{to_threshold} | "
            f"{median([r['train_s'] for r in rs]):.1f} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--learning",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="print only the learning table of these JSON-lines files",
    )
    args = parser.parse_args()
    if args.learning:
        print("\n".join(learning_table(load(args.learning))))
        return
    rows = load(sorted(Path(args.results).glob("*.jsonl")))
    print("\n".join(gymnasium_table(rows)))
    print()
    floors = [r for r in rows if r.get("system") == "floor"]
    for f in floors:
        print(
            f"floor (rl-zoo DQN): updates {f['updates_s']:.1f} s + env {f['env_s']:.1f} s = "
            f"{f['floor_s']:.1f} s ({f['ms_per_gradient_step']:.3f} ms per gradient step)"
        )
    print()
    print("\n".join(compiled_table(rows)))
    if any(is_learning(r) for r in rows):
        print()
        print("\n".join(learning_table(rows)))


if __name__ == "__main__":
    main()
