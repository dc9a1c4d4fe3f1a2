"""Saving agents: what a checkpoint of an agent (or of a vmapped compiled run) holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

import kitae
from kitae.checkpoint.store import FORMAT_VERSION, _json_bytes, _pack, write_checkpoint
from kitae.config import (
    AlgoConfig,
    class_path,
    config_to_json,
)
from kitae.envs.vector import EpisodeTracker
from kitae.modules.train_state import TrainState
from kitae.schedules import off_policy_min_transitions, off_policy_update_count
from kitae.types import Agent

LOOP_FIELDS = (
    "train_cfg.progress_bar",
    "train_cfg.log_frequency",
    "train_cfg.save_frequency",
    "train_cfg.save_buffer",
    "train_cfg.keep_checkpoints",
    "train_cfg.actor_learner",
    "train_cfg.max_staleness",
    "train_cfg.actor_queue_steps",
)
"""Config fields that may differ between a checkpoint and the agent restoring it."""


# ---- what a checkpoint holds ---------------------------------------------------------------------


@dataclasses.dataclass
class _Snapshot:
    """Everything one checkpoint writes, gathered on the host side."""

    agent_class: str
    run_name: str
    config: AlgoConfig
    state: Any
    env_steps: int
    n_updates: int
    loop: dict[str, Any]
    counters: dict[str, Any]
    buffer: Any = None
    runner: dict[str, Any] | None = None
    runner_buffer: Any = None


def _is_train_state(node: Any) -> bool:
    return isinstance(node, TrainState)


def params_of(state: Any) -> Any:
    """``state`` with every :class:`TrainState` replaced by its ``params``."""
    return jax.tree.map(lambda s: s.params, state, is_leaf=_is_train_state)


def _runner_payload(runner: Any, include_buffer: bool) -> tuple[dict[str, Any], Any]:
    """The compiled carry as ``({"hyperparams", "leaves"}, buffer_state or None)``; the agent
    state is saved on its own and the env states as leaves keyed by their path."""
    rest = runner.replace(agent_state=None, buffer_state=None, hyperparams={})
    paths, _ = jax.tree_util.tree_flatten_with_path(rest)
    leaves = {jax.tree_util.keystr(path): np.asarray(x) for path, x in paths}
    payload = {"hyperparams": jax.device_get(dict(runner.hyperparams)), "leaves": leaves}
    return payload, (runner.buffer_state if include_buffer else None)


def _tracker_arrays(tracker: EpisodeTracker) -> dict[str, np.ndarray]:
    finished = tracker.finished
    return {
        "returns": np.asarray(tracker.returns),
        "lengths": np.asarray(tracker.lengths),
        "recent_returns": np.asarray(list(tracker.recent_returns), np.float64),
        "finished_returns": np.asarray([r for r, _ in finished], np.float64),
        "finished_lengths": np.asarray([n for _, n in finished], np.int64),
    }


def _agent_snapshot(
    agent: Agent, include_buffer: bool, runner: Any = None, n_updates: int | None = None
) -> _Snapshot:
    if agent.algo_type == "off_policy":
        agent.flush()  # staged transitions go to the buffer now: the same data, written earlier
    rollout_count = agent.rollout.count if agent.algo_type == "on_policy" else 0
    rollout = None
    if rollout_count:
        rows = jax.tree.map(lambda x: x[:rollout_count], agent.rollout._storage)
        rollout = serialization.to_state_dict(rows)
    last_info = {k: float(np.asarray(v)) for k, v in agent.last_info.items() if np.size(v) == 1}
    snapshot = _Snapshot(
        agent_class=class_path(type(agent)),
        run_name=agent.run_name,
        config=agent.config,
        state=agent.state if runner is None else runner.agent_state,
        env_steps=agent.env_steps if runner is None else int(runner.env_steps),
        n_updates=agent.n_updates if n_updates is None else int(n_updates),
        loop={
            "interact_key": np.asarray(agent._interact_key),
            "update_key": np.asarray(agent._update_key),
            "key_pool": np.asarray(agent._key_pool),
            "tracker": _tracker_arrays(agent.tracker),
            "rollout": rollout,
        },
        counters={
            "key_index": int(agent._key_index),
            "ticks": int(getattr(agent, "_ticks", 0)),
            "rollout_count": int(rollout_count),
            "tracker_window": agent.tracker.recent_returns.maxlen,
            "last_info": last_info,
        },
        buffer=agent.buffer_state if include_buffer and agent.algo_type == "off_policy" else None,
    )
    pending = agent.__dict__.get("_restored_runner")
    cached = agent.__dict__.get("_compiled_cache", {}).get("runner")
    if runner is not None or (pending is None and cached is not None):
        snapshot.runner, snapshot.runner_buffer = _runner_payload(
            cached if runner is None else runner, include_buffer
        )
    elif pending is not None:
        snapshot.runner = pending["runner"]
        snapshot.runner_buffer = pending["buffer"] if include_buffer else None
    return snapshot


def _files(
    snapshot: _Snapshot,
) -> tuple[list[tuple[str, Callable[[], bytes]]], dict[str, Any]]:
    """``(name, produce bytes)`` in writing order, and the manifest's entries (the store adds
    the list of files with their sizes and SHA-256)."""
    files: list[tuple[str, Callable[[], bytes]]] = [
        ("config.json", lambda: _json_bytes(config_to_json(snapshot.config))),
        ("params.msgpack", lambda: _pack(params_of(snapshot.state))),
        ("state.msgpack", lambda: _pack(snapshot.state)),
        ("loop.msgpack", lambda: _pack(snapshot.loop)),
    ]
    if snapshot.buffer is not None:
        files.append(("buffer.msgpack", lambda: _pack(snapshot.buffer)))
    if snapshot.runner is not None:
        files.append(("runner.msgpack", lambda: _pack(snapshot.runner)))
        if snapshot.runner_buffer is not None:
            files.append(("runner_buffer.msgpack", lambda: _pack(snapshot.runner_buffer)))
    meta = {
        "format": FORMAT_VERSION,
        "kitae_version": kitae.__version__,
        "agent_class": snapshot.agent_class,
        "run_name": snapshot.run_name,
        "env_steps": snapshot.env_steps,
        "n_updates": snapshot.n_updates,
        **snapshot.counters,
    }
    return files, meta


# ---- saving --------------------------------------------------------------------------------------


def checkpoint_interval(agent: Agent) -> int:
    """``train_cfg.save_frequency`` of ``agent``, or 0 when saving is disabled.

    Raises:
        ValueError: if saving is enabled but the agent has no run directory.
    """
    every = agent.config.train_cfg.save_frequency
    if every is None or every <= 0:
        return 0
    if agent.logger.run_dir is None:
        raise ValueError(
            f"train_cfg.save_frequency={every} writes checkpoints into the run directory, but "
            "the agent has none: build it with run_dir=..., or set save_frequency=-1."
        )
    return every


def save_agent(
    agent: Agent,
    path: str | Path | None = None,
    *,
    include_buffer: bool | None = None,
    keep: int | None = None,
    runner: Any = None,
    n_updates: int | None = None,
) -> Path:
    """Writes a checkpoint of ``agent`` to ``<path>/checkpoints/step_<env_steps>/``.

    An off-policy agent's staged transitions are first written into its replay buffer (the same
    data its next update would have written), so the saved buffer holds every transition.

    Args:
        agent: the agent.
        path: the run directory (default: the agent's, ``<run_dir>/<run_name>``).
        include_buffer: include the replay buffers (default ``train_cfg.save_buffer``).
        keep: keep only this many most recent checkpoints (default
            ``train_cfg.keep_checkpoints``; ``None`` keeps all).
        runner: a compiled loop's current :class:`~kitae.compiled.RunnerState` (used while it
            runs): the agent state and ``env_steps`` are taken from it.
        n_updates: the update count to record with ``runner``.

    Returns:
        The checkpoint directory.

    Raises:
        ValueError: if no ``path`` is given and the agent has no run directory.
    """
    if path is None:
        if agent.logger.run_dir is None:
            raise ValueError(
                "agent.save() needs a directory: pass path=..., or build the agent with run_dir=."
            )
        path = agent.logger.run_dir
    cfg = agent.config.train_cfg
    include_buffer = cfg.save_buffer if include_buffer is None else include_buffer
    snapshot = _agent_snapshot(agent, bool(include_buffer), runner, n_updates)
    agent.logger.flush()
    keep = cfg.keep_checkpoints if keep is None else keep
    return write_checkpoint(Path(path), snapshot.env_steps, *_files(snapshot), keep)


def _updates_after(agent: Agent, env_steps: int) -> int:
    """Update calls of a compiled run from 0 to ``env_steps`` transitions."""
    config = agent.config
    if agent.algo_type == "off_policy":
        return off_policy_update_count(
            env_steps,
            config.env_cfg.n_envs,
            agent.skip_steps,
            agent.start_step,
            off_policy_min_transitions(config),
        )
    return env_steps // config.update_cfg.max_buffer_size


def save_vmapped(
    run_dir: str | Path,
    runners: Any,
    seeds: Sequence[int],
    agent: Agent,
    *,
    include_buffer: bool | None = None,
) -> list[Path]:
    """Saves the runs of a vmapped compiled program, one agent checkpoint per seed.

    ``runners`` comes from ``jax.vmap(make_agent_train(agent, env))(keys)``: a
    :class:`~kitae.compiled.RunnerState` whose leaves have a leading ``[S]`` seed axis. Seed
    ``seeds[k]`` is written to ``<run_dir>/seed_<seeds[k]>/checkpoints/...`` with the agent's
    config (its ``seed`` set to ``seeds[k]``); load it back with ``Agent.resume`` or
    :func:`load_params` like any checkpoint. The saved interaction and update keys are those a
    fresh agent of that seed would have.

    Args:
        run_dir: parent directory of the ``seed_<k>`` run directories.
        runners: the vmapped runner states, leaves ``[S, ...]``.
        seeds: ``S`` distinct integer seeds naming the runs, in the order of the seed axis.
        agent: the agent whose ``make_agent_train`` produced the runners.
        include_buffer: include the replay buffers (default ``train_cfg.save_buffer``).

    Returns:
        The ``S`` checkpoint directories.

    Raises:
        ValueError: if ``seeds`` are not distinct integers, one per run.
    """
    seeds = list(seeds)
    if np.ndim(runners.env_steps) != 1:
        raise ValueError(
            f"runners.env_steps has shape {np.shape(runners.env_steps)}: save_vmapped needs the "
            "runners of a vmapped program, with a leading seed axis (save one run with "
            "agent.save)."
        )
    n_runs = int(np.shape(runners.env_steps)[0])
    if len(seeds) != n_runs:
        raise ValueError(
            f"seeds has {len(seeds)} entries but the runners hold {n_runs} runs (their leading "
            "axis); give one seed per run."
        )
    if len(set(seeds)) != len(seeds) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ValueError(f"seeds={seeds} is invalid: use distinct integers >= 0.")
    include_buffer = (
        agent.config.train_cfg.save_buffer if include_buffer is None else include_buffer
    )
    n_envs = agent.config.env_cfg.n_envs
    paths = []
    for k, seed in enumerate(seeds):
        runner = jax.tree.map(lambda x, k=k: x[k], runners)
        env_steps = int(runner.env_steps)
        _, interact_key, update_key = jax.random.split(jax.random.PRNGKey(int(seed)), 3)
        snapshot = _Snapshot(
            agent_class=class_path(type(agent)),
            run_name=f"{agent.run_name}-seed_{seed}",
            config=dataclasses.replace(agent.config, seed=int(seed)),
            state=runner.agent_state,
            env_steps=env_steps,
            n_updates=_updates_after(agent, env_steps),
            loop={
                "interact_key": np.asarray(interact_key),
                "update_key": np.asarray(update_key),
                "key_pool": np.zeros((0, *np.shape(interact_key)), np.uint32),
                "tracker": _tracker_arrays(EpisodeTracker(n_envs)),
                "rollout": None,
            },
            counters={
                "key_index": 0,
                "ticks": 0,
                "rollout_count": 0,
                "tracker_window": EpisodeTracker(n_envs).recent_returns.maxlen,
                "last_info": {},
            },
        )
        snapshot.runner, snapshot.runner_buffer = _runner_payload(runner, bool(include_buffer))
        paths.append(
            write_checkpoint(Path(run_dir) / f"seed_{seed}", env_steps, *_files(snapshot), None)
        )
    return paths
