"""Mutants of multi-process data-parallel training (``tests/test_distributed.py``).

The multi-process test runs its workers in subprocesses: a mutant here also sets
``KITAE_SUBPROCESS_MUTANT`` to its own name, which ``tests/distributed_worker.py`` reads to
apply the same patch in each worker.
"""

from __future__ import annotations

import contextlib

import kitae.distributed as distributed
from mutants import mutant

DISTRIBUTED = "tests/test_distributed.py"


@mutant(
    "distributed-gradients-not-averaged",
    "data-parallel replicas apply their own gradients: nothing is averaged across processes",
    [f"{DISTRIBUTED}::test_two_processes_end_with_bit_identical_parameters"],
)
def _(monkeypatch):
    monkeypatch.setattr(
        distributed, "averaged_gradients", lambda axis_name: contextlib.nullcontext()
    )
    monkeypatch.setenv("KITAE_SUBPROCESS_MUTANT", "distributed-gradients-not-averaged")
