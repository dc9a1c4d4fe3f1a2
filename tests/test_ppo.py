"""Tests for PPO's tanh-squashed continuous policy (``PPOParams.squash_actions``)."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import Target, corridor, make_vec
from helpers import small_config

from kitae.algos import PPO, PPOParams
from kitae.algos import ppo as ppo_module
from kitae.config import AlgoConfig


def ppo_config(env, *, seed=0, n_env_steps=96, update=None, **params) -> AlgoConfig:
    """A small PPO config: rollouts of 32 transitions, minibatches of 8, 2 epochs."""
    algo_params = {"hidden_sizes": (32, 32), "squash_actions": True, **params}
    update_params = {
        "learning_rate": 1e-3,
        "max_buffer_size": 32,
        "batch_size": 8,
        "n_epochs": 2,
        **(update or {}),
    }
    return small_config(
        PPOParams, env, params=algo_params, update=update_params, seed=seed, n_env_steps=n_env_steps
    )


def squashed_log_prob_by_hand(u, mean, log_std, scale):
    """Change of variables for ``a = loc + scale * tanh(u)``, ``u ~ N(mean, exp(log_std))``."""
    z = (u - mean) / np.exp(log_std)
    gaussian = np.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)
    return gaussian - np.sum(np.log(1 - np.tanh(u) ** 2) + np.log(scale), axis=-1)


def test_default_policy_is_unsquashed():
    assert PPOParams().squash_actions is False


def test_squashed_explore_stores_pre_squash_actions_with_squashed_log_probs():
    env = make_vec(Target, 2)
    agent = PPO("ppo-squash", ppo_config(env, log_std_init=0.5))
    obs = np.array([[0.5], [-0.25]], np.float32)
    (mean, log_std), _ = agent.state.apply_fn(agent.state.params, obs)
    mean, log_std = np.asarray(mean), np.asarray(log_std)
    draws = [agent.explore(obs) for _ in range(50)]
    for u, log_prob in draws[:5]:
        u = np.asarray(u)
        assert u.shape == (2, 1) and np.asarray(log_prob).shape == (2,)
        np.testing.assert_allclose(
            np.asarray(log_prob),
            squashed_log_prob_by_hand(u, mean, log_std, 2.0),
            rtol=1e-4,
            atol=1e-5,
        )
    stored = np.concatenate([np.asarray(u) for u, _ in draws])
    assert np.abs(stored).max() > 1.0  # std e^0.5: pre-squash samples leave [-1, 1]
    env_actions = agent.to_env_action(stored)
    assert isinstance(env_actions, np.ndarray)
    np.testing.assert_allclose(env_actions, 2.0 * np.tanh(stored), rtol=1e-6)
    assert np.all(np.abs(env_actions) <= 2.0)


def test_squashed_select_action_is_the_mean_and_maps_to_its_squashing():
    env = make_vec(Target, 2)
    agent = PPO("ppo-squash", ppo_config(env))
    obs = np.array([[0.5], [-0.25]], np.float32)
    (mean, log_std), _ = agent.state.apply_fn(agent.state.params, obs)
    u, log_prob = agent.select_action(obs)
    np.testing.assert_allclose(np.asarray(u), np.asarray(mean), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(log_prob),
        squashed_log_prob_by_hand(np.asarray(mean), np.asarray(mean), np.asarray(log_std), 2.0),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(agent.to_env_action(u)), 2.0 * np.tanh(np.asarray(mean)), rtol=1e-6
    )


def test_squashed_update_ratio_starts_at_one():
    """The update's log-probabilities of the stored actions match the rollout's exactly, so the
    first minibatch step sees a probability ratio of 1 (approx_kl 0)."""
    env = make_vec(Target, 2)
    config = ppo_config(env, update={"n_epochs": 1, "batch_size": 32})
    agent = PPO("ppo-squash", config)
    update_step = ppo_module.update_step_factory(config)
    obs = np.random.default_rng(0).uniform(-1, 1, (32, 1)).astype(np.float32)
    u, log_prob = agent.explore(obs)
    batch = ppo_module.PPOBatch(
        jnp.asarray(obs), u, log_prob, jnp.zeros(32), jnp.ones(32), jnp.ones(32)
    )
    _, info = jax.jit(update_step)(agent.state, jax.random.PRNGKey(0), batch)
    assert abs(float(info["approx_kl"])) < 1e-6
    assert np.isfinite(float(info["entropy"]))


def test_squash_actions_rejects_discrete_actions():
    with pytest.raises(ValueError, match="algo_params.squash_actions"):
        PPO("bad", ppo_config(make_vec(corridor, 2)))


def test_squash_actions_rejects_infinite_bounds():
    config = ppo_config(make_vec(Target, 2))
    config.env_cfg.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    with pytest.raises(ValueError, match="infinite bounds"):
        PPO("bad", config)


def test_squashed_ppo_learns_a_continuous_target():
    env = make_vec(Target, 2)
    # Pre-squash std 0.5: near 0 the squashing doubles it, so the actions spread like the
    # unsquashed policy's (std 1) in the same test of tests/test_agents.py.
    config = ppo_config(env, n_env_steps=2_048, log_std_init=math.log(0.5))
    agent = PPO("ppo-squash-target", config)
    targets = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]

    def mse():
        actions = agent.to_env_action(np.asarray(agent.select_action(targets)[0]))
        return float(np.mean((actions - targets) ** 2))

    initial = mse()
    agent.train(env)
    final = mse()
    assert initial > 0.2
    assert final < 0.05, (initial, final)


def test_squashed_ppo_trains_on_the_compiled_path():
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    env = make_jax_env("Pendulum-v1")
    config = config_for_jax_env(ppo_config(gym.make("Pendulum-v1"), n_env_steps=2_048), env, 4)
    agent = PPO("ppo-squash-compiled", config)
    before = jax.device_get(agent.state.params)
    summary = agent.train(env, 2_048)
    assert summary["n_updates"] == 2_048 // 32
    after = jax.device_get(agent.state.params)
    assert all(not np.array_equal(a, b) for a, b in zip(leaves(before), leaves(after), strict=True))
    assert all(np.isfinite(x).all() for x in leaves(after))
    u = jnp.array([[-30.0], [0.0], [30.0]])
    np.testing.assert_allclose(np.asarray(agent.to_env_action(u)), [[-2.0], [0.0], [2.0]])


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]
