"""Mutants of the package layout: an import that goes up again, as ``tests/test_layout.py`` reads
the source."""

from __future__ import annotations

import import_graph

from mutants import mutant

LAYERS = "tests/test_layout.py::test_the_foundation_and_the_loops_never_import_upwards"
CYCLES = "tests/test_layout.py::test_there_is_no_import_cycle"


def _with_added(module: str, code: str):
    original = import_graph.read_sources

    def read_sources(*args, **kwargs):
        sources = original(*args, **kwargs)
        sources[module] = sources[module] + "\n\n" + code
        return sources

    return read_sources


@mutant(
    "evaluation-imports-the-compiled-loop",
    "kitae/evaluation.py imports kitae.compiled inside a function again",
    [LAYERS, CYCLES],
)
def _(monkeypatch):
    code = "def _evaluate_compiled(*args):\n    from kitae.compiled import make_train\n"
    monkeypatch.setattr(import_graph, "read_sources", _with_added("kitae.evaluation", code))


@mutant(
    "logger-imports-the-optimizer",
    "kitae/logger.py imports kitae.modules.optimizer (which imports kitae.config, which imports "
    "kitae.logger) inside a function again",
    [CYCLES],
)
def _(monkeypatch):
    code = "def _rates(state):\n    from kitae.modules.optimizer import get_learning_rate\n"
    monkeypatch.setattr(import_graph, "read_sources", _with_added("kitae.logger", code))


@mutant(
    "checkpoint-imports-the-agent-for-type-hints",
    "kitae/checkpoint/saving.py imports kitae.agent under TYPE_CHECKING",
    [LAYERS],
)
def _(monkeypatch):
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kitae.agent import BaseAgent\n"
    )
    monkeypatch.setattr(import_graph, "read_sources", _with_added("kitae.checkpoint.saving", code))
