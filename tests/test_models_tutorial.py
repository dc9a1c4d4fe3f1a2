"""Runs tutorials/implement_model.md: its ```python blocks, in order, in one namespace.

Blocks fenced as ```python torch run only when torch is installed. The run checks that both
models of the two-agent gridworld improve: the mean return of the last 5 epochs is far above
that of the first 5.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "implement_model.md"


def tagged_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, code)`` of the ```python fenced blocks (``tag`` is what follows ``python``)."""
    return [
        (tag.strip(), code)
        for tag, code in re.findall(r"^```python([^\n]*)\n(.*?)^```", text, flags=re.M | re.S)
    ]


def run_tutorial() -> dict:
    namespace: dict = {"__name__": "implement_model_tutorial"}
    has_torch = importlib.util.find_spec("torch") is not None
    for i, (tag, code) in enumerate(tagged_blocks(TUTORIAL.read_text(encoding="utf-8"))):
        assert tag in ("", "torch"), tag
        if tag == "torch" and not has_torch:
            continue
        exec(compile(code, f"{TUTORIAL.name}[block {i}]", "exec", dont_inherit=True), namespace)
    return namespace


def test_tutorial_structure():
    text = TUTORIAL.read_text(encoding="utf-8")
    for title in (
        "## 1. The model interface",
        "## 2. The memory",
        "## 3. The pre-built models",
        "## 4. A two-agent gridworld",
        "## 5. Training",
        "## 6. Models written elsewhere",
        "## 7. Playing as a human",
        "## 8. Coming from Sorrel",
    ):
        assert title in text
    assert any(tag == "torch" for tag, _ in tagged_blocks(text))


def test_tutorial_runs_and_both_models_improve(capsys):
    ns = run_tutorial()
    history = ns["history"]
    assert history.shape == (ns["EPOCHS"], 2)
    first, last = history[:5].mean(axis=0), history[-5:].mean(axis=0)
    # a random policy reaches the far corner about once in 40 turns at most; trained: ~5.5
    assert np.all(last > first + 3.0), (first, last)
    assert np.all(last > 3.5), last
    out = capsys.readouterr().out
    assert "mean return, epochs 1-5" in out and "human return" in out
    assert ns["player"].quit
    # section 8: a model built from Sorrel's arguments, saved and loaded
    assert "IQNModel restored" in out and "the Sorrel-style player quit" in out
    assert ns["model"].agent.n_updates == 3 and ns["sorrel_player"].quit
    assert ns["agents"][0].model is ns["iqn_model"]
