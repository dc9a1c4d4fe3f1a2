"""Shared test setup.

JAX's persistent compilation cache is enabled here, at import time of this conftest (before any
test module compiles anything), so repeated test runs reuse compiled executables. The cache lives
in ``<repo>/.jax_cache`` (git-ignored) unless ``KITAE_TEST_JAX_CACHE`` names another directory.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import jax
import pytest

import kitae  # noqa: F401  (its CPU defaults must be set before JAX initialises a backend)

REPO_ROOT = Path(__file__).resolve().parent.parent
JAX_CACHE_DIR = Path(os.environ.get("KITAE_TEST_JAX_CACHE", REPO_ROOT / ".jax_cache"))

jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    """Runs the test inside an empty temporary directory, which it returns.

    Tests can assert that nothing was written to the working directory with
    ``assert not any(tmp_cwd.iterdir())``.
    """
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def trace_counter():
    """Counts JAX traces (``jaxpr_trace_duration`` events) while the test runs."""
    counts = Counter()

    def listener(event, duration, **kwargs):
        del duration, kwargs
        counts[event] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
