"""Checkpoints: the complete training state of an agent on disk, and resuming a run from it.

A checkpoint is a directory of a few files: arrays in flax's msgpack format
(:mod:`flax.serialization`), metadata in JSON; nothing is pickled. Arrays are restored against a
template built from the config (the agent's own state, or the shapes the compiled program
creates), so a checkpoint of another algorithm or of another network is refused with an error
naming what differs.

Layout of a run directory (``<run_dir>/<run_name>`` of an agent built with ``run_dir=``)::

    <run>/config.json, episodes.jsonl, train.jsonl   the logger's files (or .csv, tensorboard/,
                                                     wandb/, eval.* per train_cfg.loggers)
    <run>/checkpoints/latest                         name of the newest complete checkpoint
    <run>/checkpoints/step_000012000/                one checkpoint, named by its env_steps
        meta.json              format version, agent class, run name, counters
        config.json            the resolved config (kitae.config.config_to_json)
        params.msgpack         the params of every TrainState: all that acting needs
        state.msgpack          the agent state: params, target params, optimizer states, steps
        loop.msgpack           PRNG keys and key pool, episode statistics, unfinished rollout
        buffer.msgpack         the gymnasium loop's replay buffer (optional)
        runner.msgpack         the compiled loop's carry: env states, observations, loop key,
                               counters, traced hyperparameters
        runner_buffer.msgpack  the compiled loop's replay buffer (optional)

Writes are atomic: a checkpoint is written into ``step_<n>.tmp-<id>/`` (every file flushed to
disk), renamed to ``step_<n>/``, then ``latest`` is replaced by an atomic rename. An interrupted
save leaves the previous checkpoints complete and loadable; its ``.tmp`` directory is ignored and
removed by the next save.

Resume semantics: the compiled path (JAX envs) saves its whole carry, so a resumed run continues
bit-identically. A gymnasium env cannot be saved: a resumed gymnasium run continues the agent
(parameters, optimizer, counters, schedules, keys, replay buffer) but starts fresh episodes, reset
with ``config.seed``, and drops an unfinished on-policy rollout (a rollout never spans two envs).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

import kitae
from kitae.base import BaseAgent, EpisodeTracker, OffPolicyAgent, OnPolicyAgent
from kitae.config import (
    AlgoConfig,
    class_path,
    config_differences,
    config_from_json,
    config_to_json,
)
from kitae.logger import Logger
from kitae.modules.train_state import TrainState
from kitae.schedules import off_policy_min_transitions, off_policy_update_count

FORMAT_VERSION = 1
"""Version of the checkpoint layout written by this module."""

LOOP_FIELDS = (
    "train_cfg.progress_bar",
    "train_cfg.log_frequency",
    "train_cfg.save_frequency",
    "train_cfg.save_buffer",
    "train_cfg.keep_checkpoints",
)
"""Config fields that may differ between a checkpoint and the agent restoring it."""

_STEP_DIR = re.compile(r"^step_(\d+)$")
_STALE_DIR = re.compile(r"^(step_\d+)\.(tmp|old)-")

after_file_written: Callable[[str], None] | None = None
"""Called with each file name once a save has written it (e.g. to report progress)."""


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
    agent: BaseAgent, include_buffer: bool, runner: Any = None, n_updates: int | None = None
) -> _Snapshot:
    if isinstance(agent, OffPolicyAgent):
        agent.flush()  # staged transitions go to the buffer now: the same data, written earlier
    rollout_count = agent.rollout.count if isinstance(agent, OnPolicyAgent) else 0
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
        buffer=agent.buffer_state if include_buffer and isinstance(agent, OffPolicyAgent) else None,
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


def _pack(tree: Any) -> bytes:
    return serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(tree)))


def _files(snapshot: _Snapshot) -> list[tuple[str, Callable[[], bytes]]]:
    """``(name, produce bytes)`` in writing order; the metadata comes last."""
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
    names = [name for name, _ in files] + ["meta.json"]
    meta = {
        "format": FORMAT_VERSION,
        "kitae_version": kitae.__version__,
        "agent_class": snapshot.agent_class,
        "run_name": snapshot.run_name,
        "env_steps": snapshot.env_steps,
        "n_updates": snapshot.n_updates,
        **snapshot.counters,
        "files": names,
    }
    files.append(("meta.json", lambda: _json_bytes(meta)))
    return files


# ---- atomic writing ------------------------------------------------------------------------------


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_file(path: Path, data: bytes) -> None:
    """Writes ``path`` atomically: a temporary file in the same directory, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    _write_file(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "meta.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _write(run_dir: Path, snapshot: _Snapshot, keep: int | None) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():  # left by an interrupted save
        stale = _STALE_DIR.match(child.name)
        if stale and stale.group(2) == "old" and not (root / stale.group(1)).exists():
            os.replace(child, root / stale.group(1))  # cut between the two renames below
        elif stale:
            shutil.rmtree(child, ignore_errors=True)
    name = f"step_{snapshot.env_steps:09d}"
    tmp = root / f"{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for file_name, produce in _files(snapshot):
            _write_file(tmp / file_name, produce())
            if after_file_written is not None:
                after_file_written(file_name)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / name
    if final.exists():  # a second save at the same step replaces the first
        old = root / f"{name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    _replace_file(root / "latest", (name + "\n").encode())
    if keep is not None:
        for _, path in _step_dirs(root)[:-keep]:
            if path != final:
                shutil.rmtree(path, ignore_errors=True)
    return final


# ---- saving --------------------------------------------------------------------------------------


def checkpoint_interval(agent: BaseAgent) -> int:
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
    agent: BaseAgent,
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
    return _write(Path(path), snapshot, cfg.keep_checkpoints if keep is None else keep)


def _updates_after(agent: BaseAgent, env_steps: int) -> int:
    """Update calls of a compiled run from 0 to ``env_steps`` transitions."""
    config = agent.config
    if isinstance(agent, OffPolicyAgent):
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
    agent: BaseAgent,
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
        paths.append(_write(Path(run_dir) / f"seed_{seed}", snapshot, None))
    return paths


# ---- finding and reading -------------------------------------------------------------------------


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint a path designates: a checkpoint directory itself, or the newest complete
    checkpoint of a run directory (the one ``checkpoints/latest`` names).

    Raises:
        FileNotFoundError: if the path does not exist or holds no complete checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: expected a run directory (holding checkpoints/) or a "
            "checkpoint directory (holding meta.json)."
        )
    if (path / "meta.json").is_file():
        return path
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    latest = root / "latest"
    if latest.is_file():
        name = latest.read_text().strip()
        if _STEP_DIR.match(name) and (root / name / "meta.json").is_file():
            return root / name
    complete = _step_dirs(root)
    if complete:
        return complete[-1][1]
    raise FileNotFoundError(
        f"{path} holds no complete checkpoint (no checkpoints/step_*/meta.json): save one with "
        "agent.save() or train_cfg.save_frequency."
    )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} is missing.")
    return json.loads(path.read_text())


def read_meta(checkpoint: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint (``meta.json``): agent class, run name, counters.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``checkpoint``.
        ValueError: if it was written in a newer format.
    """
    meta = _read_json(find_checkpoint(checkpoint) / "meta.json")
    if meta.get("format", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{checkpoint} has checkpoint format {meta['format']}; this kitae reads up to "
            f"{FORMAT_VERSION}: upgrade kitae."
        )
    return meta


def read_config(checkpoint: str | Path) -> AlgoConfig:
    """The config a checkpoint was written with (see :func:`kitae.config.config_from_json`)."""
    return config_from_json(_read_json(find_checkpoint(checkpoint) / "config.json"))


def _unpack(checkpoint: Path, name: str) -> Any:
    path = checkpoint / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} is missing.")
    return serialization.msgpack_restore(path.read_bytes())


def _dtype(x: Any) -> np.dtype:
    """The dtype of an array, or the one JAX gives a Python scalar."""
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.dtype(jnp.asarray(x).dtype)


def _describe(x: Any) -> str:
    return f"{tuple(np.shape(x))} {_dtype(x).name}"


def _check_leaves(template: Any, restored: Any, what: str) -> None:
    """Raises ``ValueError`` naming the paths where ``restored`` differs from ``template`` in
    structure, shape or dtype."""
    t_leaves, t_def = jax.tree_util.tree_flatten_with_path(template)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(restored)
    if t_def != r_def:
        t_keys = {jax.tree_util.keystr(p) for p, _ in t_leaves}
        r_keys = {jax.tree_util.keystr(p) for p, _ in r_leaves}
        raise ValueError(
            f"the checkpoint's {what} has another structure than this agent's: only in the "
            f"checkpoint {sorted(r_keys - t_keys)[:4]}, only in the agent "
            f"{sorted(t_keys - r_keys)[:4]}."
        )
    differences = [
        f"{jax.tree_util.keystr(p)}: checkpoint {_describe(r)}, agent {_describe(t)}"
        for (p, t), (_, r) in zip(t_leaves, r_leaves, strict=True)
        if np.shape(t) != np.shape(r) or _dtype(t) != _dtype(r)
    ]
    if differences:
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise ValueError(
            f"the checkpoint's {what} does not fit this agent (another network or config?): "
            + "; ".join(differences[:3])
            + more
        )


def _restore_tree(template: Any, raw: Any, what: str) -> Any:
    """``raw`` (a msgpack state dict) restored into the structure of ``template``, checked leaf
    by leaf; leaves stay numpy arrays."""
    try:
        restored = serialization.from_state_dict(template, raw)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"the checkpoint's {what} does not fit this agent's structure: {error}"
        ) from error
    _check_leaves(template, restored, what)
    return restored


def _to_device(tree: Any) -> Any:
    return jax.tree.map(jnp.asarray, tree)


def _check_agent_class(cls: type, meta: dict[str, Any], checkpoint: Path) -> None:
    saved = meta["agent_class"]
    if saved not in {class_path(c) for c in cls.__mro__}:
        raise ValueError(
            f"{checkpoint} was written by a {saved} agent; it cannot be loaded into a "
            f"{class_path(cls)} agent."
        )


def _check_config(config: AlgoConfig, checkpoint: Path) -> None:
    saved = _read_json(checkpoint / "config.json")
    differences = [
        d for d in config_differences(saved, config_to_json(config)) if d[0] not in LOOP_FIELDS
    ]
    if differences:
        listed = "; ".join(f"{name}: checkpoint {a}, agent {b}" for name, a, b in differences[:5])
        more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
        raise ValueError(
            f"{checkpoint} was written with another config: {listed}{more}. Rebuild the agent "
            "from the checkpoint with Agent.resume(run_dir)."
        )


# ---- restoring -----------------------------------------------------------------------------------


def _restore_buffer(agent: OffPolicyAgent, raw: dict[str, Any]) -> Any:
    fields = set(agent.experience_type._fields)
    data = raw.get("data") or {}
    if set(data) != fields:
        raise ValueError(
            f"the checkpoint's replay buffer stores the fields {sorted(data)}; this agent stores "
            f"{sorted(fields)}."
        )
    example = agent.experience_type(
        **{
            k: None if v is None else jax.ShapeDtypeStruct(np.shape(v)[1:], np.asarray(v).dtype)
            for k, v in data.items()
        }
    )
    template = jax.eval_shape(agent.replay_buffer.init, example)
    return _to_device(_restore_tree(template, raw, "replay buffer"))


def _restore_tracker(
    agent: BaseAgent, arrays: dict[str, Any], window: int | None
) -> EpisodeTracker:
    tracker = EpisodeTracker(agent.config.env_cfg.n_envs, window or 20)
    for name in ("returns", "lengths"):
        value = np.asarray(arrays[name])
        current = getattr(tracker, name)
        if value.shape != current.shape:
            raise ValueError(
                f"the checkpoint's episode tracker has {value.shape} envs; this agent "
                f"{current.shape}."
            )
        current[:] = value
    tracker.recent_returns.extend(float(r) for r in np.asarray(arrays["recent_returns"]))
    tracker.finished = [
        (float(r), int(n))
        for r, n in zip(arrays["finished_returns"], arrays["finished_lengths"], strict=True)
    ]
    return tracker


def _restore_keys(agent: BaseAgent, loop: dict[str, Any]) -> tuple[Any, Any, np.ndarray]:
    """``(interact_key, update_key, key_pool)`` of the checkpoint, checked against the agent's."""
    key_template = np.asarray(agent._interact_key)
    keys = []
    for name in ("interact_key", "update_key"):
        key = np.asarray(loop[name])
        _check_leaves(key_template, key, name.replace("_", " "))
        keys.append(jnp.asarray(key))
    pool = np.array(loop["key_pool"])
    if pool.shape[1:] != key_template.shape or pool.dtype != key_template.dtype:
        raise ValueError(
            f"the checkpoint's key pool has shape {pool.shape} {pool.dtype}; this agent's keys "
            f"are {key_template.shape} {key_template.dtype}."
        )
    return keys[0], keys[1], pool


def _restore_rollout(agent: OnPolicyAgent, loop: dict[str, Any], count: int) -> Any:
    """The unfinished rollout's ``count`` rows (leaves ``[count, N, ...]``), or ``None``."""
    if not count:
        return None
    rows = loop["rollout"]
    if set(rows) != set(agent.experience_type._fields):
        raise ValueError(
            f"the checkpoint's rollout stores the fields {sorted(rows)}; this agent stores "
            f"{sorted(agent.experience_type._fields)}."
        )
    return agent.experience_type(**rows)


def restore_agent(agent: BaseAgent, path: str | Path) -> Path:
    """Loads a checkpoint into ``agent``: its state, keys, counters, episode statistics,
    replay buffer and, for the compiled path, the loop's carry (restored when ``train`` next
    runs on a JAX env).

    The envs' state of a gymnasium run is not in the checkpoint: the next ``train`` starts fresh
    episodes (reset with ``config.seed``) and drops an unfinished on-policy rollout.

    Args:
        agent: an agent built with the checkpoint's config (progress bar, logging and saving
            settings may differ).
        path: a run directory (its latest checkpoint) or a checkpoint directory.

    Returns:
        The checkpoint directory loaded.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the checkpoint belongs to another agent class or config, naming what
            differs.
    """
    checkpoint = find_checkpoint(path)
    meta = read_meta(checkpoint)
    _check_agent_class(type(agent), meta, checkpoint)
    _check_config(agent.config, checkpoint)
    state = _restore_tree(agent.state, _unpack(checkpoint, "state.msgpack"), "agent state")
    loop = _unpack(checkpoint, "loop.msgpack")
    files = set(meta["files"])
    buffer = None
    if isinstance(agent, OffPolicyAgent) and "buffer.msgpack" in files:
        buffer = _restore_buffer(agent, _unpack(checkpoint, "buffer.msgpack"))
    pending = None
    if "runner.msgpack" in files:
        pending = {
            "runner": _unpack(checkpoint, "runner.msgpack"),
            "buffer": _unpack(checkpoint, "runner_buffer.msgpack")
            if "runner_buffer.msgpack" in files
            else None,
        }
    interact_key, update_key, key_pool = _restore_keys(agent, loop)
    tracker = _restore_tracker(agent, loop["tracker"], meta.get("tracker_window"))
    count = int(meta.get("rollout_count", 0))
    rollout = _restore_rollout(agent, loop, count) if isinstance(agent, OnPolicyAgent) else None
    # Everything is read and checked: the agent changes only now.
    agent.state = _to_device(state)
    agent._interact_key, agent._update_key, agent._key_pool = interact_key, update_key, key_pool
    agent.tracker = tracker
    agent._acting_state = None
    agent._key_index = int(meta["key_index"])
    agent.env_steps = int(meta["env_steps"])
    agent.n_updates = int(meta["n_updates"])
    agent.last_info = dict(meta.get("last_info", {}))
    agent._env_source = agent._env = agent._observation = None
    agent._env_seeded = False
    if isinstance(agent, OffPolicyAgent):
        agent._staging.count = 0
        agent._ticks = int(meta["ticks"])
        agent.buffer_state = buffer
    if isinstance(agent, OnPolicyAgent):
        agent.rollout.count = 0
        for i in range(count):
            agent.rollout.add(jax.tree.map(lambda x, i=i: x[i], rollout))
    agent.__dict__.pop("_compiled_cache", None)
    agent.__dict__.pop("_restored_runner", None)
    if pending is not None:
        agent._restored_runner = pending
    return checkpoint


def restore_runner(trainer: Any, agent: BaseAgent, saved: dict[str, Any]) -> Any:
    """The compiled loop's carry saved in a checkpoint, for ``trainer`` (a
    :class:`~kitae.compiled.CompiledTrain` on the env the run continues with).

    Args:
        trainer: the compiled program the run continues with.
        agent: the restored agent (its state goes into the carry).
        saved: ``{"runner": ..., "buffer": ...}`` as read from the checkpoint.

    Returns:
        The :class:`~kitae.compiled.RunnerState`.

    Raises:
        ValueError: if the saved env states do not fit the env (another env or ``n_envs``).
    """
    hyperparams = {k: jnp.asarray(v) for k, v in saved["runner"]["hyperparams"].items()}
    key = jax.random.PRNGKey(0)
    template = jax.eval_shape(trainer.init, key, hyperparams, agent.state)
    rest = template.replace(agent_state=None, buffer_state=None, hyperparams={})
    paths, treedef = jax.tree_util.tree_flatten_with_path(rest)
    names = [jax.tree_util.keystr(p) for p, _ in paths]
    leaves = saved["runner"]["leaves"]
    env_name = getattr(trainer.env, "name", type(trainer.env).__name__)
    if set(names) != set(leaves):
        raise ValueError(
            f"the checkpoint's compiled-loop state does not fit the env {env_name}: only in the "
            f"checkpoint {sorted(set(leaves) - set(names))[:4]}, only in this env's "
            f"{sorted(set(names) - set(leaves))[:4]}."
        )
    _check_leaves(
        {name: struct for name, (_, struct) in zip(names, paths, strict=True)},
        {name: leaves[name] for name in names},
        f"compiled-loop state (env {env_name})",
    )
    runner = jax.tree.unflatten(treedef, [jnp.asarray(leaves[name]) for name in names])
    if saved["buffer"] is not None:
        buffer = _to_device(
            _restore_tree(template.buffer_state, saved["buffer"], "compiled-loop replay buffer")
        )
    elif template.buffer_state is not None:  # saved without its buffer: start an empty one
        buffer = jax.jit(trainer.init)(key, hyperparams, agent.state).buffer_state
    else:
        buffer = None
    return runner.replace(agent_state=agent.state, buffer_state=buffer, hyperparams=hyperparams)


def _truncate_logs(run_dir: Path, env_steps: int) -> None:
    """Drops the log rows written after ``env_steps`` (by a run that went on past its last
    checkpoint), so that the resumed run's rows follow on: JSON-lines and CSV files. TensorBoard
    event files and wandb runs are not rewritten: the resumed run's rows follow them again from
    the checkpoint's step."""
    for path in run_dir.glob("*.jsonl"):
        lines = path.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a row cut short by the end of the process
                continue
            if line.endswith("\n") and row.get("step", 0) <= env_steps:
                kept.append(line)
        if len(kept) != len(lines):
            _replace_file(path, "".join(kept).encode())
    for path in run_dir.glob("*.csv"):
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        rows = list(csv.reader(lines))
        if not rows or "step" not in rows[0]:
            continue
        column = rows[0].index("step")
        kept = lines[:1] + [
            line
            for line, row in zip(lines[1:], rows[1:], strict=False)
            if line.endswith("\n") and len(row) > column and int(float(row[column])) <= env_steps
        ]
        if len(kept) != len(lines):
            _replace_file(path, "".join(kept).encode())


def resume_agent(agent_cls: type, run_dir: str | Path, **kwargs: Any) -> BaseAgent:
    """Rebuilds an agent from the latest checkpoint of a run directory and restores it; its
    logs are appended to the run directory's files and it saves into the same directory.

    Args:
        agent_cls: the agent class (the checkpoint's, or a subclass).
        run_dir: the run directory (``<run_dir>/<run_name>``) or one of its checkpoints.
        **kwargs: extra arguments of the agent's constructor (e.g. ``preprocess_fn``).

    Returns:
        The agent, ready to ``train`` on (see :func:`restore_agent` for what continues).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``run_dir``.
        ValueError: if the checkpoint belongs to another agent class.
    """
    if "run_dir" in kwargs:
        raise TypeError("resume() takes the run directory itself as its first argument.")
    checkpoint = find_checkpoint(run_dir)
    meta = read_meta(checkpoint)
    _check_agent_class(agent_cls, meta, checkpoint)
    agent = agent_cls(meta["run_name"], read_config(checkpoint), **kwargs)
    run_directory = checkpoint.parent.parent
    _truncate_logs(run_directory, int(meta["env_steps"]))
    agent.logger = Logger(run_directory, resume=True, backends=agent.config.train_cfg.loggers)
    restore_agent(agent, checkpoint)
    return agent


def load_params(path: str | Path) -> Any:
    """The parameters of a checkpoint, for acting: no optimizer state, no buffer.

    Args:
        path: a run directory (its latest checkpoint) or a checkpoint directory.

    Returns:
        Nested dicts of numpy arrays shaped like the agent state with every ``TrainState``
        replaced by its ``params``: ``{"params": {...}}`` for a single network (what
        ``state.replace(params=...)`` takes), ``{"actor": {...}, "critic": {...}, ...}`` for
        multi-network states.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
    """
    checkpoint = find_checkpoint(path)
    read_meta(checkpoint)
    return _unpack(checkpoint, "params.msgpack")


def load_for_inference(agent_cls: type, path: str | Path, **kwargs: Any) -> BaseAgent:
    """An agent built from a checkpoint's config with the checkpoint's parameters, for acting.

    Only ``params.msgpack`` is read: optimizer states, target parameters and buffers stay as a
    fresh agent has them. ``env_steps`` is restored (schedules such as epsilon read it).

    Args:
        agent_cls: the agent class (the checkpoint's, or a subclass).
        path: a run directory (its latest checkpoint) or a checkpoint directory.
        **kwargs: extra arguments of the agent's constructor.

    Returns:
        The agent.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the checkpoint belongs to another agent class or its parameters do not
            fit the network.
    """
    checkpoint = find_checkpoint(path)
    meta = read_meta(checkpoint)
    _check_agent_class(agent_cls, meta, checkpoint)
    agent = agent_cls(meta["run_name"], read_config(checkpoint), **kwargs)
    params = _restore_tree(params_of(agent.state), load_params(checkpoint), "parameters")
    agent.state = jax.tree.map(
        lambda s, p: s.replace(params=_to_device(p)), agent.state, params, is_leaf=_is_train_state
    )
    agent._acting_state = None
    agent.env_steps = int(meta["env_steps"])
    return agent


__all__ = [
    "FORMAT_VERSION",
    "LOOP_FIELDS",
    "checkpoint_interval",
    "find_checkpoint",
    "load_for_inference",
    "load_params",
    "params_of",
    "read_config",
    "read_meta",
    "restore_agent",
    "restore_runner",
    "resume_agent",
    "save_agent",
    "save_vmapped",
]
