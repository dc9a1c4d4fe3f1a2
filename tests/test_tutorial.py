"""Runs tutorials/custom_agent.md: its ```python blocks, in order, in one namespace.

The learning test executes the whole tutorial as written (CartPole-v1, 4 envs, ``N_ENV_STEPS``
transitions, fixed ``SEED``) and checks that the custom DQN really learns: it updates, its
parameters and target parameters move, and its greedy return is far above a random policy's.
Set ``KITAE_TUTORIAL_N_ENV_STEPS`` to override the tutorial's ``N_ENV_STEPS`` (the learning
thresholds assume the tutorial's value).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import warnings
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np
import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "custom_agent.md"
TRAINING_HEADING = "## 7. Training"
RANDOM_POLICY_RETURN = 22.0  # mean return of a uniformly random policy on CartPole-v1


def python_blocks(text: str) -> list[str]:
    """The contents of the ```python fenced blocks of ``text``, in order."""
    return re.findall(r"^```python[ \t]*\n(.*?)^```", text, flags=re.M | re.S)


def tutorial_text() -> str:
    return TUTORIAL.read_text(encoding="utf-8")


def exec_blocks(blocks: list[str], namespace: dict | None = None) -> dict:
    namespace = {"__name__": "custom_agent_tutorial"} if namespace is None else namespace
    for i, block in enumerate(blocks):
        # dont_inherit: run the tutorial as a user would, without this module's __future__ flags.
        code = compile(block, f"{TUTORIAL.name}[block {i}]", "exec", dont_inherit=True)
        exec(code, namespace)
    return namespace


def override_steps(blocks: list[str]) -> list[str]:
    """``blocks`` with ``N_ENV_STEPS`` set from ``KITAE_TUTORIAL_N_ENV_STEPS`` when it is set."""
    steps = os.environ.get("KITAE_TUTORIAL_N_ENV_STEPS")
    if not steps:
        return blocks
    pattern = re.compile(r"^N_ENV_STEPS = .*$", flags=re.M)
    assert sum(len(pattern.findall(b)) for b in blocks) == 1, "N_ENV_STEPS must be defined once"
    return [pattern.sub(f"N_ENV_STEPS = {int(steps)}", b) for b in blocks]


def definition_blocks() -> list[str]:
    """Sections 0 to 6: imports, factories and the DQN class, without training."""
    text = tutorial_text()
    assert TRAINING_HEADING in text
    return python_blocks(text.split(TRAINING_HEADING)[0])


def tree_equal(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    pairs = zip(leaves_a, leaves_b, strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def test_tutorial_structure():
    text = tutorial_text()
    for title in (
        "## 0. Import everything",
        "## 1. DQN parameters",
        "## 2. TrainState Factory",
        "## 3. Explore factory",
        "## 4. Process experience factory",
        "## 5. Update factory",
        "## 6. The DQN class",
        "## 7. Training",
        "## What changed from the original tutorial",
    ):
        assert title in text, title
    assert len(python_blocks(text)) >= 8
    assert "run_dir" not in "\n".join(python_blocks(text))


def test_every_import_is_used():
    blocks = python_blocks(tutorial_text())
    tree = ast.parse("\n".join(blocks))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported - used == set()


def test_original_config_is_rejected():
    """The original tutorial's replay settings can never fill a batch: kitae refuses them."""
    ns = exec_blocks(definition_blocks())
    cfg = ns["cfg"]
    env_cfg = cfg.EnvConfig(
        task_name="CartPole-v1",
        observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        action_space=gym.spaces.Discrete(2),
        n_envs=16,
    )
    config = cfg.AlgoConfig(
        seed=0,
        algo_params=ns["DQNParams"](exploration=0.1, gamma=0.99, skip_steps=1, start_step=-1),
        update_cfg=cfg.UpdateConfig(learning_rate=3e-4, max_buffer_size=64, batch_size=256),
        train_cfg=cfg.TrainConfig(n_env_steps=5 * 10**5, progress_bar=False),
        env_cfg=env_cfg,
    )
    with pytest.raises(ValueError, match="batch_size"):
        ns["DQN"](run_name="broken", config=config)

    # The same config with a batch that fits is accepted.
    fixed = dataclasses.replace(
        config, update_cfg=dataclasses.replace(config.update_cfg, batch_size=64)
    )
    ns["DQN"](run_name="fixed", config=fixed)


def tutorial_config(ns: dict, **update) -> object:
    """The tutorial's CartPole config (section 7) with ``update`` overriding its UpdateConfig."""
    cfg = ns["cfg"]
    update_cfg = {
        "learning_rate": 1e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": 10.0,
        "max_buffer_size": 20_000,
        "batch_size": 64,
        "n_epochs": 1,
        **update,
    }
    return cfg.AlgoConfig(
        seed=0,
        algo_params=ns["DQNParams"](exploration=0.1, gamma=0.99, skip_steps=4, start_step=1_000),
        update_cfg=cfg.UpdateConfig(**update_cfg),
        train_cfg=cfg.TrainConfig(n_env_steps=40_000, progress_bar=False),
        env_cfg=cfg.EnvConfig(
            task_name="CartPole-v1",
            observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            action_space=gym.spaces.Discrete(2),
            n_envs=4,
        ),
    )


def ignored_fields_warnings(build) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [str(w.message) for w in caught if "ignores update_cfg fields" in str(w.message)]


def test_custom_agent_warns_about_update_fields_its_factories_ignore():
    ns = exec_blocks(definition_blocks())
    dqn = ns["DQN"]
    assert ignored_fields_warnings(lambda: dqn("as-written", tutorial_config(ns))) == []

    # its optimizer has no learning-rate annealing
    config = tutorial_config(ns, learning_rate_annealing=True)
    messages = ignored_fields_warnings(lambda: dqn("annealed", config))
    assert len(messages) == 1
    assert messages[0].startswith(
        "DQN ignores update_cfg fields set away from their defaults: learning_rate_annealing=True."
    )

    # The original tutorial's optimizer was a bare optax.adam: max_grad_norm had no effect.
    blocks = definition_blocks()
    clipping = re.compile(r"^    if config\.update_cfg\.max_grad_norm is not None:\n.*\n", re.M)
    unclipped = [clipping.sub("", block) for block in blocks]
    assert sum(a != b for a, b in zip(blocks, unclipped, strict=True)) == 1
    original = exec_blocks(unclipped)
    messages = ignored_fields_warnings(lambda: original["DQN"]("bare-adam", tutorial_config(ns)))
    assert len(messages) == 1 and "max_grad_norm=10.0" in messages[0]


@pytest.mark.slow
def test_tutorial_runs_and_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tutorial must not write into the working directory
    blocks = python_blocks(tutorial_text())
    ns = exec_blocks(override_steps(blocks))

    dqn, summary, config = ns["dqn"], ns["summary"], ns["algo_config"]
    assert list(tmp_path.iterdir()) == []

    # It trained for the requested transitions and performed updates.
    assert summary["env_steps"] == ns["N_ENV_STEPS"]
    assert summary["n_updates"] > 0
    assert dqn.n_updates == summary["n_updates"]
    assert int(dqn.state.step) == summary["n_updates"] * config.update_cfg.n_epochs
    assert np.isfinite(float(dqn.last_info["loss_qvalue"]))

    # Parameters moved away from their initial values (an identical agent rebuilt from the same
    # seed holds them), and so did the target network, which lags the online one.
    init_state = ns["DQN"](run_name="init", config=config).state
    assert tree_equal(init_state.params, init_state.target_params)
    assert not tree_equal(dqn.state.params, init_state.params)
    assert not tree_equal(dqn.state.target_params, init_state.target_params)
    period = config.algo_params.target_update_period
    if int(dqn.state.step) % period != 0:
        assert not tree_equal(dqn.state.target_params, dqn.state.params)

    # It learned: training returns went up, and the greedy policy is far better than random.
    returns = np.asarray(dqn.episode_returns)
    n = max(len(returns) // 10, 1)
    first, last = returns[:n].mean(), returns[-n:].mean()
    assert last > 2 * first and last > 100, (first, last)
    eval_returns = np.asarray(ns["eval_returns"])
    assert eval_returns.shape == (10,)
    assert eval_returns.mean() >= max(100.0, 4 * RANDOM_POLICY_RETURN), eval_returns
