"""``kitae sweep``: train one algorithm over a grid or a random sample of config values and seeds.

Each ``--param PATH=VALUES`` names a spec field (``update_cfg.learning_rate``,
``algo_params.gamma``...) and either a list of values (``1e-3,3e-4``; a sequence field takes
space-separated items, ``"64 64,128 128"``) or a distribution (``uniform(a,b)``,
``loguniform(a,b)``, ``randint(a,b)`` with ``b`` included). Without ``--random N`` the members
are the grid of all the lists; with it, ``N`` members drawn at random (lists are sampled
uniformly). Every member trains ``--seeds`` seeds.

* gymnax envs (the compiled path): members that differ only in traced values
  (``update_cfg.learning_rate`` and the agent's :attr:`~kitae.base.BaseAgent.traced_hyperparams`)
  and all their seeds train in **one** program, ``jit(vmap(train))``; other fields change the
  program, so each distinct value of them compiles one.
* gymnasium envs: runs go one after another, or ``--workers`` at a time in separate processes.

``--backend submitit`` (``pip install 'kitae[cluster]'``) submits the same work as jobs with
`submitit <https://github.com/facebookincubator/submitit>`_ instead: one job per compiled
program (gymnax envs) or per run (gymnasium envs), on SLURM when ``sbatch`` is available and as
local processes otherwise (``--submitit-cluster slurm|local|debug`` chooses); the jobs' files
and logs go to ``<sweep dir>/submitit/``, and ``--submitit-param KEY=VALUE`` sets the
executor's parameters (``timeout_min=120``, ``gpus_per_node=1``, ``slurm_partition=gpu``...).
The sweep waits for every job and writes the same results and summary.

The sweep directory ``<runs_dir>/<name>/`` holds one run directory per member and seed (so
``kitae plot`` reads them), ``results.jsonl`` (one row per run), ``summary.md`` (the table of
final greedy returns per member: mean, std, min, max over seeds), ``sweep.png`` and
``wandb_sweep.yaml`` (the same sweep as a Weights & Biases sweep configuration).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from kitae.cli.runs import (
    CONFIG_SECTIONS,
    PETTINGZOO_PREFIX,
    RUN_OPTION_NAMES,
    _value_args,
    agent_class,
    build_config,
    default_spec,
    dict_to_args,
    gymnax_id,
    make_env,
    parse_spec,
    spec_to_dict,
    write_spec,
)

if TYPE_CHECKING:
    from kitae.agent import BaseAgent

DISTRIBUTIONS = ("uniform", "loguniform", "randint")
_NOT_SWEPT = ("seed", "run_name", "runs_dir")


@dataclasses.dataclass(frozen=True)
class Param:
    """One swept field: a list of values (as command-line text) or a distribution."""

    path: str
    values: tuple[str, ...] = ()
    distribution: str | None = None
    low: float = 0.0
    high: float = 0.0


def _field_default(algo: str, path: str) -> Any:
    spec = default_spec(algo)
    head, _, leaf = path.partition(".")
    if leaf:
        if head not in CONFIG_SECTIONS:
            raise ValueError(
                f"--param {path}: {head!r} is not one of {', '.join(CONFIG_SECTIONS)}."
            )
        section = getattr(spec, head)
        names = [f.name for f in dataclasses.fields(section)]
        if leaf not in names:
            raise ValueError(f"--param {path}: {head} has no field {leaf!r} ({', '.join(names)}).")
        return getattr(section, leaf)
    if head not in RUN_OPTION_NAMES or head in _NOT_SWEPT:
        raise ValueError(
            f"--param {path}: not a sweepable field; use <section>.<field> with a section of "
            f"{', '.join(CONFIG_SECTIONS)} (seeds: --seeds)."
        )
    return getattr(spec, head)


def parse_param(algo: str, text: str) -> Param:
    """Parses ``PATH=VALUES`` (see the module docstring).

    Raises:
        ValueError: naming the field, for an unknown field or malformed values.
    """
    path, sep, rest = text.partition("=")
    path = path.strip().replace("-", "_")
    if not sep or not rest.strip():
        raise ValueError(
            f"--param {text!r}: expected PATH=VALUES, e.g. update_cfg.learning_rate=1e-3,3e-4."
        )
    default = _field_default(algo, path)
    match = re.fullmatch(r"\s*(\w+)\(\s*([^,]+?)\s*,\s*([^,]+?)\s*\)\s*", rest)
    if match and match.group(1) in DISTRIBUTIONS:
        kind, low, high = match.group(1), float(match.group(2)), float(match.group(3))
        if not low < high or (kind == "loguniform" and low <= 0):
            raise ValueError(f"--param {path}: {kind}({low}, {high}) needs 0 <= low < high.")
        if isinstance(default, bool) or not isinstance(default, (int, float, type(None))):
            raise ValueError(f"--param {path}: a distribution needs a numeric field.")
        return Param(path, distribution=kind, low=low, high=high)
    values = tuple(v.strip() for v in rest.split(",") if v.strip())
    return Param(path, values=values)


def members(params: Sequence[Param], n_random: int | None, seed: int = 0) -> list[dict[str, str]]:
    """The members of a sweep: ``{path: value text}`` each.

    Raises:
        ValueError: if a distribution is given without ``n_random``.
    """
    if n_random is None:
        for p in params:
            if p.distribution is not None:
                raise ValueError(
                    f"--param {p.path} is a distribution: add --random N to draw N members."
                )
        grid = itertools.product(*(p.values for p in params))
        return [dict(zip((p.path for p in params), combo, strict=True)) for combo in grid]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_random):
        member = {}
        for p in params:
            if p.distribution is None:
                member[p.path] = p.values[rng.integers(len(p.values))]
            elif p.distribution == "uniform":
                member[p.path] = f"{rng.uniform(p.low, p.high):.6g}"
            elif p.distribution == "loguniform":
                member[p.path] = f"{math.exp(rng.uniform(math.log(p.low), math.log(p.high))):.6g}"
            else:
                member[p.path] = str(int(rng.integers(int(p.low), int(p.high) + 1)))
        out.append(member)
    return out


def member_args(algo: str, member: dict[str, str]) -> list[str]:
    """Command-line tokens that set a member's values."""
    args: list[str] = []
    for path, text in member.items():
        default = _field_default(algo, path)
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--param {path}: {text!r} is not True or False.")
            value: Any = text.lower() == "true"
        elif isinstance(default, (tuple, list)):
            value = text.split()
        elif text == "None":
            value = None
        else:
            value = text
        args += _value_args(path, value, default)
    return args


def member_name(member: dict[str, str]) -> str:
    """A directory-safe name of a member, e.g. ``learning_rate=0.001_gamma=0.99``."""
    if not member:
        return "base"
    parts = [f"{p.split('.')[-1]}={v.replace(' ', 'x')}" for p, v in member.items()]
    return re.sub(r"[^A-Za-z0-9._=-]", "-", "_".join(parts))


def _spec_with_seed(algo: str, args: list[str], config_file: str | None, seed: int) -> Any:
    _, spec = parse_spec(algo, [*args, "--seed", str(seed)], config_file=config_file)
    return spec


def _traced_paths(cls: type[BaseAgent]) -> dict[str, str]:
    paths = {"update_cfg.learning_rate": "learning_rate"}
    paths.update({f"algo_params.{name}": name for name in cls.traced_hyperparams})
    return paths


def _get(spec: Any, path: str) -> Any:
    obj = spec
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _write_rows(run_dir: Path, stream: str, rows: list[dict[str, Any]]) -> None:
    with open(run_dir / f"{stream}.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


Run = tuple[str, dict[str, str], int, Any]
"""One run of a sweep: ``(member name, member values, seed, spec)``."""


def program_groups(algo: str, runs: Sequence[Run]) -> list[list[Run]]:
    """Groups runs that one compiled program trains: they differ only by seed and traced values
    (``update_cfg.learning_rate`` and the agent's ``traced_hyperparams``)."""
    traced = _traced_paths(agent_class(algo))
    groups: dict[str, list[Run]] = {}
    for run in runs:
        static = spec_to_dict(algo, run[3])
        for path in traced:
            section, name = path.split(".")
            static[section].pop(name, None)
        static.pop("seed")
        groups.setdefault(json.dumps(static, sort_keys=True, default=str), []).append(run)
    return list(groups.values())


def _run_compiled(algo: str, runs: list[Run], sweep_dir: Path) -> list[dict[str, Any]]:
    """Trains the runs on a gymnax env, one vmapped program per group of static fields."""
    import jax
    import jax.numpy as jnp

    from kitae.compiled import make_agent_train
    from kitae.config import validate_config
    from kitae.evaluation import make_jax_evaluator

    cls = agent_class(algo)
    traced = _traced_paths(cls)
    results = []
    for group in program_groups(algo, runs):
        spec0 = group[0][3]
        env = make_env(spec0.env, spec0.n_envs)
        configs = [build_config(spec, env) for *_, spec in group]
        for config in configs:
            validate_config(config)
        agent = cls("sweep", configs[0])
        env = agent.as_jax_env(env)  # e.g. the env a planning agent searches with
        n_steps = spec0.train_cfg.n_env_steps
        train = make_agent_train(agent, env, log_interval=max(n_steps // 20, 1))
        hyper = {
            name: jnp.asarray([float(_get(spec, path)) for *_, spec in group], jnp.float32)
            for path, name in traced.items()
            if any(path in member for _, member, _, _ in group)
        }
        keys = jnp.stack([jax.random.PRNGKey(seed) for _, _, seed, _ in group])
        runners, metrics = jax.jit(jax.vmap(train))(keys, hyper)
        evaluator = make_jax_evaluator(agent, env, max(spec0.eval_episodes, 1))
        eval_keys = jnp.stack([jax.random.PRNGKey(10_000 + seed) for _, _, seed, _ in group])
        returns = np.asarray(jax.vmap(evaluator)(runners.agent_state, eval_keys))
        metrics = jax.device_get(metrics)
        for i, (name, member, seed, spec) in enumerate(group):
            run_dir = sweep_dir / f"{name}_s{seed}"
            run_dir.mkdir(parents=True)
            write_spec(run_dir, algo, spec)
            rows = []
            for c in range(metrics.env_steps.shape[1]):
                row = {
                    "step": int(metrics.env_steps[i, c]),
                    "episode_return": float(metrics.episode_return[i, c]),
                    "episode_length": float(metrics.episode_length[i, c]),
                    "n_episodes": float(metrics.n_episodes[i, c]),
                }
                rows.append({k: v if np.isfinite(v) else str(v) for k, v in row.items()})
            _write_rows(run_dir, "train", rows)
            final = {
                "step": n_steps,
                "eval_return_mean": float(returns[i].mean()),
                "eval_return_std": float(returns[i].std()),
            }
            _write_rows(run_dir, "eval", [final])
            results.append(_result(name, member, seed, run_dir, final["eval_return_mean"]))
    return results


def check_sweep_runs(algo: str, runs: Sequence[Run]) -> None:
    """Checks every run of a sweep as ``kitae train`` checks one, before the sweep directory is
    created: run options, env kind and config of each run, and the agent of each group of runs
    that differ only by seed and traced values (:func:`program_groups`) built on its env, with
    the training length checked.

    Raises:
        ValueError: naming the member, its seed and the invalid field.
    """
    from kitae.cli.commands import check_env_kind, check_run_options, check_trainable
    from kitae.config import validate_config

    for group in program_groups(algo, runs):
        spec0 = group[0][3]
        for name, _, seed, spec in group:
            try:
                check_run_options(spec)
                check_env_kind(algo, spec)
            except ValueError as error:
                raise ValueError(f"member {name} seed {seed}: {error}") from None
        if spec0.env.startswith(PETTINGZOO_PREFIX):
            continue
        env = make_env(spec0.env, spec0.n_envs, spec0.vectorization)
        try:
            for name, _, seed, spec in group:
                try:
                    validate_config(build_config(spec, env))
                except ValueError as error:
                    raise ValueError(f"member {name} seed {seed}: {error}") from None
            agent = agent_class(algo)("sweep", build_config(spec0, env))
            try:
                check_trainable(agent, env, spec0.train_cfg.n_env_steps)
            except ValueError as error:
                raise ValueError(f"member {group[0][0]}: {error}") from None
        finally:
            if hasattr(env, "close"):
                env.close()


def _result(name: str, member: dict, seed: int, run_dir: Path, value: float) -> dict[str, Any]:
    return {"member": name, **member, "seed": seed, "run_dir": str(run_dir), "eval_mean": value}


def _run_gymnasium(
    algo: str,
    runs: list[Run],
    sweep_dir: Path,
    workers: int,
) -> list[dict[str, Any]]:
    """Trains the runs with ``kitae train``: in this process, or ``workers`` processes."""
    from kitae.cli.commands import run_training

    prepared = []
    for name, member, seed, spec in runs:
        spec.run_name, spec.runs_dir = f"{name}_s{seed}", str(sweep_dir)
        spec.eval_episodes = max(spec.eval_episodes, 1)
        prepared.append((name, member, seed, spec))
    if workers <= 1:
        out = []
        for name, member, seed, spec in prepared:
            report = run_training(algo, spec, quiet=True)
            out.append(_result(name, member, seed, Path(report["run_dir"]), report["eval_mean"]))
        return out

    spec_dir = sweep_dir / "specs"
    spec_dir.mkdir(parents=True, exist_ok=True)

    def launch(item: Run) -> dict[str, Any]:
        name, member, seed, spec = item
        path = spec_dir / f"{name}_s{seed}.yaml"
        path.write_text(yaml.safe_dump(spec_to_dict(algo, spec), sort_keys=False))
        done = subprocess.run(
            [sys.executable, "-m", "kitae", "train", "--config", str(path), "--quiet"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"run {name} seed {seed} failed:\n{done.stderr[-2000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        return _result(name, member, seed, Path(report["run_dir"]), report["eval_mean"])

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(launch, prepared))


SUBMITIT_CLUSTERS = ("slurm", "local", "debug")
DEFAULT_TIMEOUT_MIN = 240


def import_submitit() -> Any:
    """The ``submitit`` module.

    Raises:
        ImportError: saying how to install it.
    """
    # On import, submitit configures logging with logging.config.dictConfig, which closes every
    # handler already installed (the application's own); without its configuration, its
    # warnings still reach stderr through logging's last-resort handler.
    configure = "submitit" not in sys.modules and "SUBMITIT_LOG_LEVEL" not in os.environ
    if configure:
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "--backend submitit needs the submitit package: pip install 'kitae[cluster]' (or "
            "pip install submitit)."
        ) from None
    finally:
        if configure:
            del os.environ["SUBMITIT_LOG_LEVEL"]
    return submitit


def parse_submitit_params(texts: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as executor parameters (values read as YAML scalars: ``60`` is an int,
    ``gpu`` a string).

    Raises:
        ValueError: for a text without ``=``.
    """
    params: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--submitit-param {text!r}: expected KEY=VALUE, e.g. timeout_min=60.")
        params[key.strip()] = yaml.safe_load(value)
    return params


def run_sweep_job(
    algo: str, runs: list[tuple[str, dict[str, str], int, dict[str, Any]]], sweep_dir: str
) -> list[dict[str, Any]]:
    """One submitit job of a sweep: trains ``runs`` (given as ``(member name, member values,
    seed, spec dict)``) as the sweep itself would, in ``sweep_dir``.

    Returns:
        The runs' rows of ``results.jsonl``.
    """
    from kitae.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    rebuilt: list[Run] = []
    for name, member, seed, data in runs:
        _, spec = parse_spec(algo, dict_to_args(algo, data, f"sweep run {name} seed {seed}"))
        rebuilt.append((name, member, seed, spec))
    if gymnax_id(rebuilt[0][3].env) is not None:
        return _run_compiled(algo, rebuilt, Path(sweep_dir))
    return _run_gymnasium(algo, rebuilt, Path(sweep_dir), workers=1)


def _run_submitit(
    algo: str,
    runs: list[Run],
    sweep_dir: Path,
    cluster: str | None,
    params: dict[str, Any],
) -> list[dict[str, Any]]:
    """Trains the runs as submitit jobs (one per compiled program, or per gymnasium run), waits
    for them and returns their results in submission order.

    Raises:
        ValueError: for executor parameters that submitit does not know.
        RuntimeError: naming the job, its log folder and its error, when a job failed.
    """
    submitit = import_submitit()
    folder = sweep_dir / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    try:
        executor.update_parameters(
            **{"name": f"kitae-sweep-{algo}", "timeout_min": DEFAULT_TIMEOUT_MIN, **params}
        )
    except (NameError, TypeError, ValueError) as error:
        raise ValueError(f"--submitit-param: {error}") from None
    if gymnax_id(runs[0][3].env) is not None:
        units = program_groups(algo, runs)
    else:
        units = [[run] for run in runs]
    jobs = []
    with executor.batch():  # a job array on SLURM
        for unit in units:
            payload = [(n, m, seed, spec_to_dict(algo, spec)) for n, m, seed, spec in unit]
            jobs.append(executor.submit(run_sweep_job, algo, payload, str(sweep_dir.resolve())))
    print(f"submitted {len(jobs)} job(s) to {executor.cluster} ({folder}); waiting.")
    results = []
    for job, unit in zip(jobs, units, strict=True):
        try:
            results += job.result()
        except Exception as error:  # submitit's job errors carry the job's traceback
            names = ", ".join(f"{n} seed {seed}" for n, _, seed, _ in unit)
            raise RuntimeError(
                f"sweep job {job.job_id} ({names}) failed; its logs are in {folder}:\n{error}"
            ) from None
    return results


def summarize(results: list[dict[str, Any]], paths: Sequence[str]) -> list[dict[str, Any]]:
    """Per member: the swept values and the final greedy return's mean, std, min, max over
    seeds, best mean first."""
    table: dict[str, dict[str, Any]] = {}
    for r in results:
        row = table.setdefault(
            r["member"], {**{p: r.get(p) for p in paths}, "member": r["member"], "returns": []}
        )
        row["returns"].append(r["eval_mean"])
    rows = []
    for row in table.values():
        x = np.asarray(row.pop("returns"))
        rows.append(
            {
                **row,
                "seeds": int(x.size),
                "mean": float(x.mean()),
                "std": float(x.std()),
                "min": float(x.min()),
                "max": float(x.max()),
            }
        )
    return sorted(rows, key=lambda r: -r["mean"])


def markdown_table(rows: list[dict[str, Any]], paths: Sequence[str]) -> str:
    """The summary as a Markdown table."""
    head = [*paths, "seeds", "mean", "std", "min", "max"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[p]) for p in paths] + [str(r["seeds"])]
        cells += [f"{r[k]:.2f}" for k in ("mean", "std", "min", "max")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_summary(rows: list[dict[str, Any]], params: Sequence[Param], output: Path) -> Path:
    """Final return per member: against the value for one numeric field, else one bar each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    numeric = len(params) == 1
    if numeric:
        try:
            xs = [float(r[params[0].path]) for r in rows]
        except (TypeError, ValueError):
            numeric = False
    if numeric:
        order = np.argsort(xs)
        x = np.asarray(xs)[order]
        mean = np.asarray([rows[i]["mean"] for i in order])
        std = np.asarray([rows[i]["std"] for i in order])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3)
        if x.min() > 0 and x.max() / x.min() >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(params[0].path)
    else:
        labels = [r["member"] for r in rows]
        ax.bar(range(len(rows)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize="small")
    ax.set_ylabel("final greedy return (mean +/- std over seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def wandb_sweep_config(
    algo: str,
    params: Sequence[Param],
    n_random: int | None,
    base_args: Sequence[str],
) -> dict[str, Any]:
    """The sweep as a Weights & Biases sweep configuration (``wandb sweep wandb_sweep.yaml``):
    each wandb run calls ``kitae train`` with the member's values and logs to wandb.

    Sequence fields (``hidden_sizes``...) are left out: wandb passes each value as one token.
    """
    parameters: dict[str, Any] = {}
    for p in params:
        if p.distribution == "uniform":
            parameters[p.path] = {"distribution": "uniform", "min": p.low, "max": p.high}
        elif p.distribution == "loguniform":
            parameters[p.path] = {"distribution": "log_uniform_values", "min": p.low, "max": p.high}
        elif p.distribution == "randint":
            parameters[p.path] = {
                "distribution": "int_uniform",
                "min": int(p.low),
                "max": int(p.high),
            }
        elif isinstance(_field_default(algo, p.path), (tuple, list)):
            continue  # wandb passes one token per value; a sequence field needs several
        else:
            parameters[p.path] = {"values": list(p.values)}
    return {
        "program": "kitae",
        "method": "grid" if n_random is None else "random",
        "metric": {"name": "eval/eval_return_mean", "goal": "maximize"},
        "parameters": parameters,
        "command": [
            "kitae",
            "train",
            algo,
            *base_args,
            "--train-cfg.loggers",
            "jsonl",
            "wandb",
            "${args}",
        ],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kitae sweep",
        description="Train one algorithm over a grid or a random sample of config values and "
        "seeds; write a run directory per member and seed, a summary table, a plot and a wandb "
        "sweep configuration.",
        epilog="Any other flag is a field of `kitae train ALGO` (see `kitae train ALGO --help`) "
        "and sets the sweep's base value, e.g. --env CartPole-v1 --train-cfg.n-env-steps 20000.",
    )
    parser.add_argument("algo", nargs="?", help="the algorithm (or the config file's)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="PATH=VALUES",
        help="a swept field: PATH=v1,v2,... or PATH=uniform(a,b) / loguniform(a,b) / randint(a,b)",
    )
    parser.add_argument("--random", type=int, default=None, metavar="N", help="draw N members")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per member (0, 1, ...)")
    parser.add_argument("--sweep-seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument("--name", default=None, help="sweep directory name under --runs-dir")
    parser.add_argument(
        "--workers", type=int, default=1, help="parallel processes (gymnasium envs)"
    )
    parser.add_argument("--config", default=None, help="a YAML spec of the base values")
    parser.add_argument(
        "--backend",
        choices=("local", "submitit"),
        default="local",
        help="local: train here (gymnasium runs: --workers processes); submitit: submit jobs "
        "with submitit (SLURM when available, else local processes); needs "
        "pip install 'kitae[cluster]'",
    )
    parser.add_argument(
        "--submitit-cluster",
        choices=SUBMITIT_CLUSTERS,
        default=None,
        help="submitit's executor (default: slurm when sbatch is available, else local)",
    )
    parser.add_argument(
        "--submitit-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a submitit executor parameter, e.g. timeout_min=60 (default "
        f"{DEFAULT_TIMEOUT_MIN}), gpus_per_node=1, slurm_partition=gpu",
    )
    return parser


def run_sweep(argv: Sequence[str]) -> dict[str, Any]:
    """Runs ``kitae sweep`` (see the module docstring) and prints the summary table.

    Returns:
        ``sweep_dir``, ``rows`` (the summary) and ``results`` (one per run).
    """
    options, rest = build_parser().parse_known_args(argv)
    if options.algo is None and options.config is None:
        raise ValueError("name an algorithm, or give --config FILE.")
    algo, base = parse_spec(options.algo, rest, config_file=options.config)
    if not options.param:
        raise ValueError("give at least one --param PATH=VALUES to sweep.")
    if options.seeds < 1:
        raise ValueError(f"seeds={options.seeds} is invalid: it must be >= 1.")
    if options.random is not None and options.random < 1:
        raise ValueError(f"random={options.random} is invalid: it must be >= 1.")
    if options.workers < 1:
        raise ValueError(f"workers={options.workers} is invalid: it must be >= 1.")
    submitit_params = parse_submitit_params(options.submitit_param)
    if options.backend == "submitit":
        import_submitit()
        if options.workers > 1:
            raise ValueError("--workers is for --backend local; submitit runs one job per run.")
    elif options.submitit_cluster is not None or options.submitit_param:
        raise ValueError("--submitit-cluster and --submitit-param need --backend submitit.")
    params = [parse_param(algo, text) for text in options.param]
    paths = [p.path for p in params]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a field is swept twice: {paths}.")
    chosen = members(params, options.random, options.sweep_seed)

    if base.n_envs is None:
        base.n_envs = agent_class(algo).default_n_envs
    runs = []
    for member in chosen:
        name = member_name(member)
        extra = member_args(algo, member)
        for seed in range(options.seeds):
            spec = _spec_with_seed(algo, [*rest, *extra], options.config, seed)
            if spec.n_envs is None:
                spec.n_envs = base.n_envs
            runs.append((name, member, seed, spec))

    check_sweep_runs(algo, runs)
    env_slug = re.sub(r"[^A-Za-z0-9._-]", "-", base.env)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    sweep_dir = Path(base.runs_dir) / (options.name or f"sweep_{algo}_{env_slug}_{stamp}")
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise FileExistsError(f"sweep directory {sweep_dir} already exists: choose another --name.")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "wandb_sweep.yaml").write_text(
        yaml.safe_dump(wandb_sweep_config(algo, params, options.random, rest), sort_keys=False)
    )
    if options.backend == "submitit":
        results = _run_submitit(algo, runs, sweep_dir, options.submitit_cluster, submitit_params)
    elif gymnax_id(base.env) is not None:
        results = _run_compiled(algo, runs, sweep_dir)
    else:
        results = _run_gymnasium(algo, runs, sweep_dir, options.workers)
    _write_rows(sweep_dir, "results", results)
    rows = summarize(results, paths)
    table = markdown_table(rows, paths)
    (sweep_dir / "summary.md").write_text(table)
    try:
        plot_summary(rows, params, sweep_dir / "sweep.png")
    except ImportError:
        print("matplotlib is not installed: no sweep.png (pip install 'kitae[plot]').")
    print(table, end="")
    print(json.dumps({"sweep_dir": str(sweep_dir), "best": rows[0]}))
    return {"sweep_dir": sweep_dir, "rows": rows, "results": results}
