"""The package layout: imports go one way.

From the top: :mod:`kitae.base` (the public re-exports), :mod:`kitae.off_policy` /
:mod:`kitae.on_policy`, :mod:`kitae.agent`, :mod:`kitae.host_loop`, then :mod:`kitae.compiled` /
:mod:`kitae.actor_learner`; below them the foundation (checkpoints, evaluation, the update
builders, config, logging, buffers, networks, envs...), which never imports any of them. The
algorithms, models, multi-agent trainer, command line and distributed runs build on top.

Imports are read from the source (see ``tests/import_graph.py``), inside functions included.
"""

from __future__ import annotations

import import_graph
import pytest
from import_graph import Edge, graph_of, import_edges, strongly_connected

STACK_RANK = {
    "kitae.base": 5,
    "kitae.off_policy": 4,
    "kitae.on_policy": 4,
    "kitae.agent": 3,
    "kitae.host_loop": 2,
    "kitae.compiled": 1,
    "kitae.actor_learner": 1,
}
"""The agent and its loops, top (highest) to bottom: a module imports only lower ranks."""

APPLICATIONS = (
    "kitae.algos",
    "kitae.builders",
    "kitae.models",
    "kitae.multiagent",
    "kitae.cli",
    "kitae.distributed",
    "kitae.__main__",
)
"""Packages built on the agent (they may import any module, within the cycle rules)."""

LAZY_CYCLES = (
    {"kitae.buffer", "kitae.frame_replay"},
    {"kitae.envs.jax_env", "kitae.envs.brax"},
    {"kitae.cli", "kitae.cli.commands", "kitae.cli.sweep"},
    {"kitae.algos.dqn", "kitae.algos.r2d2"},
)
"""Modules that import one another only inside functions, on purpose: the frame-stacking replay
buffer built by ``make_replay_buffer``, the optional Brax backend, the command line's
subcommands loaded on demand, DQN's LSTM torso running R2D2's sequence machinery (R2D2 builds on
DQN's params and targets)."""


def _is_application(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in APPLICATIONS)


def _is_foundation(module: str) -> bool:
    return module not in STACK_RANK and not _is_application(module) and module != "kitae"


def layer_violations(edges: list[Edge]) -> list[str]:
    """The imports that go up: a foundation module importing the agent, a loop or an
    application; an agent or loop module importing one of the same or a higher rank, or an
    application. ``TYPE_CHECKING`` imports count too."""
    found = []
    for edge in edges:
        source, target = edge.importer, edge.imported
        where = f"{source} line {edge.line} imports {target}"
        if _is_foundation(source) and not _is_foundation(target) and target != "kitae":
            found.append(f"{where}: the foundation must not import the agent, loops or apps")
        elif source in STACK_RANK and _is_application(target):
            found.append(f"{where}: the agent and loops must not import the applications")
        elif source in STACK_RANK and target in STACK_RANK:
            if STACK_RANK[target] >= STACK_RANK[source]:
                found.append(f"{where}: {target} is not below {source}")
    return found


def cycle_violations(edges: list[Edge]) -> list[str]:
    """Import cycles: any among module-level imports, and, counting the imports inside
    functions, any that is not one of :data:`LAZY_CYCLES`."""
    found = [
        f"module-level import cycle among {sorted(group)}"
        for group in strongly_connected(graph_of(edges, module_level_only=True))
    ]
    for group in strongly_connected(graph_of(edges, module_level_only=False)):
        if not any(group <= allowed for allowed in LAZY_CYCLES):
            found.append(f"import cycle (through imports inside functions) among {sorted(group)}")
    return found


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(import_graph.read_sources())


def test_the_foundation_and_the_loops_never_import_upwards(edges):
    assert layer_violations(edges) == []


def test_there_is_no_import_cycle(edges):
    assert cycle_violations(edges) == []


def test_the_graph_is_read_inside_functions_and_under_type_checking():
    sources = {
        "kitae.evaluation": "def f():\n    from kitae.compiled import make_train\n",
        "kitae.compiled": "from kitae.evaluation import evaluate\n",
        "kitae.checkpoint": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kitae.agent import BaseAgent\n",
        "kitae.agent": "import kitae.checkpoint\n",
    }
    got = {(e.importer, e.imported, e.module_level, e.type_checking) for e in import_edges(sources)}
    assert got == {
        ("kitae.evaluation", "kitae.compiled", False, False),
        ("kitae.compiled", "kitae.evaluation", True, False),
        ("kitae.checkpoint", "kitae.agent", True, True),
        ("kitae.agent", "kitae.checkpoint", True, False),
    }
    layers = layer_violations(import_edges(sources))
    assert [v.split(":")[0] for v in layers] == [
        "kitae.evaluation line 2 imports kitae.compiled",
        "kitae.checkpoint line 3 imports kitae.agent",
    ]
    assert cycle_violations(import_edges(sources)) == [
        "import cycle (through imports inside functions) among "
        "['kitae.compiled', 'kitae.evaluation']"
    ]


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("IAgent", "kitae.agent"),
        ("BaseAgent", "kitae.agent"),
        ("config_to_dict", "kitae.agent"),
        ("KEY_POOL_SIZE", "kitae.agent"),
        ("OffPolicyAgent", "kitae.off_policy"),
        ("OnPolicyAgent", "kitae.on_policy"),
        ("EpisodeTracker", "kitae.envs.vector"),
        ("as_vector_env", "kitae.envs.vector"),
        ("true_next_observation", "kitae.envs.vector"),
        ("make_off_policy_update", "kitae.updates"),
        ("make_on_policy_update", "kitae.updates"),
        ("replay_buffer_from_config", "kitae.updates"),
        ("sequence_length_from_config", "kitae.updates"),
    ],
)
def test_kitae_base_re_exports_what_custom_agents_import(name, home):
    import importlib

    import kitae.base

    assert getattr(kitae.base, name) is getattr(importlib.import_module(home), name)
    assert name in kitae.base.__all__


def test_the_compiled_loop_re_exports_evaluate_compiled():
    import kitae.compiled
    import kitae.evaluation

    assert kitae.compiled.evaluate_compiled is kitae.evaluation.evaluate_compiled
