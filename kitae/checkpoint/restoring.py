"""Restoring agents from checkpoints: exact resume, continuing a run directory, and loading
parameters for inference."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kitae.checkpoint.integrity import read_verified
from kitae.checkpoint.saving import LOOP_FIELDS, _is_train_state, params_of
from kitae.checkpoint.store import (
    _check_leaves,
    _read_tree,
    _replace_file,
    _restore_tree,
    _to_device,
    _unpack,
    find_checkpoint,
    read_config,
    read_json,
    read_meta,
)
from kitae.config import (
    AlgoConfig,
    class_path,
    config_differences,
    config_to_json,
    register_config_classes,
)
from kitae.envs.vector import EpisodeTracker
from kitae.logger import Logger
from kitae.normalization import normalization_of
from kitae.types import Agent


def register_agent_class(cls: type) -> type:
    """Lets checkpoints name the custom agent class ``cls``, its ``params_type`` and the
    dataclasses their fields are annotated with, wherever they are restored in this process
    (:func:`~kitae.checkpoint.read_config` without ``classes=``, the command line). Restoring
    through ``cls.resume`` or ``cls.load_for_inference`` needs no registration. Usable as a
    class decorator.

    Returns:
        ``cls``.

    Raises:
        TypeError: if ``cls`` is not an agent class.
    """
    if not (isinstance(cls, type) and hasattr(cls, "params_type") and hasattr(cls, "resume")):
        raise TypeError(f"register_agent_class takes an agent class, not {cls!r}.")
    register_config_classes(cls)
    return cls


def _check_agent_class(cls: type, meta: dict[str, Any], checkpoint: Path) -> None:
    saved = meta["agent_class"]
    if saved not in {class_path(c) for c in cls.__mro__}:
        raise ValueError(
            f"{checkpoint} was written by a {saved} agent; it cannot be loaded into a "
            f"{class_path(cls)} agent."
        )


def _added_at_default(saved: dict[str, Any], config: AlgoConfig, name: str) -> bool:
    """Whether the dotted field ``name`` is absent from the saved config (JSON form) and holds
    its default in ``config``: a field that kitae gained after the checkpoint was written."""
    *parents, leaf = name.split(".")
    node, obj = saved, config
    for part in parents:
        node = node.get("fields", {}).get(part) if isinstance(node, dict) else None
        obj = getattr(obj, part, None)
    if not isinstance(node, dict) or leaf in node.get("fields", {leaf: None}):
        return False
    if not dataclasses.is_dataclass(obj):
        return False
    field = {f.name: f for f in dataclasses.fields(obj)}.get(leaf)
    if field is None:
        return False
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return False
    return bool(getattr(obj, leaf) == default)


def _check_config(config: AlgoConfig, checkpoint: Path, meta: dict[str, Any]) -> None:
    saved = read_json(checkpoint, "config.json", meta)
    differences = [
        d
        for d in config_differences(saved, config_to_json(config))
        if d[0] not in LOOP_FIELDS and not _added_at_default(saved, config, d[0])
    ]
    if differences:
        listed = "; ".join(f"{name}: checkpoint {a}, agent {b}" for name, a, b in differences[:5])
        more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
        raise ValueError(
            f"{checkpoint / 'config.json'}: the checkpoint was written with another config: "
            f"{listed}{more}. Rebuild the agent from the checkpoint with Agent.resume(run_dir)."
        )


# ---- restoring -----------------------------------------------------------------------------------


def _restore_buffer(agent: Agent, raw: dict[str, Any], file: Path) -> Any:
    """The replay buffer state saved in ``raw`` (read from ``file``), checked against the
    agent's buffer (the kind of buffer, its fields, capacity, shapes and dtypes)."""
    try:
        example = agent.replay_buffer.saved_example(raw, agent.experience_type)
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from error
    template = jax.eval_shape(agent.replay_buffer.init, example)
    return _to_device(_restore_tree(template, raw, "replay buffer", file))


def _restore_tracker(agent: Agent, arrays: dict[str, Any], window: int | None) -> EpisodeTracker:
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


def _restore_keys(agent: Agent, loop: dict[str, Any]) -> tuple[Any, Any, np.ndarray]:
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


def _restore_rollout(agent: Agent, loop: dict[str, Any], count: int) -> Any:
    """The unfinished rollout's ``count`` rows (leaves ``[count, N, ...]``), or ``None``."""
    if not count:
        return None
    if count >= agent.rollout.n_steps:
        raise ValueError(
            f"the checkpoint's unfinished rollout has {count} steps; this agent's rollouts "
            f"have {agent.rollout.n_steps}."
        )
    rows = loop["rollout"]
    if not isinstance(rows, dict) or set(rows) != set(agent.experience_type._fields):
        kept = sorted(rows) if isinstance(rows, dict) else rows
        raise ValueError(
            f"the checkpoint's rollout stores the fields {kept}; this agent stores "
            f"{sorted(agent.experience_type._fields)}."
        )
    lengths = {len(x) for x in jax.tree.leaves(rows) if np.ndim(x)}
    if lengths != {count}:
        raise ValueError(
            f"the checkpoint's rollout rows have lengths {sorted(lengths)}; its manifest says "
            f"{count}."
        )
    return agent.experience_type(**rows)


def restore_agent(agent: Agent, path: str | Path) -> Path:
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
    _check_config(agent.config, checkpoint, meta)
    read_verified(checkpoint, "params.msgpack", meta)  # not needed here, but verified
    state_file = checkpoint / "state.msgpack"
    state = _restore_tree(
        agent.state, _unpack(checkpoint, state_file.name, meta), "agent state", state_file
    )
    loop = _read_tree(checkpoint, "loop.msgpack", meta)
    files = set(meta["files"])
    buffer = None
    if agent.algo_type == "off_policy" and "buffer.msgpack" in files:
        raw = _read_tree(checkpoint, "buffer.msgpack", meta)
        buffer = _restore_buffer(agent, raw, checkpoint / "buffer.msgpack")
    pending = None
    if "runner.msgpack" in files:
        pending = {
            "runner": _read_tree(checkpoint, "runner.msgpack", meta),
            "buffer": _read_tree(checkpoint, "runner_buffer.msgpack", meta)
            if "runner_buffer.msgpack" in files
            else None,
        }
    try:
        interact_key, update_key, key_pool = _restore_keys(agent, loop)
        window = meta.get("tracker_window")
        tracker = _restore_tracker(agent, loop["tracker"], window)
        count = int(meta.get("rollout_count", 0))
        on_policy = agent.algo_type == "on_policy"
        rollout = _restore_rollout(agent, loop, count) if on_policy else None
    except (ValueError, KeyError, TypeError) as error:
        what = f"entry {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{checkpoint / 'loop.msgpack'}: {what}") from error
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
    if agent.algo_type == "off_policy":
        agent._staging.count = 0
        agent._ticks = int(meta["ticks"])
        agent.buffer_state = buffer
    if agent.algo_type == "on_policy":
        agent.rollout.count = 0
        for i in range(count):
            agent.rollout.add(jax.tree.map(lambda x, i=i: x[i], rollout))
    agent.__dict__.pop("_compiled_cache", None)
    agent.__dict__.pop("_restored_runner", None)
    if pending is not None:
        agent._restored_runner = pending
    return checkpoint


def restore_runner(trainer: Any, agent: Agent, saved: dict[str, Any]) -> Any:
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


def resume_agent(agent_cls: type, run_dir: str | Path, **kwargs: Any) -> Agent:
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
    agent = agent_cls(meta["run_name"], read_config(checkpoint, (agent_cls,)), **kwargs)
    run_directory = checkpoint.parent.parent
    _truncate_logs(run_directory, int(meta["env_steps"]))
    agent.logger = Logger(run_directory, resume=True, backends=agent.config.train_cfg.loggers)
    restore_agent(agent, checkpoint)
    return agent


def load_for_inference(agent_cls: type, path: str | Path, **kwargs: Any) -> Agent:
    """An agent built from a checkpoint's config with the checkpoint's parameters, for acting.

    Only ``params.msgpack`` is read (and, for a state with normalisation statistics, those from
    ``state.msgpack``): optimizer states, target parameters and buffers stay as a fresh agent has
    them. ``env_steps`` is restored (schedules such as epsilon read it).

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
    agent = agent_cls(meta["run_name"], read_config(checkpoint, (agent_cls,)), **kwargs)
    params_file = checkpoint / "params.msgpack"
    params = _restore_tree(
        params_of(agent.state),
        _unpack(checkpoint, params_file.name, meta),
        "parameters",
        params_file,
    )
    agent.state = jax.tree.map(
        lambda s, p: s.replace(params=_to_device(p)), agent.state, params, is_leaf=_is_train_state
    )
    if any(normalization_of(s) is not None for s in _train_states(agent.state)):
        # Acting also reads the observation statistics: take them from the full state.
        state_file = checkpoint / "state.msgpack"
        saved = _restore_tree(
            agent.state, _unpack(checkpoint, state_file.name, meta), "agent state", state_file
        )
        agent.state = jax.tree.map(
            lambda s, r: (
                s
                if normalization_of(s) is None
                else s.replace(normalization=_to_device(normalization_of(r)))
            ),
            agent.state,
            saved,
            is_leaf=_is_train_state,
        )
    agent._acting_state = None
    agent.env_steps = int(meta["env_steps"])
    return agent


def _train_states(state: Any) -> list[Any]:
    return jax.tree.leaves(state, is_leaf=_is_train_state)
