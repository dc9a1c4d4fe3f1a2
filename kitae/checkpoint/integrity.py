"""Integrity of checkpoint files: the manifest (``meta.json``) and its SHA-256 per file, reading
files back verified, and decoding msgpack files with every array's declared shape and dtype
checked before any array is built.

Since format 2 the manifest lists each file with its size and SHA-256; a missing, truncated or
modified file is refused naming the file and the previous checkpoint to fall back on. A
checkpoint of format 1 (written before hashes existed) loads with a warning.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import msgpack
import numpy as np

HASHED_FORMAT = 2
"""The first checkpoint format whose manifest holds the files' SHA-256 and sizes."""

KNOWN_FILES = frozenset(
    {
        "config.json",
        "params.msgpack",
        "state.msgpack",
        "loop.msgpack",
        "buffer.msgpack",
        "runner.msgpack",
        "runner_buffer.msgpack",
        "meta.json",
    }
)
"""The files a checkpoint may list."""

REQUIRED_FILES = ("config.json", "params.msgpack", "state.msgpack", "loop.msgpack", "meta.json")
"""The files every checkpoint lists."""

_COUNTERS = ("env_steps", "n_updates", "key_index")
_HASHED_COUNTERS = ("ticks", "rollout_count", "tracker_window")
_STEP_DIR = re.compile(r"^step_(\d+)$")

_DTYPES: dict[bytes, np.dtype] = {
    np.dtype(t).name.encode(): np.dtype(t)
    for t in (bool, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)
    + (np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)
}
_DTYPES[b"bfloat16"] = np.dtype(jnp.bfloat16)
"""The dtypes a msgpack array may declare (what JAX states hold)."""


class CheckpointError(ValueError):
    """A checkpoint that is incomplete, damaged or does not fit: the message names the file."""


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data``, in hexadecimal."""
    return hashlib.sha256(data).hexdigest()


def previous_checkpoint_hint(checkpoint: Path) -> str:
    """A sentence naming the newest complete checkpoint before ``checkpoint`` in its run, and
    how to resume from it (or saying that there is none)."""
    match = _STEP_DIR.match(checkpoint.name)
    root = checkpoint.parent
    earlier = []
    if match and root.is_dir():
        for child in root.iterdir():
            other = _STEP_DIR.match(child.name)
            if other and int(other.group(1)) < int(match.group(1)):
                if (child / "meta.json").is_file():
                    earlier.append((int(other.group(1)), child))
    if not earlier:
        return "No earlier checkpoint of this run exists to fall back on."
    previous = max(earlier)[1]
    return (
        f"The previous checkpoint is {previous.name}: resume from it with `kitae resume "
        f"{root.parent} --checkpoint {previous.name}` (or Agent.resume('{previous}'))."
    )


def _damaged(checkpoint: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{what} {previous_checkpoint_hint(checkpoint)}")


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def check_manifest(meta: Any, checkpoint: Path) -> None:
    """Checks that a checkpoint's manifest has every entry, with the right types.

    Raises:
        CheckpointError: naming ``meta.json`` and the missing or malformed entry.
    """
    where = checkpoint / "meta.json"
    if not isinstance(meta, dict):
        raise _damaged(checkpoint, f"{where} is not a JSON object: the checkpoint is damaged.")
    problems = []
    if not _is_count(meta.get("format")):
        problems.append("format")
    for key in ("agent_class", "run_name"):
        if not isinstance(meta.get(key), str):
            problems.append(key)
    hashed = _is_count(meta.get("format")) and meta["format"] >= HASHED_FORMAT
    for key in _COUNTERS + (_HASHED_COUNTERS if hashed else ()):
        if not _is_count(meta.get(key)):
            problems.append(key)
    if not isinstance(meta.get("last_info", {}), dict):
        problems.append("last_info")
    files = meta.get("files")
    if (
        not isinstance(files, list)
        or not all(isinstance(f, str) for f in files)
        or not set(REQUIRED_FILES) <= set(files) <= KNOWN_FILES
    ):
        problems.append("files")
    elif hashed:
        listed = sorted(set(files) - {"meta.json"})
        digests, sizes = meta.get("sha256"), meta.get("bytes")
        if (
            not isinstance(digests, dict)
            or sorted(digests) != listed
            or not all(
                isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in digests.values()
            )
        ):
            problems.append("sha256")
        if not isinstance(sizes, dict) or sorted(sizes) != listed:
            problems.append("bytes")
        elif not all(_is_count(n) for n in sizes.values()):
            problems.append("bytes")
    if problems:
        raise _damaged(
            checkpoint,
            f"{where} lacks or has malformed entries {problems}: the checkpoint is damaged or "
            "was not written by kitae.",
        )
    if not hashed:
        warnings.warn(
            f"{checkpoint} was written before checkpoints held SHA-256 hashes (format "
            f"{meta['format']}): its files are loaded unverified. Save it again to add them.",
            UserWarning,
            stacklevel=3,
        )


def read_verified(checkpoint: Path, name: str, meta: dict[str, Any]) -> bytes:
    """The bytes of the checkpoint file ``name``, checked against the manifest's size and
    SHA-256 (read unverified from a checkpoint of format 1).

    Raises:
        CheckpointError: if the file is not listed, missing, truncated or modified.
    """
    path = checkpoint / name
    if name not in meta["files"]:
        raise _damaged(checkpoint, f"{path} is not listed in {checkpoint / 'meta.json'}.")
    if not path.is_file():
        raise _damaged(checkpoint, f"checkpoint file {path} is missing.")
    if meta["format"] < HASHED_FORMAT:  # written before hashes: check_manifest warned
        return path.read_bytes()
    expected = meta["bytes"][name]
    size = path.stat().st_size
    if size != expected:
        kind = "truncated" if size < expected else "longer than written"
        raise _damaged(
            checkpoint,
            f"checkpoint file {path} is {kind}: {size} bytes, the manifest says {expected}.",
        )
    data = path.read_bytes()
    if sha256(data) != meta["sha256"][name]:
        raise _damaged(
            checkpoint,
            f"checkpoint file {path} is damaged: its SHA-256 differs from the one recorded "
            "when it was written.",
        )
    return data


# ---- msgpack with declared arrays ----------------------------------------------------------------


class DeclaredArray:
    """An array of a msgpack file whose header (shape, dtype) is checked against its data
    size, not yet built: compare :attr:`shape` and :attr:`dtype` first, then :meth:`build`.

    Attributes:
        shape: the declared shape.
        dtype: the declared dtype.
        problem: why the header is invalid, or ``None``.
    """

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, parts: list[bytes], problem: str | None
    ):
        self.shape, self.dtype, self.parts, self.problem = shape, dtype, parts, problem

    def build(self) -> np.ndarray:
        """The array (of the bytes already read, no copy for a single chunk)."""
        flat = [np.frombuffer(p, self.dtype) for p in self.parts]
        data = flat[0] if len(flat) == 1 else np.concatenate(flat)
        return data.reshape(self.shape)


def _declared(data: bytes) -> DeclaredArray:
    """The array of flax's msgpack ndarray encoding ``[shape, dtype name, buffer]``."""
    try:
        shape, name, buffer = msgpack.unpackb(data, raw=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        return DeclaredArray((), np.dtype(np.uint8), [], "an unreadable array header")
    dtype = _DTYPES.get(name) if isinstance(name, bytes) else None
    if dtype is None:
        return DeclaredArray((), np.dtype(np.uint8), [], f"the dtype {name!r}")
    if not isinstance(shape, (list, tuple)) or not all(_is_count(n) for n in shape):
        return DeclaredArray((), dtype, [], f"the shape {shape!r}")
    shape = tuple(shape)
    if not isinstance(buffer, bytes) or math.prod(shape) * dtype.itemsize != len(buffer):
        size = len(buffer) if isinstance(buffer, bytes) else 0
        return DeclaredArray(
            shape, dtype, [], f"the shape {shape} {dtype.name} with only {size} bytes of data"
        )
    return DeclaredArray(shape, dtype, [buffer], None)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 1:  # flax's ndarray
        return _declared(data)
    if code == 3:  # a numpy scalar
        array = _declared(data)
        if array.problem is None and array.shape == ():
            return array.build()[()]
        return DeclaredArray((), array.dtype, [], array.problem or "a scalar with a shape")
    if code == 2:  # a Python complex
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    return DeclaredArray((), np.dtype(np.uint8), [], f"an unknown msgpack extension {code}")


def _join_chunks(node: dict[str, Any]) -> DeclaredArray:
    """flax's chunked form of an array over 1 GiB, checked like one array."""
    shape = tuple(node.get("shape", {}).values()) if isinstance(node.get("shape"), dict) else ()
    chunks = list(node.get("chunks", {}).values()) if isinstance(node.get("chunks"), dict) else []
    if not chunks or not all(isinstance(c, DeclaredArray) and c.problem is None for c in chunks):
        return DeclaredArray((), np.dtype(np.uint8), [], "a chunked array with invalid chunks")
    dtype = chunks[0].dtype
    total = sum(math.prod(c.shape) for c in chunks)
    if not all(_is_count(n) for n in shape) or any(c.dtype != dtype for c in chunks):
        return DeclaredArray((), dtype, [], f"a chunked array of shape {shape!r}")
    if math.prod(shape) != total:
        return DeclaredArray(
            shape, dtype, [], f"the shape {shape} {dtype.name} with {total} elements of data"
        )
    return DeclaredArray(shape, dtype, [p for c in chunks for p in c.parts], None)


def _walk(node: Any, path: str, found: list[tuple[str, DeclaredArray]]) -> Any:
    """``node`` with chunked arrays joined, collecting its arrays with their paths."""
    if isinstance(node, dict):
        if "__msgpack_chunked_array__" in node:
            node = _join_chunks(node)
        else:
            return {k: _walk(v, f"{path}[{k!r}]", found) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_walk(v, f"{path}[{i}]", found) for i, v in enumerate(node))
    if isinstance(node, DeclaredArray):
        found.append((path, node))
    return node


def decode(data: bytes, path: Path) -> Any:
    """The tree of a msgpack checkpoint file with :class:`DeclaredArray` leaves, every array
    header checked against its data (nothing is allocated from a declared shape).

    Args:
        data: the file's bytes.
        path: the file (for messages).

    Raises:
        CheckpointError: naming the file and the entry whose header is invalid.
    """
    try:
        tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        message = f"checkpoint file {path} is not valid msgpack ({error})."
        raise _damaged(path.parent, message) from error
    found: list[tuple[str, DeclaredArray]] = []
    tree = _walk(tree, "", found)
    for where, array in found:
        if array.problem is not None:
            raise _damaged(
                path.parent,
                f"checkpoint file {path}: the entry {where or '(root)'} declares "
                f"{array.problem}: the file is damaged or crafted.",
            )
    return tree


def build(tree: Any) -> Any:
    """``tree`` with every :class:`DeclaredArray` built into a numpy array."""
    if isinstance(tree, DeclaredArray):
        return tree.build()
    if isinstance(tree, dict):
        return {k: build(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(build(v) for v in tree)
    return tree
