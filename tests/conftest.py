"""Shared test setup.

JAX's persistent compilation cache is enabled here, at import time of this conftest (before any
test module compiles anything), so repeated test runs reuse compiled executables. The cache lives
outside the checkout, in the user cache directory ``$XDG_CACHE_HOME/kitae/jax-tests`` (by
default ``~/.cache/kitae/jax-tests``), or in ``<system tmp>/kitae-jax-tests-<uid>`` without a
home directory; ``KITAE_TEST_JAX_CACHE`` names another directory. (The command line's own cache,
:mod:`kitae.compilation_cache`, sees this one configured and leaves it in place.)
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import jax
import pytest

import kitae  # noqa: F401  (its CPU defaults must be set before JAX initialises a backend)
from kitae.compilation_cache import user_cache_dir

JAX_CACHE_DIR = Path(os.environ.get("KITAE_TEST_JAX_CACHE") or user_cache_dir("jax-tests"))

jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(session, config, items):
    """Runs the mutation tests last: their subprocesses then find the compilation cache warm."""
    items.sort(key=lambda item: getattr(item.module, "__name__", "") == "test_mutations")


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


_MUTANT = os.environ.get("KITAE_MUTANT")
if _MUTANT:
    # A mutation run (see tests/mutants): apply the named deliberate bug for the whole session.
    from mutants import load_all

    _mutants = load_all()
    if _MUTANT not in _mutants:
        raise pytest.UsageError(f"KITAE_MUTANT={_MUTANT!r} is not a declared mutant")
    _mutant_patch = pytest.MonkeyPatch()
    _mutants[_MUTANT].apply(_mutant_patch)
