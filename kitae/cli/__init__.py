"""The ``kitae`` command line.

::

    kitae train ALGO [--env ENV_ID] [--seed S] [--update-cfg.learning-rate 3e-4 ...]
    kitae train [ALGO] --config FILE.yaml [field flags override the file]
    kitae train ALGO --env gymnax:ID --distributed [--coordinator-address H:P --num-processes N
                --process-id I]   (data parallel over every process's devices, kitae.distributed)
    kitae resume RUN_DIR [--steps N]
    kitae eval RUN_DIR [--episodes N] [--video]
    kitae plot RUN_DIR [RUN_DIR ...] -o curve.png
    kitae sweep ALGO --param update_cfg.learning_rate=1e-3,3e-4 [--random N] [--seeds K]

Training commands keep JAX's compiled programs in a persistent cache
(:mod:`kitae.compilation_cache`; ``KITAE_COMPILATION_CACHE=0`` turns it off), so running the same
command again skips compilation.

``kitae train ALGO --help`` lists every field of the algorithm's config with its default and
documentation (generated from the config dataclasses with tyro). Bad values are refused before
anything is trained, with a message naming the field.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import tyro
from tyro.conf import Positional

from kitae.cli.runs import ALGORITHMS

COMMANDS = {
    "train": "train an agent in a new run directory, save it, print its greedy return",
    "resume": "continue a run from its latest checkpoint",
    "eval": "evaluate a run's checkpoint (optionally recording videos)",
    "plot": "plot learning curves of run directories (mean and spread over seeds)",
    "sweep": "train over a grid or random sample of config values and seeds",
}


def _usage() -> str:
    lines = ["usage: kitae COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<8}{text}" for name, text in COMMANDS.items()]
    lines += ["", f"algorithms: {', '.join(ALGORITHMS)}", "", "kitae COMMAND --help for details."]
    return "\n".join(lines)


def _train_usage() -> str:
    from kitae.cli.runs import algorithm
    from kitae.zoo import find_tuned

    lines = [
        "usage: kitae train ALGO [--config FILE.yaml] [FIELD FLAGS]",
        "",
        "algorithms (default env / transitions):",
    ]
    for name in ALGORITHMS:
        entry = algorithm(name)
        tuned = find_tuned(name, entry.env)
        steps = (tuned.train_cfg if tuned else {}).get("n_env_steps", entry.n_env_steps)
        lines.append(f"  {name:<7}{entry.env} / {steps}")
    lines += [
        "",
        "kitae train ALGO --help lists every field flag with its default and doc; the defaults",
        "of an (ALGO, --env) pair in kitae.zoo.TUNED (or of its family in TUNED_PATTERNS:",
        "ALE/*, *-MinAtar) are its tuned settings.",
        "",
        "--distributed trains a gymnax/Brax env data parallel over every device of every",
        "process (--coordinator-address HOST:PORT --num-processes N --process-id I, or",
        "KITAE_COORDINATOR_ADDRESS/KITAE_NUM_PROCESSES/KITAE_PROCESS_ID, or SLURM's srun).",
    ]
    return "\n".join(lines)


def _pop_option(args: list[str], name: str) -> str | None:
    """Removes ``name VALUE`` or ``name=VALUE`` from ``args``; returns VALUE."""
    for i, token in enumerate(args):
        if token == name:
            if i + 1 >= len(args):
                raise ValueError(f"{name} needs a value.")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if token.startswith(name + "="):
            del args[i]
            return token.split("=", 1)[1]
    return None


def train_main(argv: Sequence[str]) -> dict:
    """``kitae train``."""
    from kitae.cli.commands import pop_distributed_options, run_training
    from kitae.cli.runs import parse_spec

    args = list(argv)
    algo = args.pop(0) if args and not args[0].startswith("-") else None
    config_file = _pop_option(args, "--config")
    distributed = pop_distributed_options(args)
    if algo is None and config_file is None:
        print(_train_usage())
        if any(a in ("-h", "--help") for a in args):
            raise SystemExit(0)
        raise SystemExit(2)
    algo, spec = parse_spec(algo, args, config_file=config_file)
    return run_training(algo, spec, distributed=distributed)


@dataclass
class PlotArgs:
    """Plot learning curves of run directories: runs that differ only by seed form one curve
    (their mean, with the spread shaded); labels name the fields that differ between curves.

    Attributes:
        run_dirs: run directories (e.g. ``runs/*``).
        output: the image file (PNG unless the suffix says otherwise).
        metric: ``return`` (training episodes), ``eval`` (greedy evaluations) or
            ``<stream>/<column>`` of the runs' logs.
        window: smoothing window in logged points.
        spread: ``std``, ``minmax`` or ``none``.
        title: figure title (default: the metric).
    """

    run_dirs: Annotated[Positional[tuple[str, ...]], tyro.conf.arg(metavar="RUN_DIR")]
    output: str = "curve.png"
    metric: str = "return"
    window: int = 10
    spread: str = "std"
    title: str | None = None


def _tyro(cls: type, argv: Sequence[str], prog: str):
    import tyro

    return tyro.cli(cls, args=list(argv), prog=prog)


def plot_main(argv: Sequence[str]) -> str:
    """``kitae plot``."""
    from kitae.plotting import plot_runs

    args = list(argv)
    for i, token in enumerate(args):  # the usual short form of --output
        if token == "-o":
            args[i] = "--output"
    options = _tyro(PlotArgs, args, "kitae plot")
    path = plot_runs(
        options.run_dirs,
        options.output,
        metric=options.metric,
        window=options.window,
        spread=options.spread,
        title=options.title,
    )
    print(f"wrote {path}")
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a ``kitae`` command; returns the exit status (errors are printed, status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"kitae: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        if command in ("train", "resume", "eval", "sweep"):
            from kitae.compilation_cache import enable_compilation_cache

            enable_compilation_cache()
        if command == "train":
            train_main(rest)
        elif command == "resume":
            from kitae.cli.commands import ResumeArgs, resume_run

            resume_run(_tyro(ResumeArgs, rest, "kitae resume"))
        elif command == "eval":
            from kitae.cli.commands import EvalArgs, eval_run

            eval_run(_tyro(EvalArgs, rest, "kitae eval"))
        elif command == "plot":
            plot_main(rest)
        else:
            from kitae.cli.sweep import run_sweep

            run_sweep(rest)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as error:
        print(f"kitae {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


__all__ = ["COMMANDS", "main", "train_main", "plot_main"]
