"""``kitae train``, ``kitae resume`` and ``kitae eval``: one run from start to evaluation.

A run lives in ``<runs_dir>/<run_name>/``: ``config.yaml`` (the resolved command-line spec,
readable by ``--config``), the agent's ``config.json``, the logger's files, ``checkpoints/``
(always one at the end of training) and ``videos/``. Nothing is written outside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro
from tyro.conf import Positional

from kitae.cli.runs import (
    PETTINGZOO_PREFIX,
    agent_class,
    build_config,
    gymnax_id,
    make_env,
    read_spec,
    run_directory,
    write_spec,
)
from kitae.config import check_int


def check_run_options(spec: Any) -> None:
    """Raises ``ValueError`` naming the run option that is invalid."""
    check_int("n_envs", spec.n_envs, 1)
    check_int("seed", spec.seed, 0)
    check_int("eval_episodes", spec.eval_episodes, 0)
    check_int("video_episodes", spec.video_episodes, 1)
    if spec.env.startswith(PETTINGZOO_PREFIX) and spec.video:
        raise ValueError("video=True is for gymnasium envs; drop --video for a PettingZoo env.")
    if spec.video and gymnax_id(spec.env) is not None:
        raise ValueError(
            f"video=True needs a gymnasium env that renders frames; env={spec.env!r} is a gymnax "
            "env: drop --video."
        )


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


def run_training(algo: str, spec: Any, *, quiet: bool | None = None) -> dict[str, Any]:
    """Trains a new run of ``spec`` in its run directory, saves it, evaluates it.

    Everything is validated (config, run options, env id, run directory) before the directory
    is created or anything is trained.

    Args:
        algo: the algorithm name.
        spec: the run spec (see :mod:`kitae.cli.runs`).
        quiet: no progress bars (default: ``spec.quiet``).

    Returns:
        The printed report: run directory, counters, ``train_s``, ``eval_mean``/``eval_std``.

    Raises:
        ValueError: naming the first invalid field.
        FileExistsError: if an explicit ``run_name`` already exists.
    """
    from kitae.config import validate_config

    cls = agent_class(algo)
    quiet = spec.quiet if quiet is None else quiet
    if spec.n_envs is None:
        spec.n_envs = cls.default_n_envs
    check_run_options(spec)
    if spec.env.startswith(PETTINGZOO_PREFIX):
        return _run_multi_agent(algo, spec, quiet)
    env = make_env(spec.env, spec.n_envs, spec.vectorization)
    try:
        config = build_config(spec, env)
        if quiet:
            config.train_cfg.progress_bar = False
        validate_config(config)
        run_dir = run_directory(algo, spec)
        agent = cls(run_dir.name, config, run_dir=run_dir.parent)
        write_spec(run_dir, algo, spec)
        summary = agent.train(env)
    finally:
        if hasattr(env, "close"):
            env.close()
    agent.save()
    result = _evaluate_spec(agent, spec, run_dir, quiet)
    agent.logger.close()
    return _report(algo, spec, run_dir, summary, result)


def _run_multi_agent(algo: str, spec: Any, quiet: bool) -> dict[str, Any]:
    """Trains ``spec`` on a PettingZoo parallel env with :class:`kitae.multiagent.MultiAgentTrainer`
    and evaluates the team and per-agent greedy returns (logged to the ``eval`` stream)."""
    from kitae.multiagent import MultiAgentTrainer

    env = make_env(spec.env, 1)
    run_dir = run_directory(algo, spec)
    trainer = MultiAgentTrainer(
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
        run_dir=run_dir.parent,
    )
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
    """

    run_dir: Annotated[Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    steps: int | None = None
    eval_episodes: int | None = None
    quiet: bool = False


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
    agent = cls.resume(run_dir)
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
