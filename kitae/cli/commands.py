"""``kitae train``, ``kitae resume`` and ``kitae eval``: one run from start to evaluation.

A run lives in ``<runs_dir>/<run_name>/``: ``config.yaml`` (the resolved command-line spec,
readable by ``--config``), the agent's ``config.json``, the logger's files, ``checkpoints/``
(always one at the end of training) and ``videos/``. Nothing is written outside it.

``kitae train ... --distributed`` (see :func:`pop_distributed_options`) trains a compiled-path
run data parallel over every device of every process (:mod:`kitae.distributed`): every process
runs the same command with its own process id, and only process 0 writes the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import tyro
from tyro.conf import Positional

from kitae import guards
from kitae.cli.runs import (
    GYMNAX_PREFIX,
    PETTINGZOO_PREFIX,
    agent_class,
    algorithm,
    build_config,
    check_run_name,
    gymnax_id,
    make_env,
    read_spec,
    run_directory,
    write_spec,
)
from kitae.config import check_int, check_seed

if TYPE_CHECKING:
    from kitae.distributed import ProcessSettings


def check_run_options(spec: Any) -> None:
    """Raises ``ValueError`` naming the run option that is invalid."""
    check_int("n_envs", spec.n_envs, 1)
    check_seed("seed", spec.seed)
    check_int("eval_episodes", spec.eval_episodes, 0)
    check_int("video_episodes", spec.video_episodes, 1)
    check_run_name(spec.run_name)
    if spec.env.startswith(PETTINGZOO_PREFIX) and spec.video:
        raise ValueError("video=True is for gymnasium envs; drop --video for a PettingZoo env.")
    if spec.video and gymnax_id(spec.env) is not None:
        raise ValueError(
            f"video=True needs a gymnasium env that renders frames; env={spec.env!r} is a gymnax "
            "env: drop --video."
        )


def check_env_kind(algo: str, spec: Any) -> None:
    """Refuses, before the env is built, a gymnasium or PettingZoo env for an algorithm that
    trains on JAX envs only (:attr:`~kitae.cli.runs.Algorithm.jax_envs_only`).

    Raises:
        ValueError: naming ``env`` and the env ids the algorithm takes.
    """
    if algorithm(algo).jax_envs_only and gymnax_id(spec.env) is None:
        raise ValueError(
            f"env={spec.env!r} is not a JAX env: {algo} searches over the env's own dynamics, "
            f"so it trains on gymnax envs only; use e.g. --env gymnax:{spec.env.split(':')[-1]}."
        )


def check_trainable(agent: Any, env: Any, n_env_steps: int) -> None:
    """The checks ``agent.train(env, n_env_steps)`` makes before its first step (see
    :meth:`kitae.host_loop.GymnasiumLoop.check_trainable`), made before a run directory exists.
    """
    agent.check_trainable(env, n_env_steps)


def open_run_directory(agent: Any, run_dir: Path) -> None:
    """Gives ``agent`` (built without a run directory) the logger of ``run_dir``, as building it
    with ``run_dir=`` does: creates the directory and writes ``config.json``."""
    from kitae.base import config_to_dict
    from kitae.logger import Logger

    agent.logger = Logger(run_dir, backends=agent.config.train_cfg.loggers)
    agent.logger.write_config(config_to_dict(agent.config))


def prepare_run(algo: str, spec: Any, env: Any) -> tuple[Any, Path]:
    """Builds the agent of ``spec`` on ``env`` and checks everything a run needs, writing
    nothing: the config, the env, the training length, the run directory's name.

    Returns:
        ``(agent, run_dir)``: the agent, without a run directory yet (see
        :func:`open_run_directory`), and the directory the run will write.

    Raises:
        ValueError: naming the first invalid field.
        FileExistsError: if an explicit ``run_name`` already exists.
    """
    from kitae.config import validate_config

    config = build_config(spec, env)
    validate_config(config)
    run_dir = run_directory(algo, spec)
    agent = agent_class(algo)(run_dir.name, config)
    check_trainable(agent, env, config.train_cfg.n_env_steps)
    return agent, run_dir


def evaluate_run(
    agent: Any,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    video: bool = False,
    video_episodes: int = 1,
    video_dir: Path | None = None,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Greedy evaluation of ``agent`` on ``env_id`` (gymnasium or gymnax), logged to the agent's
    ``eval`` stream, optionally with videos.

    Returns:
        ``eval_mean``, ``eval_std``, ``eval_episodes`` and ``videos`` (paths).
    """
    from kitae.evaluation import evaluate, evaluate_jax, record_video

    jax_id = gymnax_id(env_id)
    if jax_id is not None:
        returns = evaluate_jax(agent, jax_id, n_episodes=episodes, seed=seed)
    else:
        returns = evaluate(agent, env_id, n_episodes=episodes, seed=seed, progress_bar=progress_bar)
    result: dict[str, Any] = {
        "eval_mean": float(np.mean(returns)),
        "eval_std": float(np.std(returns)),
        "eval_episodes": int(episodes),
    }
    agent.logger.log(
        "eval",
        agent.env_steps,
        {"eval_return_mean": result["eval_mean"], "eval_return_std": result["eval_std"]},
    )
    agent.logger.flush()
    if video:
        if video_dir is None:
            raise ValueError("video=True needs a run directory for the videos.")
        paths = record_video(
            agent,
            env_id,
            video_dir,
            video_episodes,
            seed=seed,
            name_prefix=f"eval-step{agent.env_steps}",
        )
        result["videos"] = [str(p) for p in paths]
    return result


def _report(algo: str, spec: Any, run_dir: Path, summary: dict, result: dict) -> dict[str, Any]:
    report = {
        "algo": algo,
        "env": spec.env,
        "seed": spec.seed,
        "run_dir": str(run_dir),
        "env_steps": int(summary.get("env_steps", 0)),
        "n_updates": int(summary.get("n_updates", 0)),
        "train_s": round(float(summary.get("train_s", 0.0)), 2),
        **result,
    }
    if "eval_mean" in result:
        print(
            f"greedy return over {result['eval_episodes']} episodes: "
            f"{result['eval_mean']:.1f} +/- {result['eval_std']:.1f}"
        )
    print(json.dumps(report))
    return report


@guards.interruptible("train")
def run_training(
    algo: str,
    spec: Any,
    *,
    quiet: bool | None = None,
    distributed: ProcessSettings | None = None,
) -> dict[str, Any]:
    """Trains a new run of ``spec`` in its run directory, saves it, evaluates it.

    Everything is validated (run options, env id, config, the agent on the env, the training
    length, run directory) before the directory is created or anything is trained.

    Args:
        algo: the algorithm name.
        spec: the run spec (see :mod:`kitae.cli.runs`).
        quiet: no progress bars (default: ``spec.quiet``).
        distributed: train data parallel across processes with these settings (see
            :func:`run_distributed`).

    Returns:
        The printed report: run directory, counters, ``train_s``, ``eval_mean``/``eval_std``.

    Raises:
        ValueError: naming the first invalid field.
        FileExistsError: if an explicit ``run_name`` already exists.
    """
    if distributed is not None:
        return run_distributed(algo, spec, distributed, quiet=quiet)
    cls = agent_class(algo)
    quiet = spec.quiet if quiet is None else quiet
    if spec.n_envs is None:
        spec.n_envs = cls.default_n_envs
    check_run_options(spec)
    check_env_kind(algo, spec)
    if spec.env.startswith(PETTINGZOO_PREFIX):
        return _run_multi_agent(algo, spec, quiet)
    env = make_env(spec.env, spec.n_envs, spec.vectorization)
    try:
        agent, run_dir = prepare_run(algo, spec, env)
        if quiet:
            agent.config.train_cfg.progress_bar = False
        open_run_directory(agent, run_dir)
        write_spec(run_dir, algo, spec)
        summary = agent.train(env)
    finally:
        if hasattr(env, "close"):
            env.close()
    agent.save()
    guards.exit_if_stopped(agent, run_dir)
    result = _evaluate_spec(agent, spec, run_dir, quiet)
    agent.logger.close()
    return _report(algo, spec, run_dir, summary, result)


def pop_distributed_options(args: list[str]) -> ProcessSettings | None:
    """Removes ``--distributed`` and its process settings from command-line ``args``.

    ``--coordinator-address HOST:PORT``, ``--num-processes N`` and ``--process-id I`` override
    ``KITAE_COORDINATOR_ADDRESS``, ``KITAE_NUM_PROCESSES`` and ``KITAE_PROCESS_ID``; with none
    of them, a SLURM allocation is detected (see :func:`kitae.distributed.resolve_settings`).

    Returns:
        The resolved settings with ``--distributed``, else ``None``.

    Raises:
        ValueError: for incomplete or invalid settings, or settings without ``--distributed``.
    """
    from kitae.cli import _pop_option
    from kitae.distributed import resolve_settings

    enabled = "--distributed" in args
    args[:] = [a for a in args if a != "--distributed"]
    values = {
        name: _pop_option(args, f"--{name.replace('_', '-')}")
        for name in ("coordinator_address", "num_processes", "process_id")
    }
    if not enabled:
        given = [f"--{k.replace('_', '-')}" for k, v in values.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} set the processes of --distributed: add it.")
        return None
    return resolve_settings(**values)


def check_compiled_env_id(env_id: str) -> None:
    """Refuses, before JAX starts, an env id that does not train on the compiled path
    (gymnasium and PettingZoo ids); gymnax ids without their prefix pass here and are checked
    once the env is built."""
    from kitae.envs.atari import is_atari_id
    from kitae.envs.brax import is_brax_id

    if env_id.startswith(GYMNAX_PREFIX) or is_brax_id(env_id):
        return
    import gymnasium as gym

    if env_id.startswith(PETTINGZOO_PREFIX) or is_atari_id(env_id) or env_id in gym.registry:
        raise ValueError(
            f"--distributed trains on the compiled path (gymnax, Brax, Playground envs); "
            f"env={env_id!r} is not a JAX env: use e.g. --env gymnax:CartPole-v1, or drop "
            "--distributed."
        )


def run_distributed(
    algo: str, spec: Any, settings: ProcessSettings, *, quiet: bool | None = None
) -> dict[str, Any]:
    """``kitae train ... --distributed``: one run trained data parallel over every device of
    every process (:func:`kitae.distributed.train_agent_data_parallel`).

    Every process runs the same command. The run options, the env id and the checkpoint and
    evaluation frequencies are checked before the processes connect; then process 0 creates the
    run directory (a failure there, or in building another process's agent, stops every
    process before training), and after training it
    alone writes the logs, the final checkpoint (without replay buffer) and the evaluation.
    ``n_envs`` and ``train_cfg.n_env_steps`` are per device: ``D`` devices collect
    ``D * n_env_steps`` transitions (the report's ``total_env_steps``).

    Returns:
        Process 0: the printed report (with ``n_processes``, ``n_replicas`` and
        ``total_env_steps``); the other processes: the training summary, printing nothing.

    Raises:
        ValueError: for a gymnasium or PettingZoo env, intermediate checkpoints or evaluations
            (``train_cfg.save_frequency`` / ``eval_frequency``), or an invalid field.
        FileExistsError: if an explicit ``run_name`` already exists.
    """
    import jax

    from kitae import distributed
    from kitae.config import validate_config
    from kitae.envs.jax_env import is_jax_env

    cls = agent_class(algo)
    quiet = spec.quiet if quiet is None else quiet
    if spec.n_envs is None:
        spec.n_envs = cls.default_n_envs
    check_run_options(spec)
    check_env_kind(algo, spec)
    check_compiled_env_id(spec.env)
    for name in ("save_frequency", "eval_frequency"):
        if getattr(spec.train_cfg, name) != -1:
            raise ValueError(
                f"train_cfg.{name}={getattr(spec.train_cfg, name)}: --distributed trains in one "
                f"program and saves and evaluates at its end only; set --train-cfg.{name} -1."
            )
    distributed.initialize(settings)
    env = make_env(spec.env, spec.n_envs, spec.vectorization)
    if not is_jax_env(env):
        raise ValueError(f"--distributed needs a JAX env; env={spec.env!r} is a gymnasium env.")
    config = build_config(spec, env)
    validate_config(config)
    main = distributed.is_main_process()
    run_dir, error = None, None
    try:
        if main:
            run_dir = run_directory(algo, spec)
            agent = cls(run_dir.name, config)
            check_trainable(agent, env, config.train_cfg.n_env_steps)
            open_run_directory(agent, run_dir)
            write_spec(run_dir, algo, spec)
        else:
            agent = cls(f"process_{jax.process_index()}", config)
            check_trainable(agent, env, config.train_cfg.n_env_steps)
    except Exception as err:  # every process learns of it before the first collective
        error = err
    if not distributed.all_processes_ok(error is None):
        if error is not None:
            raise error
        raise ValueError(
            "another process could not start the run (see its error); nothing was trained."
        )
    summary = distributed.train_agent_data_parallel(agent, env)
    if not main:
        return summary
    agent.save(include_buffer=False)
    result = _evaluate_spec(agent, spec, run_dir, quiet)
    agent.logger.close()
    extra = {k: summary[k] for k in ("n_processes", "n_replicas", "total_env_steps")}
    return _report(algo, spec, run_dir, summary, {**extra, **result})


def _run_multi_agent(algo: str, spec: Any, quiet: bool) -> dict[str, Any]:
    """Trains ``spec`` on a PettingZoo parallel env with :class:`kitae.multiagent.MultiAgentTrainer`
    and evaluates the team and per-agent greedy returns (logged to the ``eval`` stream); the
    config and the training length are checked before the run directory is written."""
    from kitae.multiagent import MultiAgentTrainer

    env = make_env(spec.env, 1)
    run_dir = run_directory(algo, spec)

    def build(parent: Path | None) -> MultiAgentTrainer:
        return MultiAgentTrainer(
            env,
            agent_class(algo),
            n_steps=spec.train_cfg.n_env_steps,
            grouping=spec.grouping,
            agent_id=spec.agent_id,
            seed=spec.seed,
            algo_params=spec.algo_params,
            update_cfg=spec.update_cfg,
            train_cfg=spec.train_cfg,
            run_name=run_dir.name,
            run_dir=parent,
        )

    # a trainer that writes nothing checks the groups' training length first (train checks it)
    build(None)._check_updates(spec.train_cfg.n_env_steps)
    trainer = build(run_dir.parent)
    write_spec(run_dir, algo, spec)
    summary = trainer.train(progress_bar=not quiet)
    summary["n_updates"] = sum(summary["n_updates"].values())
    result: dict[str, Any] = {}
    if spec.eval_episodes:
        returns = trainer.evaluate(
            make_env(spec.env, 1), spec.eval_episodes, seed=10_000 + spec.seed
        )
        result = {
            "eval_mean": float(np.mean(returns["return"])),
            "eval_std": float(np.std(returns["return"])),
            "eval_episodes": int(spec.eval_episodes),
            **{
                f"eval_mean/{name[len('return/') :]}": float(np.mean(values))
                for name, values in returns.items()
                if name.startswith("return/")
            },
        }
        trainer.logger.log(
            "eval",
            trainer.env_steps,
            {
                "eval_return_mean": result["eval_mean"],
                "eval_return_std": result["eval_std"],
                **{
                    k.replace("eval_mean/", "eval_return_mean/"): v
                    for k, v in result.items()
                    if "/" in k
                },
            },
        )
    trainer.logger.close()
    return _report(algo, spec, run_dir, summary, result)


def _evaluate_spec(agent: Any, spec: Any, run_dir: Path, quiet: bool) -> dict[str, Any]:
    if spec.eval_episodes == 0:
        return {}
    return evaluate_run(
        agent,
        spec.env,
        episodes=spec.eval_episodes,
        seed=10_000 + spec.seed,
        video=spec.video,
        video_episodes=spec.video_episodes,
        video_dir=run_dir / "videos",
        progress_bar=not quiet,
    )


def _check_single_agent(spec: Any, command: str) -> None:
    if spec.env.startswith(PETTINGZOO_PREFIX):
        raise ValueError(
            f"kitae {command} works on single-agent runs; {spec.env} is a multi-agent run, which "
            "writes no checkpoint of its loop: train it again with kitae train."
        )


@dataclass
class ResumeArgs:
    """Continue a run of ``kitae train`` from its latest checkpoint, then evaluate it.

    Attributes:
        run_dir: the run directory (``<runs_dir>/<run_name>``).
        steps: transitions to train for (default: up to the run's ``train_cfg.n_env_steps``).
        eval_episodes: greedy evaluation episodes at the end (default: the run's).
        quiet: no progress bars.
        checkpoint: the checkpoint to continue from, a name in ``RUN_DIR/checkpoints`` such as
            ``step_000004096`` (default: the latest); e.g. the one before a damaged checkpoint.
    """

    run_dir: Annotated[Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    steps: int | None = None
    eval_episodes: int | None = None
    quiet: bool = False
    checkpoint: str | None = None


def named_checkpoint(run_dir: Path, name: str) -> Path:
    """``run_dir/checkpoints/<name>``, a complete checkpoint of the run.

    Raises:
        ValueError: naming ``--checkpoint`` and the run's checkpoints, if ``name`` is not one.
    """
    root = run_dir / "checkpoints"
    available = sorted(p.name for p in root.glob("step_*") if (p / "meta.json").is_file())
    if Path(name).name != name or not (root / name / "meta.json").is_file():
        raise ValueError(
            f"--checkpoint={name!r} is not a checkpoint of {run_dir}: use one of "
            f"{', '.join(available) or '(none: the run has no complete checkpoint)'}."
        )
    return root / name


@guards.interruptible("resume")
def resume_run(args: ResumeArgs) -> dict[str, Any]:
    """Resumes ``args.run_dir``: the agent, counters, schedules, keys and (when saved) its replay
    buffer come from the checkpoint (see :mod:`kitae.checkpoint`); logs are appended."""
    run_dir = Path(args.run_dir)
    algo, spec = read_spec(run_dir)
    _check_single_agent(spec, "resume")
    if args.eval_episodes is not None:
        check_int("eval_episodes", args.eval_episodes, 0)
        spec.eval_episodes = args.eval_episodes
    if args.steps is not None:
        check_int("steps", args.steps, 1)
    cls = agent_class(algo)
    agent = cls.resume(
        run_dir if args.checkpoint is None else named_checkpoint(run_dir, args.checkpoint)
    )
    steps = args.steps
    if steps is None:
        steps = agent.config.train_cfg.n_env_steps - agent.env_steps
    summary: dict[str, Any] = {"env_steps": agent.env_steps, "n_updates": 0, "train_s": 0.0}
    if steps > 0:
        env = make_env(spec.env, agent.config.env_cfg.n_envs, spec.vectorization)
        try:
            summary = agent.train(env, steps, progress_bar=not args.quiet)
        finally:
            if hasattr(env, "close"):
                env.close()
        agent.save()
        guards.exit_if_stopped(agent, run_dir)
    else:
        print(f"{run_dir} already trained {agent.env_steps} transitions; evaluating only.")
    result = _evaluate_spec(agent, spec, run_dir, args.quiet)
    agent.logger.close()
    return _report(algo, spec, run_dir, summary, result)


@dataclass
class EvalArgs:
    """Evaluate the greedy policy of a run's latest checkpoint (or of a given checkpoint).

    Attributes:
        run_dir: the run directory, or one checkpoint directory inside it.
        episodes: evaluation episodes.
        seed: episode ``i`` is reset with ``seed + i`` (default: ``10000 + the run's seed``).
        video: record episodes as mp4 in ``<run>/videos/`` (gymnasium envs; needs
            ``pip install 'kitae[video]'``).
        video_episodes: how many of the episodes to record.
        quiet: no progress bar.
    """

    run_dir: Annotated[Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    episodes: int = 20
    seed: int | None = None
    video: bool = False
    video_episodes: int = 1
    quiet: bool = False


def eval_run(args: EvalArgs) -> dict[str, Any]:
    """Loads the run's parameters for inference, evaluates them and logs the result to the run's
    ``eval`` stream."""
    from kitae.checkpoint import find_checkpoint, read_meta
    from kitae.logger import Logger

    if (Path(args.run_dir) / "config.yaml").is_file():
        _check_single_agent(read_spec(args.run_dir)[1], "eval")
    checkpoint = find_checkpoint(args.run_dir)
    run_dir = checkpoint.parent.parent
    algo, spec = read_spec(run_dir)
    check_int("episodes", args.episodes, 1)
    check_int("video_episodes", args.video_episodes, 1)
    spec.eval_episodes, spec.video, spec.video_episodes = (
        args.episodes,
        args.video,
        args.video_episodes,
    )
    check_run_options(spec)
    cls = agent_class(algo)
    agent = cls.load_for_inference(checkpoint)
    loggers = tuple(b for b in agent.config.train_cfg.loggers if b not in ("wandb", "console"))
    agent.logger = Logger(run_dir, resume=True, backends=loggers or ("jsonl",))
    seed = 10_000 + spec.seed if args.seed is None else args.seed
    result = evaluate_run(
        agent,
        spec.env,
        episodes=args.episodes,
        seed=seed,
        video=args.video,
        video_episodes=args.video_episodes,
        video_dir=run_dir / "videos",
        progress_bar=not args.quiet,
    )
    agent.logger.close()
    meta = read_meta(checkpoint)
    return _report(algo, spec, run_dir, {"env_steps": meta["env_steps"]}, result)
