"""The checkpoint format on disk: atomic checkpoint directories of msgpack and JSON files with
a manifest of their SHA-256, finding them and reading them back verified (nothing is unpickled,
no array is allocated from a shape read before it is checked). Agent-independent."""

from __future__ import annotations

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

from kitae.checkpoint.integrity import (
    CheckpointError,
    DeclaredArray,
    build,
    check_manifest,
    decode,
    read_verified,
    sha256,
)
from kitae.config import (
    AlgoConfig,
    config_from_json,
)

FORMAT_VERSION = 2
"""Version of the checkpoint layout written by this module (2: the manifest holds each file's
size and SHA-256)."""

_STEP_DIR = re.compile(r"^step_(\d+)$")
_STALE_DIR = re.compile(r"^(step_\d+)\.(tmp|old)-")

after_file_written: Callable[[str], None] | None = None
"""Called with each file name once a save has written it (e.g. to report progress)."""


def _pack(tree: Any) -> bytes:
    return serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(tree)))


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


def write_checkpoint(
    run_dir: Path,
    env_steps: int,
    files: list[tuple[str, Callable[[], bytes]]],
    meta: dict[str, Any],
    keep: int | None,
) -> Path:
    """Writes ``files`` (``(name, produce bytes)``, in order) and last the manifest
    ``meta.json`` (``meta`` with the list of files, their sizes and SHA-256) as the checkpoint
    ``<run_dir>/checkpoints/step_<env_steps>/``, atomically, then points ``latest`` at it and
    keeps the ``keep`` newest checkpoints (all with ``None``).

    Returns:
        The checkpoint directory.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():  # left by an interrupted save
        stale = _STALE_DIR.match(child.name)
        if stale and stale.group(2) == "old" and not (root / stale.group(1)).exists():
            os.replace(child, root / stale.group(1))  # cut between the two renames below
        elif stale:
            shutil.rmtree(child, ignore_errors=True)
    name = f"step_{env_steps:09d}"
    tmp = root / f"{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    try:
        for file_name, produce in files:
            data = produce()
            digests[file_name], sizes[file_name] = sha256(data), len(data)
            _write_file(tmp / file_name, data)
            if after_file_written is not None:
                after_file_written(file_name)
        manifest = {
            **meta,
            "files": [file_name for file_name, _ in files] + ["meta.json"],
            "sha256": digests,
            "bytes": sizes,
        }
        _write_file(tmp / "meta.json", _json_bytes(manifest))
        if after_file_written is not None:
            after_file_written("meta.json")
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


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint file {path} is not valid JSON ({error}): the checkpoint is damaged."
        ) from error


def read_meta(checkpoint: str | Path) -> dict[str, Any]:
    """The manifest of a checkpoint (``meta.json``): agent class, run name, counters, files
    with their sizes and SHA-256, checked to hold all of them.

    Warns:
        UserWarning: for a checkpoint written before the manifest held hashes (format 1): its
            files load unverified.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``checkpoint``.
        CheckpointError: if the manifest lacks an entry or is not JSON.
        ValueError: if it was written in a newer format.
    """
    directory = find_checkpoint(checkpoint)
    meta = _parse_json((directory / "meta.json").read_bytes(), directory / "meta.json")
    if isinstance(meta, dict) and isinstance(meta.get("format"), int):
        if meta["format"] > FORMAT_VERSION:
            raise ValueError(
                f"{checkpoint} has checkpoint format {meta['format']}; this kitae reads up to "
                f"{FORMAT_VERSION}: upgrade kitae."
            )
    check_manifest(meta, directory)
    return meta


def read_json(checkpoint: Path, name: str, meta: dict[str, Any]) -> Any:
    """The JSON file ``name`` of a checkpoint, verified against its manifest ``meta``."""
    return _parse_json(read_verified(checkpoint, name, meta), checkpoint / name)


def read_config(checkpoint: str | Path, classes: Sequence[type] = ()) -> AlgoConfig:
    """The config a checkpoint was written with (see :func:`kitae.config.config_from_json`).

    Args:
        checkpoint: a run directory (its latest checkpoint) or a checkpoint directory.
        classes: classes the config may name beside kitae's own and the registered ones (a
            custom agent class brings its ``params_type``).

    Raises:
        CheckpointError: if ``config.json`` is missing or damaged.
        ValueError: if it names a class that is not known, or cannot be rebuilt.
    """
    directory = find_checkpoint(checkpoint)
    data = read_json(directory, "config.json", read_meta(directory))
    try:
        return config_from_json(data, classes)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{directory / 'config.json'}: {error}") from error


def _unpack(checkpoint: Path, name: str, meta: dict[str, Any]) -> Any:
    """The msgpack file ``name`` of a checkpoint, verified, with its arrays declared but not
    built (:class:`~kitae.checkpoint.integrity.DeclaredArray` leaves)."""
    return decode(read_verified(checkpoint, name, meta), checkpoint / name)


def _read_tree(checkpoint: Path, name: str, meta: dict[str, Any]) -> Any:
    """The msgpack file ``name`` of a checkpoint as numpy arrays (for trees that have no
    template: their arrays were checked against their data size, nothing more)."""
    return build(_unpack(checkpoint, name, meta))


def _dtype(x: Any) -> np.dtype:
    """The dtype of an array, or the one JAX gives a Python scalar."""
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.dtype(jnp.asarray(x).dtype)


def _describe(x: Any) -> str:
    return f"{tuple(np.shape(x))} {_dtype(x).name}"


def _check_leaves(template: Any, restored: Any, what: str, file: Path | None = None) -> None:
    """Raises ``ValueError`` naming ``file`` and the paths where ``restored`` (arrays or
    declared arrays) differs from ``template`` in structure, shape or dtype."""
    where = f"{file}: " if file is not None else ""
    t_leaves, t_def = jax.tree_util.tree_flatten_with_path(template)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(restored)
    if t_def != r_def:
        t_keys = {jax.tree_util.keystr(p) for p, _ in t_leaves}
        r_keys = {jax.tree_util.keystr(p) for p, _ in r_leaves}
        raise ValueError(
            f"{where}the checkpoint's {what} has another structure than this agent's: only in "
            f"the checkpoint {sorted(r_keys - t_keys)[:4]}, only in the agent "
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
            f"{where}the checkpoint's {what} does not fit this agent (another network or "
            "config?): " + "; ".join(differences[:3]) + more
        )


def _restore_tree(template: Any, raw: Any, what: str, file: Path | None = None) -> Any:
    """``raw`` (a msgpack state dict, its arrays possibly only declared) restored into the
    structure of ``template``, checked leaf by leaf before any declared array is built; leaves
    are numpy arrays."""
    where = f"{file}: " if file is not None else ""
    try:
        restored = serialization.from_state_dict(template, raw)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{where}the checkpoint's {what} does not fit this agent's structure: {error}"
        ) from error
    _check_leaves(template, restored, what, file)
    return jax.tree.map(lambda x: x.build() if isinstance(x, DeclaredArray) else x, restored)


def _to_device(tree: Any) -> Any:
    return jax.tree.map(jnp.asarray, tree)


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
        CheckpointError: if the checkpoint is incomplete or damaged.
    """
    checkpoint = find_checkpoint(path)
    return _read_tree(checkpoint, "params.msgpack", read_meta(checkpoint))
