"""Learning curves of run directories: read a metric per run, group runs by config, plot mean and
spread over seeds with matplotlib (``pip install 'kitae[plot]'``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METRICS = {
    "return": (("episodes", "return"), ("train", "episode_return")),
    "eval": (("eval", "eval_return_mean"),),
}
"""Named metrics: where each is read, first source found wins (``stream``, ``column``).
``return`` is the training episodes' return (the gymnasium loop logs every episode to
``episodes``, the compiled loop a mean per chunk to ``train``); ``eval`` the periodic or final
greedy evaluation."""

RUN_FIELDS = (
    "seed",
    "run_name",
    "runs_dir",
    "eval_episodes",
    "video",
    "video_episodes",
    "quiet",
    "train_cfg.progress_bar",
    "train_cfg.log_frequency",
    "train_cfg.save_frequency",
    "train_cfg.save_buffer",
    "train_cfg.keep_checkpoints",
    "train_cfg.loggers",
)
"""Spec fields that do not make two runs different experiments (seeds of one group)."""


@dataclass
class Curve:
    """One run's metric: ``steps [K]`` (env transitions) and ``values [K]``."""

    run_dir: Path
    steps: np.ndarray
    values: np.ndarray


def _rows(run_dir: Path, stream: str) -> list[dict[str, Any]]:
    path = run_dir / f"{stream}.jsonl"
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path = run_dir / f"{stream}.csv"
    if path.is_file():
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return []


def read_curve(run_dir: str | Path, metric: str = "return") -> Curve:
    """The metric of one run directory, in step order, non-finite values dropped.

    Args:
        run_dir: a run directory.
        metric: a name of :data:`METRICS`, or ``"<stream>/<column>"``.

    Raises:
        FileNotFoundError: if the directory does not exist.
        ValueError: if the run logged no such metric.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist.")
    if metric in METRICS:
        sources = METRICS[metric]
    elif "/" in metric:
        stream, column = metric.split("/", 1)
        sources = ((stream, column),)
    else:
        raise ValueError(
            f"metric={metric!r} is unknown: use {', '.join(METRICS)} or '<stream>/<column>'."
        )
    for stream, column in sources:
        points = []
        for row in _rows(run_dir, stream):
            value = row.get(column)
            if value in (None, ""):
                continue
            value = float(value)
            if np.isfinite(value):
                points.append((float(row["step"]), value))
        if points:
            points.sort(key=lambda p: p[0])
            steps, values = map(np.asarray, zip(*points, strict=True))
            return Curve(run_dir, steps, values)
    names = ", ".join(f"{s}/{c}" for s, c in sources)
    raise ValueError(f"{run_dir} logged no {metric!r} values (looked for {names}).")


def _is_run(path: Path) -> bool:
    names = ("config.yaml", "config.json", "episodes.jsonl", "train.jsonl", "eval.jsonl")
    return any((path / n).is_file() for n in names) or any(path.glob("*.csv"))


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories that ``paths`` name: a run directory itself, or every run directory
    inside a directory of runs (e.g. a sweep's); plain files (from a shell glob) are skipped.

    Raises:
        FileNotFoundError: if a path does not exist or names no run.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"run directory {path} does not exist.")
        if _is_run(path) and not (path / "summary.md").is_file():
            out.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if p.is_dir() and _is_run(p))
        if not inner:
            raise FileNotFoundError(f"{path} is neither a run directory nor holds any.")
        out.extend(inner)
    return out


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or values.size == 0:
        return values
    cumsum = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    end = np.arange(1, values.size + 1)
    start = np.maximum(0, end - window)
    return (cumsum[end] - cumsum[start]) / (end - start)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(data, sort_keys=True)}


def run_signature(run_dir: Path) -> dict[str, Any]:
    """The flattened config of a run without its seed and run-local fields (``config.yaml`` of
    ``kitae train``, else the agent's ``config.json``); ``{}`` when there is none."""
    import yaml

    for name in ("config.yaml", "config.json"):
        path = run_dir / name
        if path.is_file():
            data = yaml.safe_load(path.read_text())
            if isinstance(data, dict):
                flat = _flatten(data)
                return {
                    k: v
                    for k, v in flat.items()
                    if k.split(".")[0] not in RUN_FIELDS and k not in RUN_FIELDS
                }
    return {}


def group_runs(run_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Groups runs that differ only by seed; labels name the fields that tell groups apart.

    Returns:
        ``label -> run directories``, in the order first seen.
    """
    signatures = [run_signature(p) for p in run_dirs]
    groups: dict[str, list[int]] = {}
    for i, sig in enumerate(signatures):
        key = json.dumps(sig, sort_keys=True) if sig else f"dir:{run_dirs[i]}"
        groups.setdefault(key, []).append(i)
    members = list(groups.values())
    keys = sorted({k for sig in signatures for k in sig})
    differing = [k for k in keys if len({signatures[m[0]].get(k) for m in members}) > 1]
    labels: dict[str, list[Path]] = {}
    for indices in members:
        sig = signatures[indices[0]]
        if differing and sig:
            label = ", ".join(
                f"{k.split('.')[-1]}={json.loads(sig[k]) if k in sig else '-'}" for k in differing
            )
        elif sig:
            algo, env = sig.get("algo"), sig.get("env")
            label = (
                f"{json.loads(algo)} {json.loads(env)}"
                if algo and env
                else run_dirs[indices[0]].name
            )
        else:
            label = run_dirs[indices[0]].name
        while label in labels:
            label += "'"
        labels[label] = [run_dirs[i] for i in indices]
    return labels


def plot_runs(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    *,
    metric: str = "return",
    window: int = 10,
    spread: str = "std",
    points: int = 200,
    title: str | None = None,
) -> Path:
    """Plots learning curves: one line per group of runs (mean over its seeds), shaded spread.

    Each run's metric is smoothed (trailing mean over ``window`` points) and interpolated onto
    ``points`` steps up to the shortest run of its group; the line is the mean over the group's
    runs, the band ``mean +/- std`` (``spread="std"``) or ``min..max`` (``"minmax"``).

    Args:
        run_dirs: run directories, or directories of runs (see :func:`expand_run_dirs`).
        output: the image file (format from its suffix, e.g. ``.png``).
        metric: see :func:`read_curve`.
        window: smoothing window (points).
        spread: ``"std"``, ``"minmax"`` or ``"none"``.
        points: interpolation points per curve.
        title: figure title (default: the metric).

    Returns:
        The image path.

    Raises:
        ValueError: for no run directories, a bad option, or a run without the metric.
        ImportError: if matplotlib is missing.
    """
    if not run_dirs:
        raise ValueError("plot needs at least one run directory.")
    if spread not in ("std", "minmax", "none"):
        raise ValueError(f"spread={spread!r} is invalid: use 'std', 'minmax' or 'none'.")
    if window < 1 or points < 2:
        raise ValueError(f"window={window} and points={points} must be >= 1 and >= 2.")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install 'kitae[plot]'.") from err

    paths = expand_run_dirs(run_dirs)
    if not paths:
        raise ValueError("plot found no run directories among the paths given.")
    curves = {p: read_curve(p, metric) for p in paths}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, members in group_runs(paths).items():
        group = [curves[p] for p in members]
        end = min(c.steps[-1] for c in group)
        start = max(c.steps[0] for c in group)
        grid = np.linspace(start, end, points) if end > start else np.asarray([start])
        ys = np.stack([np.interp(grid, c.steps, smooth(c.values, window)) for c in group])
        mean = ys.mean(axis=0)
        name = f"{label} ({len(group)} run{'s' if len(group) > 1 else ''})"
        (line,) = ax.plot(grid, mean, label=name)
        if len(group) > 1 and spread != "none":
            if spread == "std":
                low, high = mean - ys.std(axis=0), mean + ys.std(axis=0)
            else:
                low, high = ys.min(axis=0), ys.max(axis=0)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
