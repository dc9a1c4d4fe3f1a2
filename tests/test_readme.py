"""The README's Python examples run as written (with fewer env steps, to stay fast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_tutorial import exec_blocks, python_blocks

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTER = {"50_000": "2_000", "200_000": "4_096"}


def test_readme_commands_name_the_main_job_and_the_tests():
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    assert "kitae train dqn --env CartPole-v1" in commands[0]
    install = re.search(r'pip install -e "(\.\[[a-z,]+\])"', commands[1])
    assert install is not None and "python -m pytest -q" in commands[1]
    # CI installs the same extras and runs the same test command
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert f'pip install -q -e "{install.group(1)}"' in ci
    assert "python -m pytest -q" in ci


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("gymnax")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    for long, short in SHORTER.items():
        blocks = [b.replace(long, short) for b in blocks]
    ns = exec_blocks(blocks, {"__name__": "readme"})
    assert ns["agent"].n_updates > 0
    assert ns["metrics"].episode_return.shape[0] == 8
    assert list(tmp_path.iterdir()) == []
