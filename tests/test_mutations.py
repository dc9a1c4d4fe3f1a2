"""The suite kills every declared mutant (see :mod:`mutants`).

For each mutant, its tests run in a pytest session with the mutant applied; the session must end
with failing tests (exit code 1), not pass, error out at collection or find no test. The mutants
are shared among ``os.cpu_count()`` worker processes (``tests/mutants/runner.py``), which start
when the first of these tests runs (``tests/conftest.py`` runs this module last, so they find the
compilation cache warm). By hand, one mutant in its own process:
``KITAE_MUTANT=<name> python -m pytest -x -q <its tests>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mutants import load_all

REPO_ROOT = Path(__file__).resolve().parent.parent
MUTANTS = load_all()


def run_mutants(names: list[str], results: Path) -> dict[str, dict]:
    """Runs ``names`` in one worker process; returns each mutant's ``{exit_code, output}``."""
    env = {k: v for k, v in os.environ.items() if k != "KITAE_MUTANT"}
    runner = REPO_ROOT / "tests" / "mutants" / "runner.py"
    done = subprocess.run(
        [sys.executable, str(runner), str(results), *names],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    found = {}
    if results.exists():
        found = {row["name"]: row for row in map(json.loads, results.read_text().splitlines())}
    for name in names:  # a worker that died reports its own output for what it did not run
        found.setdefault(name, {"exit_code": done.returncode, "output": done.stdout + done.stderr})
    return found


@pytest.fixture(scope="module")
def mutant_runs(request, tmp_path_factory) -> dict[str, dict]:
    """The result of every selected mutant, from ``cpu_count`` workers run side by side."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_the_suite_kills_the_mutant"
        and not missing_modules(MUTANTS[item.callspec.params["name"]])
    ]
    n_workers = max(1, min(os.cpu_count() or 1, len(selected)))
    chunks = [selected[i::n_workers] for i in range(n_workers)]
    folder = tmp_path_factory.mktemp("mutants")
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        parts = pool.map(
            lambda i: run_mutants(chunks[i], folder / f"worker{i}.jsonl"), range(n_workers)
        )
        return {name: row for part in parts for name, row in part.items()}


def missing_modules(m) -> list[str]:
    """The optional modules that mutant ``m`` requires and this environment lacks."""
    return [module for module in m.requires if importlib.util.find_spec(module) is None]


def test_every_mutant_names_existing_tests():
    for m in MUTANTS.values():
        for node in m.tests:
            path = REPO_ROOT / node.split("::")[0]
            assert path.is_file(), f"mutant {m.name}: no test file {path}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_suite_kills_the_mutant(name, request):
    missing = missing_modules(MUTANTS[name])
    if missing:
        pytest.skip(f"its tests need {', '.join(missing)}")
    result = request.getfixturevalue("mutant_runs")[name]
    assert result["exit_code"] == 1, (
        f"mutant {name!r} ({MUTANTS[name].description}) was not killed: pytest exited "
        f"{result['exit_code']} (1 means a test failed).\n{result['output'][-3000:]}"
    )
