"""JAX's persistent compilation cache for command-line runs.

A training program takes seconds to compile on a CPU (10-50 s for a whole compiled training
run); JAX can keep the compiled executables on disk and reuse them when the same program (same
shapes, same config values that are baked into it, same JAX version) is compiled again. The
``kitae`` command line turns that cache on by default, so a second run of the same command, a
``kitae resume`` or a sweep member with another seed starts training without compiling.

Where it lives: ``$KITAE_COMPILATION_CACHE`` if set (``0``, ``off``, ``false`` or an empty value
turn the cache off), else ``$XDG_CACHE_HOME/kitae/jax``, else ``~/.cache/kitae/jax``, else (no
home directory) a per-user folder of the system tmp. An explicit
``jax.config.update("jax_compilation_cache_dir", ...)`` made before the command runs wins. The
cache is bounded by JAX's least-recently-used eviction at ``KITAE_COMPILATION_CACHE_MAX_BYTES``
(default 2 GiB); delete the folder to clear it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import jax

CACHE_ENV = "KITAE_COMPILATION_CACHE"
MAX_BYTES_ENV = "KITAE_COMPILATION_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 2 * 1024**3
MIN_COMPILE_SECONDS = 0.2
"""Programs that compile faster than this are not worth a disk read; kitae's update, explore
and training programs all take longer on a CPU."""

_OFF = {"0", "off", "false", "no", ""}


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/kitae/<name>``, else ``~/.cache/kitae/<name>``, else (no home
    directory) ``<system tmp>/kitae-<name>-<uid>``."""
    cache_home = os.environ.get("XDG_CACHE_HOME")
    if cache_home:
        return Path(cache_home) / "kitae" / name
    try:
        home: Path | None = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password-database entry
        home = None
    if home is not None and home.is_dir():
        return home / ".cache" / "kitae" / name
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"kitae-{name}-{user}"


def _max_bytes() -> int:
    text = os.environ.get(MAX_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"{MAX_BYTES_ENV}={text!r} is not an integer number of bytes; unset it for the "
            f"default {DEFAULT_MAX_BYTES} or use -1 for no bound."
        ) from None
    return value


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache, unless it is already configured or off.

    Args:
        directory: the cache folder (default: ``$KITAE_COMPILATION_CACHE`` or
            :func:`user_cache_dir` ``("jax")``).

    Returns:
        The cache folder in use, or ``None`` when the cache is off (``KITAE_COMPILATION_CACHE``
        set to ``0``/``off``/empty, or the folder cannot be created: a warning says so).
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    if directory is None:
        text = os.environ.get(CACHE_ENV)
        if text is not None and text.strip().lower() in _OFF:
            return None
        directory = text or user_cache_dir("jax")
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(
            f"compilation cache off: cannot create {path} ({error}); set {CACHE_ENV} to a "
            "writable folder or to 0.",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", _max_bytes())
    return path


__all__ = ["enable_compilation_cache", "user_cache_dir", "CACHE_ENV", "MAX_BYTES_ENV"]
