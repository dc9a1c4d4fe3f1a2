"""Tests for the Q-learning family: DQN's Rainbow options (n-step, prioritized replay) and the
distributional agents C51, QR-DQN and IQN, on both execution paths."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import corridor, make_vec

from kitae.algos import C51, DQN, IQN, QRDQN, C51Params, DQNParams, IQNParams, QRDQNParams
from kitae.algos.dqn import DQNBatch, bootstrap_transition, update_step_factory
from kitae.base import make_off_policy_update
from kitae.buffer import Experience, make_replay_buffer
from kitae.compiled import config_for_jax_env
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.envs.jax_env import make_jax_env

SMALL_UPDATE = UpdateConfig(
    learning_rate=1e-3,
    learning_rate_annealing=False,
    max_grad_norm=None,
    max_buffer_size=256,
    batch_size=8,
    n_epochs=1,
)
COMMON = {
    "hidden_sizes": (32, 32),
    "gamma": 0.9,
    "start_step": -1,
    "skip_steps": 2,
    "target_update_period": 3,
    "tau": 1.0,
    "exploration_fraction": 0.5,
    "exploration_end": 0.05,
}
AGENTS = {
    "dqn": (DQN, DQNParams, {"loss": "huber"}),
    "c51": (C51, C51Params, {"n_atoms": 11, "v_min": -2.0, "v_max": 2.0}),
    "qrdqn": (QRDQN, QRDQNParams, {"n_quantiles": 8}),
    "iqn": (
        IQN,
        IQNParams,
        {
            "n_tau_samples": 8,
            "n_tau_prime_samples": 8,
            "n_quantile_samples": 8,
            "head_hidden_sizes": (32,),
        },
    ),
}


def make_config(env, name, *, n_env_steps=1_000, update=SMALL_UPDATE, **params) -> AlgoConfig:
    agent_cls, params_cls, extra = AGENTS[name]
    return agent_cls.default_config(
        env,
        n_env_steps=n_env_steps,
        algo_params=params_cls(**{**COMMON, **extra, **params}),
        update_cfg=update,
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
    )


def greedy_corridor_actions(agent) -> np.ndarray:
    observations = np.eye(5, dtype=np.float32)[:4]
    actions, _ = agent.select_action(observations)
    return np.asarray(actions)


# ---- n-step reduction -------------------------------------------------------------------------


def window(rewards, terminated, truncated) -> Experience:
    """Windows ``[B, n]`` with observation ``[t]`` and next observation ``[t + 1]``."""
    rewards = np.asarray(rewards, np.float32)
    b, n = rewards.shape
    times = np.broadcast_to(np.arange(n, dtype=np.float32), (b, n))[..., None]
    return Experience(
        observation=times,
        action=np.ones((b, n), np.int32),
        reward=rewards,
        done=np.asarray(terminated),
        next_observation=times + 1.0,
        truncated=np.asarray(truncated),
    )


def test_bootstrap_transition_cuts_windows_at_episode_ends():
    f, t = False, True
    experience = window(
        [[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]],
        [[f, f, f], [f, t, f], [f, f, f]],
        [[f, f, f], [f, f, f], [t, f, f]],
    )
    out = bootstrap_transition(experience, 0.5)
    # full window: 1 + .5 * 2 + .25 * 4 = 3, bootstrap gamma^3 from o_3
    # terminated at step 1: 1 + .5 * 2 = 2, no bootstrap
    # truncated at step 0: 1, bootstrap gamma^1 from o_1
    np.testing.assert_allclose(out.reward, [3.0, 2.0, 1.0])
    np.testing.assert_allclose(out.discount, [0.125, 0.0, 0.5])
    np.testing.assert_allclose(np.asarray(out.next_observation)[:, 0], [3.0, 2.0, 1.0])
    np.testing.assert_allclose(np.asarray(out.observation)[:, 0], [0.0, 0.0, 0.0])


def test_bootstrap_transition_of_single_transitions_is_one_step_td():
    single = Experience(
        observation=np.zeros((2, 1), np.float32),
        action=np.zeros(2, np.int32),
        reward=np.array([1.0, 2.0], np.float32),
        done=np.array([False, True]),
        next_observation=np.ones((2, 1), np.float32),
    )
    out = bootstrap_transition(single, 0.9)
    np.testing.assert_allclose(out.discount, [0.9, 0.0])
    as_window = window([[1.0], [2.0]], [[False], [True]], [[False], [False]])
    np.testing.assert_allclose(bootstrap_transition(as_window, 0.9).discount, [0.9, 0.0])


# ---- prioritized replay wiring ---------------------------------------------------------------


def corridor_config(name="dqn", **params):
    env = make_vec(corridor, 2)
    return env, make_config(env, name, **params)


def test_importance_weights_scale_the_dqn_loss():
    env, config = corridor_config(prioritized=True)
    agent = DQN("weights", config)
    update_step = update_step_factory(config)
    batch = DQNBatch(
        observation=jnp.eye(5)[:4],
        action=jnp.array([0, 1, 0, 1]),
        target=jnp.array([1.0, -1.0, 2.0, 0.5]),
        weight=jnp.zeros(4),
    )
    state, info = jax.jit(update_step)(agent.state, jax.random.PRNGKey(0), batch)
    # zero weights: zero gradients, and Adam leaves the parameters where they were
    jax.tree.map(np.testing.assert_allclose, state.params, agent.state.params)
    q = agent.state.apply_fn(agent.state.params, batch.observation)
    q_taken = np.asarray(q)[np.arange(4), np.asarray(batch.action)]
    np.testing.assert_allclose(info["td_error"], np.asarray(batch.target) - q_taken, rtol=1e-5)


def test_prioritized_update_writes_priorities_back():
    env, config = corridor_config(prioritized=True, n_step=3)
    agent = DQN("per", config)
    agent.train(env, 300)
    state = agent.buffer_state
    assert int(state.updates) == agent.n_updates  # one write-back per gradient step
    stored = np.asarray(state.priorities)[np.asarray(state.priorities) > 0]
    assert len(np.unique(stored)) > 10  # priorities now differ per transition


def test_prioritized_replay_needs_a_weight_field():
    buffer = make_replay_buffer(16, 1, prioritized=True)
    example = Experience(
        observation=np.zeros((1, 2), np.float32),
        action=np.zeros(1, np.int32),
        reward=np.zeros(1, np.float32),
        done=np.zeros(1, bool),
        next_observation=np.zeros((1, 2), np.float32),
    )
    state = buffer.add(buffer.init(example), example)
    update = make_off_policy_update(
        buffer, lambda s, k, e: e.reward, lambda s, k, b: (s, {}), batch_size=1, n_epochs=1
    )
    with pytest.raises(TypeError, match="weight"):
        update(0, state, jax.random.PRNGKey(0))


# ---- the agents learn on both paths ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [
        ("dqn", {"n_step": 3, "prioritized": True, "dueling": True}),
        ("c51", {}),
        ("qrdqn", {}),
        ("iqn", {}),
        ("c51", {"n_step": 2, "prioritized": True, "double_q": False}),
    ],
    ids=["rainbow-dqn", "c51", "qrdqn", "iqn", "c51-nstep-per"],
)
def test_q_learning_agents_solve_the_corridor(name, params):
    env, config = corridor_config(name, **params)
    agent = AGENTS[name][0](name, config)
    agent.train(env)
    np.testing.assert_array_equal(greedy_corridor_actions(agent), [1, 1, 1, 1])


@pytest.mark.parametrize("name", ["c51", "qrdqn", "iqn", "dqn"])
def test_q_learning_agents_train_on_the_compiled_path(name):
    gym_env = gym.make("CartPole-v1")
    params = {"n_step": 3, "prioritized": True} if name == "dqn" else {}
    config = make_config(gym_env, name, n_env_steps=2_000, **params)
    env = make_jax_env("CartPole-v1")
    agent = AGENTS[name][0](name, config_for_jax_env(config, env, n_envs=4))
    before = jax.device_get(agent.state.params)
    agent.train(env, 2_000)
    assert agent.n_updates > 0 and agent.env_steps == 2_000
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, agent.state.params)
    assert any(jax.tree.leaves(changed))
    rows = agent.logger.history["train"]
    losses = [row["loss_qvalue"] for row in rows if "loss_qvalue" in row]
    assert losses and np.all(np.isfinite(losses))


# ---- config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("dqn", {"n_step": 0}, "n_step"),
        ("dqn", {"n_step": 500}, "n_step"),
        ("dqn", {"importance_exponent": 1.5}, "importance_exponent"),
        ("dqn", {"priority_eps": 0.0}, "priority_eps"),
        ("c51", {"n_atoms": 1}, "n_atoms"),
        ("c51", {"v_min": 1.0, "v_max": 1.0}, "v_min"),
        ("qrdqn", {"kappa": 0.0}, "kappa"),
        ("qrdqn", {"n_quantiles": 0}, "n_quantiles"),
        ("iqn", {"n_tau_samples": 0}, "n_tau_samples"),
    ],
)
def test_bad_q_learning_params_are_rejected(name, params, match):
    env, config = corridor_config(name, **params)
    with pytest.raises(ValueError, match=match):
        AGENTS[name][0](name, config)


@pytest.mark.parametrize("name", ["c51", "qrdqn", "iqn"])
def test_distributional_agents_need_discrete_actions(name):
    box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    config = make_config(gym.make("CartPole-v1"), name)
    config.env_cfg = EnvConfig(
        task_name="box", observation_space=config.env_cfg.observation_space, action_space=box
    )
    with pytest.raises(ValueError, match="Discrete"):
        AGENTS[name][0](name, config)
