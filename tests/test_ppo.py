"""Tests for PPO: GAE wiring, the clipped loss and its annealing (by hand, with hand-set tables
for the policy and the value), and the tanh-squashed continuous policy
(``PPOParams.squash_actions``)."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import Target, corridor, make_vec
from helpers import small_config

from kitae.algos import PPO, PPOParams
from kitae.algos import ppo as ppo_module
from kitae.buffer import Experience
from kitae.config import AlgoConfig
from kitae.modules.train_state import TrainState


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


# ---- hand-set tables: GAE wiring, the loss, clip annealing --------------------------------------


def discrete_ppo_config(*, n_env_steps=64, update=None, **params) -> AlgoConfig:
    """A discrete PPO config (the corridor's ``Discrete(2)``): rollouts of 16 transitions,
    minibatches of 8, 2 epochs, i.e. ``64 // 16 * 2 * 2 = 16`` gradient steps."""
    algo_params = {"hidden_sizes": (8,), **params}
    update_params = {
        "learning_rate": 1.0,
        "max_buffer_size": 16,
        "batch_size": 8,
        "n_epochs": 2,
        **(update or {}),
    }
    return small_config(
        PPOParams,
        make_vec(corridor, 2),
        params=algo_params,
        update=update_params,
        n_env_steps=n_env_steps,
    )


def table_state(logits, values) -> TrainState:
    """A PPO state whose observation ``[i]`` reads row ``i`` of hand-set tables: policy logits
    ``[n, A]`` and values ``[n]``. Plain SGD with step 1: an update moves the params by
    ``-grad``."""

    def apply_fn(params, observations):
        rows = observations[:, 0].astype(jnp.int32)
        return params["logits"][rows], params["value"][rows]

    params = {
        "logits": jnp.asarray(logits, jnp.float32),
        "value": jnp.asarray(values, jnp.float32),
    }
    return TrainState.create(apply_fn=apply_fn, params=params, tx=optax.sgd(1.0))


def rows(*ids) -> jnp.ndarray:
    """Observations ``[len(ids), 1]`` naming table rows."""
    return jnp.asarray(ids, jnp.float32)[:, None]


def test_process_experience_gae_cuts_terminations_and_bootstraps_truncations_by_hand():
    # One env's rollout of 6 steps, observation ids (values V[id]) in the table:
    #   t  obs -> next  r   end
    #   0   0  ->  1    1
    #   1   1  ->  2    2   terminated (V[2] = 100 must not be used)
    #   2   3  ->  4    1   (reset observation 3)
    #   3   4  ->  5    0   truncated: bootstrap from the final observation 5, not from 6
    #   4   6  ->  7    1   (reset observation 6)
    #   5   7  ->  8    2   end of the rollout: bootstrap from 8
    values = [1.0, 2.0, 100.0, 2.0, 4.0, 8.0, 5.0, 6.0, 10.0]
    experience = Experience(
        observation=rows(0, 1, 3, 4, 6, 7),
        action=jnp.array([0, 1, 0, 1, 0, 1], jnp.int32),
        reward=jnp.array([1.0, 2.0, 1.0, 0.0, 1.0, 2.0]),
        done=jnp.array([False, True, False, False, False, False]),
        next_observation=rows(1, 2, 4, 5, 7, 8),
        log_prob=jnp.array([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6]),
        truncated=jnp.array([False, False, False, True, False, False]),
    )
    config = discrete_ppo_config(gamma=0.5, gae_lambda=0.5)
    process = jax.jit(ppo_module.process_experience_factory(config))
    batch = process(table_state(np.zeros((9, 2)), values), jax.random.PRNGKey(0), experience)
    # gamma = lambda = 0.5, decay gamma * lambda = 0.25; deltas r + gamma V(next) - V(obs):
    #   t5: 2 + 0.5 * 10 - 6 = 1                 A5 = 1
    #   t4: 1 + 0.5 * 6 - 5 = -1                 A4 = -1 + 0.25 * A5 = -0.75
    #   t3: 0 + 0.5 * 8 - 4 = 0 (truncated)      A3 = 0 (the next episode does not leak in)
    #   t2: 1 + 0.5 * 4 - 2 = 1                  A2 = 1 + 0.25 * A3 = 1
    #   t1: 2 + 0 - 2 = 0 (terminated)           A1 = 0
    #   t0: 1 + 0.5 * 2 - 1 = 1                  A0 = 1 + 0.25 * A1 = 1
    np.testing.assert_allclose(batch.advantage, [1.0, 0.0, 1.0, 0.0, -0.75, 1.0], atol=1e-6)
    # returns = advantages + V(obs), V(obs) = [1, 2, 2, 4, 5, 6]
    np.testing.assert_allclose(batch.target, [2.0, 2.0, 3.0, 4.0, 4.25, 7.0], atol=1e-6)
    np.testing.assert_allclose(batch.value, [1.0, 2.0, 2.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(batch.observation, experience.observation)
    np.testing.assert_array_equal(batch.action, experience.action)
    np.testing.assert_array_equal(batch.log_prob, experience.log_prob)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ppo_loss_by_hand(logits, actions, old_log_probs, advantages, values, targets, old_values, p):
    """The PPO loss of Schulman et al. (2017) with value clipping as in PPO2, in float64."""
    log_pi = log_softmax(logits)
    ratio = np.exp(log_pi[np.arange(len(actions)), actions] - old_log_probs)
    if p.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped_ratio = np.clip(ratio, 1 - p.clip_eps, 1 + p.clip_eps)
    policy = -np.mean(np.minimum(ratio * advantages, clipped_ratio * advantages))
    value = (values - targets) ** 2
    if p.value_clip_eps is not None:
        clipped = old_values + np.clip(values - old_values, -p.value_clip_eps, p.value_clip_eps)
        value = np.maximum(value, (clipped - targets) ** 2)
    value = 0.5 * np.mean(value)
    entropy = np.mean(-np.sum(np.exp(log_pi) * log_pi, axis=-1))
    return {
        "loss": policy + p.value_coef * value - p.entropy_coef * entropy,
        "loss_policy": policy,
        "loss_value": value,
        "entropy": entropy,
        "approx_kl": np.mean(ratio - 1 - np.log(ratio)),
    }


@pytest.mark.parametrize("normalize", [False, True], ids=["raw-advantages", "normalized"])
@pytest.mark.parametrize("value_clip_eps", [None, 0.5], ids=["no-value-clip", "value-clip"])
def test_ppo_loss_on_a_tiny_batch_by_hand(normalize, value_clip_eps):
    config = discrete_ppo_config(
        clip_eps=0.2,
        value_coef=0.5,
        entropy_coef=0.1,
        value_clip_eps=value_clip_eps,
        normalize_advantages=normalize,
    )
    logits = np.array([[0.0, 0.0], [1.0, -1.0], [0.5, 0.2], [-2.0, 1.0]])
    values = np.array([0.5, -1.0, 2.0, 0.0])
    actions = np.array([0, 1, 0, 1])
    # ratios 1.5 (clipped above), 0.6 (clipped below), 1.1 (inside), 0.95 (inside)
    log_pi = log_softmax(logits)[np.arange(4), actions]
    old_log_probs = log_pi - np.log([1.5, 0.6, 1.1, 0.95])
    advantages = np.array([2.0, -1.0, 0.5, -3.0])
    targets = np.array([1.5, -0.8, 0.0, 0.3])
    # V - V_old = [1, 0.5, 1.5, -0.2]: clipping at 0.5 moves sample 0 away from its target
    # (V_clip 0, error 2.25 > 1) and sample 2 toward it (V_clip 1, error 1 < 4).
    old_values = np.array([-0.5, -1.5, 0.5, 0.2])
    batch = ppo_module.PPOBatch(
        rows(0, 1, 2, 3),
        jnp.asarray(actions, jnp.int32),
        jnp.asarray(old_log_probs, jnp.float32),
        jnp.asarray(old_values, jnp.float32),
        jnp.asarray(advantages, jnp.float32),
        jnp.asarray(targets, jnp.float32),
    )
    update = jax.jit(ppo_module.update_step_factory(config))
    _, info = update(table_state(logits, values), jax.random.PRNGKey(0), batch)
    expected = ppo_loss_by_hand(
        logits, actions, old_log_probs, advantages, values, targets, old_values, config.algo_params
    )
    for name, value in expected.items():
        np.testing.assert_allclose(float(info[name]), value, rtol=1e-5, atol=1e-6, err_msg=name)
    if value_clip_eps is not None:  # the max picks the clipped error of sample 0
        unclipped = ppo_loss_by_hand(
            logits,
            actions,
            old_log_probs,
            advantages,
            values,
            targets,
            old_values,
            PPOParams(value_clip_eps=None),
        )
        assert expected["loss_value"] > unclipped["loss_value"] + 0.1


# Ratio and advantage of three samples (action 0 each): 1.5 with A = 2 is clipped above for any
# clip below 0.5, 0.5 with A = -1 is clipped below for any clip below 0.5, and 1.1 with A = 1 is
# clipped once the clip range falls below 0.1.
ANNEAL_RATIOS = np.array([1.5, 0.5, 1.1])
ANNEAL_ADVANTAGES = np.array([2.0, -1.0, 1.0])
ANNEAL_LOGITS = np.array([[0.3, 0.0], [-0.4, 0.2], [1.0, -0.5]])


@pytest.mark.parametrize(
    ("step", "clip_eps"),
    [(0, 0.2), (4, 0.15), (15, 0.0125)],
    ids=["first-step", "step-4", "last-step"],
)
def test_clip_range_anneals_over_the_runs_gradient_steps(step, clip_eps):
    # 64 transitions in rollouts of 16: 4 updates x 2 epochs x 2 minibatches = 16 gradient
    # steps, so at step s the clip range is 0.2 * (1 - s / 16).
    config = discrete_ppo_config(
        clip_eps=0.2,
        clip_eps_annealing=True,
        value_coef=0.0,
        entropy_coef=0.0,
        normalize_advantages=False,
    )
    actions = np.zeros(3, np.int64)
    log_pi = log_softmax(ANNEAL_LOGITS)[:, 0]
    batch = ppo_module.PPOBatch(
        rows(0, 1, 2),
        jnp.zeros(3, jnp.int32),
        jnp.asarray(log_pi - np.log(ANNEAL_RATIOS), jnp.float32),
        jnp.zeros(3),
        jnp.asarray(ANNEAL_ADVANTAGES, jnp.float32),
        jnp.zeros(3),
    )
    state = table_state(ANNEAL_LOGITS, np.zeros(3)).replace(step=jnp.asarray(step, jnp.int32))
    new_state, info = jax.jit(ppo_module.update_step_factory(config))(
        state, jax.random.PRNGKey(0), batch
    )
    clipped_ratios = np.clip(ANNEAL_RATIOS, 1 - clip_eps, 1 + clip_eps)
    surrogate = np.minimum(ANNEAL_RATIOS * ANNEAL_ADVANTAGES, clipped_ratios * ANNEAL_ADVANTAGES)
    np.testing.assert_allclose(float(info["loss_policy"]), -surrogate.mean(), rtol=1e-5)
    # SGD step 1: the logits move by -grad. A clipped sample has no gradient; an unclipped one
    # has d(-r A / B) / d logits = -(A r / B) (onehot(a) - pi).
    inside = np.abs(ANNEAL_RATIOS - 1) < clip_eps
    np.testing.assert_array_equal(inside, [False, False, step < 15])
    pi = np.exp(log_softmax(ANNEAL_LOGITS))
    onehot = np.eye(2)[actions]
    grads = -(ANNEAL_ADVANTAGES * ANNEAL_RATIOS / 3)[:, None] * (onehot - pi) * inside[:, None]
    np.testing.assert_allclose(
        np.asarray(new_state.params["logits"]), ANNEAL_LOGITS - grads, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(
        np.asarray(new_state.params["logits"])[~inside], ANNEAL_LOGITS[~inside].astype(np.float32)
    )


def test_clip_range_is_constant_without_annealing():
    config = discrete_ppo_config(
        clip_eps=0.2, value_coef=0.0, entropy_coef=0.0, normalize_advantages=False
    )
    log_pi = log_softmax(ANNEAL_LOGITS)[:, 0]
    batch = ppo_module.PPOBatch(
        rows(0, 1, 2),
        jnp.zeros(3, jnp.int32),
        jnp.asarray(log_pi - np.log(ANNEAL_RATIOS), jnp.float32),
        jnp.zeros(3),
        jnp.asarray(ANNEAL_ADVANTAGES, jnp.float32),
        jnp.zeros(3),
    )
    state = table_state(ANNEAL_LOGITS, np.zeros(3)).replace(step=jnp.asarray(15, jnp.int32))
    _, info = jax.jit(ppo_module.update_step_factory(config))(state, jax.random.PRNGKey(0), batch)
    # clip 0.2: 2 * 1.2, -1 * 0.8, 1.1 * 1
    np.testing.assert_allclose(float(info["loss_policy"]), -(2.4 - 0.8 + 1.1) / 3, rtol=1e-5)


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


def pendulum_returns(n_steps: int = 200, gamma: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``[n_steps, 3]`` of one episode of gymnasium's Pendulum under uniformly
    random actions, and their discounted returns-to-go (all negative)."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    observations, rewards = [], []
    for _ in range(n_steps):
        next_obs, reward, *_ = env.step(rng.uniform(-2.0, 2.0, (1,)).astype(np.float32))
        observations.append(obs)
        rewards.append(reward)
        obs = next_obs
    env.close()
    returns, running = np.zeros(n_steps), 0.0
    for t in reversed(range(n_steps)):
        running = rewards[t] + gamma * running
        returns[t] = running
    return np.asarray(observations, np.float32), returns


def test_squashed_ppo_trains_on_the_compiled_path():
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    env = make_jax_env("Pendulum-v1")
    config = config_for_jax_env(ppo_config(gym.make("Pendulum-v1"), n_env_steps=2_048), env, 4)
    agent = PPO("ppo-squash-compiled", config)
    observations, returns = pendulum_returns()
    before = jax.device_get(agent.state.params)
    _, values_before = agent.state.apply_fn(before, observations)
    summary = agent.train(env, 2_048)
    assert summary["n_updates"] == 2_048 // 32
    after = jax.device_get(agent.state.params)
    assert all(not np.array_equal(a, b) for a, b in zip(leaves(before), leaves(after), strict=True))
    assert all(np.isfinite(x).all() for x in leaves(after))
    # Pendulum's rewards are all negative: the value of states it visits moves down, toward
    # their returns (far below: 64 updates only start the descent).
    _, values_after = agent.state.apply_fn(agent.state.params, observations)
    values_before, values_after = np.asarray(values_before), np.asarray(values_after)
    assert values_after.mean() < values_before.mean() - 10.0, (values_before, values_after)
    error_before = np.mean((values_before - returns) ** 2)
    error_after = np.mean((values_after - returns) ** 2)
    assert error_after < 0.95 * error_before, (error_before, error_after)
    u = jnp.array([[-30.0], [0.0], [30.0]])
    np.testing.assert_allclose(np.asarray(agent.to_env_action(u)), [[-2.0], [0.0], [2.0]])


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]
