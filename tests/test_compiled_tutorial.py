"""Runs tutorials/compiled_training.md end to end, and the custom-agent tutorial's DQN on gymnax.

The custom agent of tutorials/custom_agent.md must train unchanged on the compiled path: its
definitions (sections 0-6) are executed, then the agent is trained on gymnax CartPole-v1.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from test_tutorial import definition_blocks, exec_blocks, python_blocks

pytest.importorskip("gymnax")

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "compiled_training.md"


@pytest.mark.slow
def test_compiled_tutorial_runs_and_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = exec_blocks(python_blocks(TUTORIAL.read_text(encoding="utf-8")), {"__name__": "t"})
    assert list(tmp_path.iterdir()) == []

    # 1. agent.train on the JAX env: all steps, updates, and learning.
    summary = ns["summary"]
    assert summary["env_steps"] == ns["N_ENV_STEPS"]
    assert summary["n_updates"] > 0 and summary["compile_s"] > 0
    rows = ns["agent"].logger.history["train"]
    returns = [r["episode_return"] for r in rows if isinstance(r["episode_return"], float)]
    assert np.mean(returns[-10:]) > 2 * np.mean(returns[:5])

    # 3. seeds are independent and learn; 4. the sweep's learning rates differ.
    final = ns["final_returns"]
    assert final.shape == (4,)
    assert np.all(np.isfinite(final))
    assert np.nanmax(final) > 100

    # 5. the callback saw every chunk.
    assert len(ns["rows"]) == 4

    # 6. data-parallel replicas share their parameters.
    runner = ns["runner"]
    params = jax.tree.leaves(runner.agent_state.params)
    assert all(np.array_equal(np.asarray(p)[0], np.asarray(p)[-1]) for p in params)


@pytest.mark.slow
def test_custom_tutorial_agent_trains_on_the_compiled_path():
    import gymnasium as gym

    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    ns = exec_blocks(definition_blocks())
    cfg = ns["cfg"]
    env = make_jax_env("CartPole-v1")
    template = gym.make("CartPole-v1")
    config = cfg.AlgoConfig(
        seed=0,
        algo_params=ns["DQNParams"](exploration=0.1, gamma=0.99, skip_steps=4, start_step=1000),
        update_cfg=cfg.UpdateConfig(
            learning_rate=1e-3, max_grad_norm=10.0, max_buffer_size=20_000, batch_size=64
        ),
        train_cfg=cfg.TrainConfig(n_env_steps=40_000, progress_bar=False),
        env_cfg=cfg.EnvConfig(
            "CartPole-v1", template.observation_space, template.action_space, n_envs=4
        ),
    )
    agent = ns["DQN"](run_name="custom-compiled", config=config_for_jax_env(config, env, 4))
    initial = jax.tree.map(np.asarray, agent.state.params)
    summary = agent.train(env)
    assert summary["n_updates"] == agent.n_updates > 0
    changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, np.asarray(b)), initial, agent.state.params
    )
    assert all(jax.tree.leaves(changed))
    returns = [
        r["episode_return"]
        for r in agent.logger.history["train"]
        if isinstance(r["episode_return"], float)
    ]
    assert np.mean(returns[-10:]) > 2 * np.mean(returns[:5])
