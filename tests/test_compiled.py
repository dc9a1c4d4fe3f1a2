"""Tests for kitae.compiled: the pure-JAX training program on JAX-native envs.

Compilation dominates the cost of these tests, so the few training programs are built once per
module (fixtures) and each is shared by several tests. Runs are tiny: a few thousand transitions,
``hidden_sizes=(32, 32)``.
"""

from __future__ import annotations

import functools
import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from gymnax.environments import spaces as gymnax_spaces

from kitae.algos import dqn as dqn_module
from kitae.algos import ppo as ppo_module
from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.buffer import Experience
from kitae.compiled import (
    CompiledTrain,
    Metrics,
    RunnerState,
    config_for_jax_env,
    evaluate_compiled,
    make_agent_train,
    make_train,
)
from kitae.config import TrainConfig, UpdateConfig
from kitae.envs.jax_env import make_jax_env
from kitae.modules.optimizer import get_learning_rate
from kitae.schedules import off_policy_update_count

CARTPOLE = make_jax_env("CartPole-v1")


def cartpole_config(agent_cls, env, *, n_envs, n_env_steps, algo_params, update_cfg):
    """``agent_cls.default_config`` of gymnasium CartPole, re-described for the JAX ``env``."""
    gym_env = gymnasium.make("CartPole-v1")
    try:
        config = agent_cls.default_config(
            gym_env,
            n_env_steps=n_env_steps,
            algo_params=algo_params,
            update_cfg=update_cfg,
            train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        )
    finally:
        gym_env.close()
    return config_for_jax_env(config, env, n_envs=n_envs)


def params_of(state):
    return jax.device_get(state.params)


def trees_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


# ---- a deterministic gymnax-style env ----------------------------------------------------------


@struct.dataclass
class FixedState:
    time: jax.Array
    terminal_kind: jax.Array  # episode ends by termination (True) or by the time limit


@struct.dataclass
class FixedParams:
    max_steps_in_episode: int = 7


class FixedLengthEnv:
    """Every episode lasts exactly ``max_steps_in_episode`` steps, reward 1 per step.

    Observation ``[t, kind]``; ``kind`` is drawn at reset: 1 -> the episode *terminates* at its
    last step, 0 -> it is *truncated* there by the time limit. Actions are ignored.
    """

    @property
    def default_params(self):
        return FixedParams()

    def reset_env(self, key, params):
        state = FixedState(time=jnp.zeros((), jnp.int32), terminal_kind=jax.random.bernoulli(key))
        return self.get_obs(state), state

    def get_obs(self, state):
        return jnp.stack([state.time, state.terminal_kind]).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        del key, action
        state = state.replace(time=state.time + 1)
        terminated = state.terminal_kind & (state.time >= params.max_steps_in_episode)
        return self.get_obs(state), state, jnp.float32(1.0), terminated, {}

    def is_truncated(self, state, params):
        return state.time >= params.max_steps_in_episode

    def observation_space(self, params):
        return gymnax_spaces.Box(0.0, float(params.max_steps_in_episode), (2,), jnp.float32)

    def action_space(self, params):
        return gymnax_spaces.Discrete(2)


# ---- shared configs and programs ---------------------------------------------------------------

# Functional DQN run (make_train with the module's factories).
DQN_STEPS, DQN_ENVS = 2000, 4
DQN_PARAMS = DQNParams(hidden_sizes=(32, 32), start_step=202, skip_steps=3, target_update_period=50)
DQN_UPDATE = UpdateConfig(
    learning_rate=1e-3, max_grad_norm=10.0, max_buffer_size=1000, batch_size=32, n_epochs=2
)


@pytest.fixture(scope="module")
def dqn_config():
    return cartpole_config(
        DQN,
        CARTPOLE,
        n_envs=DQN_ENVS,
        n_env_steps=DQN_STEPS,
        algo_params=DQN_PARAMS,
        update_cfg=DQN_UPDATE,
    )


def make_dqn_train(config, env=CARTPOLE, exploration=0.1, **kwargs) -> CompiledTrain:
    return make_train(
        config,
        env,
        functools.partial(dqn_module.train_state_dqn_factory, tabulate=False),
        dqn_module.explore_factory,
        dqn_module.process_experience_factory,
        dqn_module.update_step_factory,
        algo_type="off_policy",
        explore_hyperparams=lambda t, hp: {"exploration": exploration},
        **kwargs,
    )


@pytest.fixture(scope="module")
def dqn_train(dqn_config):
    return make_dqn_train(dqn_config, log_interval=500)


@pytest.fixture(scope="module")
def dqn_train_jit(dqn_train):
    return jax.jit(dqn_train)


@pytest.fixture(scope="module")
def dqn_run(dqn_train_jit):
    runner, metrics = dqn_train_jit(jax.random.PRNGKey(0))
    return jax.block_until_ready((runner, metrics))


# Agent DQN (make_agent_train / agent.train), epsilon decays within the first 20 transitions.
AGENT_PARAMS = DQNParams(
    hidden_sizes=(32, 32),
    start_step=100,
    skip_steps=4,
    target_update_period=50,
    exploration_fraction=0.01,
)
AGENT_UPDATE = UpdateConfig(
    learning_rate=1e-3, learning_rate_annealing=True, max_buffer_size=1000, batch_size=32
)


@pytest.fixture(scope="module")
def dqn_agent_config():
    return cartpole_config(
        DQN,
        CARTPOLE,
        n_envs=DQN_ENVS,
        n_env_steps=DQN_STEPS,
        algo_params=AGENT_PARAMS,
        update_cfg=AGENT_UPDATE,
    )


# ---- the update programs against references written with jax.grad and optax ------------------

REF_DQN_PARAMS = DQNParams(
    hidden_sizes=(16,),
    gamma=0.9,
    double_q=True,
    loss="mse",
    tau=0.5,
    target_update_period=2,
    start_step=-1,
    skip_steps=1,
)
REF_DQN_UPDATE = UpdateConfig(
    learning_rate=1e-2,
    learning_rate_annealing=False,
    max_grad_norm=None,
    max_buffer_size=200,
    batch_size=16,
    n_epochs=3,
)


def random_cartpole_transitions(n_steps: int, n_envs: int, seed: int = 0) -> Experience:
    """Distinct made-up transitions ``[n_steps, n_envs]`` with CartPole's shapes; about one in
    five terminates, one in ten is truncated."""
    rng = np.random.default_rng(seed)
    shape = (n_steps, n_envs)
    done = rng.random(shape) < 0.2
    return Experience(
        observation=jnp.asarray(rng.normal(size=(*shape, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 2, shape), jnp.int32),
        reward=jnp.asarray(rng.normal(size=shape), jnp.float32),
        done=jnp.asarray(done),
        next_observation=jnp.asarray(rng.normal(size=(*shape, 4)), jnp.float32),
        log_prob=jnp.asarray(np.log(0.5) + 0.2 * rng.normal(size=shape), jnp.float32),
        truncated=jnp.asarray(~done & (rng.random(shape) < 0.1)),
    )


def reference_dqn_update(apply_fn, params, target_params, buffer, buffer_state, key):
    """``REF_DQN_PARAMS``' update written out: for each of the 3 epochs, the batch sampled with
    the epoch's key (the key splits of :func:`kitae.base.make_off_policy_update`), double-Q
    targets ``r + gamma (1 - done) Q_target(s', argmax_a Q(s', a))``, one ``optax.adam`` step on
    the mean squared TD error, and the Polyak update ``0.5 params + 0.5 target`` after every
    second gradient step.

    Returns:
        ``(params, target_params, mean loss, mean Q(s, a))``.
    """
    p, u = REF_DQN_PARAMS, REF_DQN_UPDATE
    adam = optax.adam(u.learning_rate)
    opt_state = adam.init(params)
    _, sub = jax.random.split(key)
    losses, q_means = [], []
    for step, step_key in enumerate(jax.random.split(sub, u.n_epochs), start=1):
        k_sample, _, _ = jax.random.split(step_key, 3)
        slots, envs = buffer.sample_indices(buffer_state, k_sample, u.batch_size)
        batch = jax.tree.map(lambda x, s=slots, e=envs: x[s, e], buffer_state.data)
        next_actions = jnp.argmax(apply_fn(params, batch.next_observation), axis=-1)
        next_q = apply_fn(target_params, batch.next_observation)
        bootstrap = next_q[jnp.arange(u.batch_size), next_actions]
        targets = batch.reward + p.gamma * (1.0 - batch.done) * bootstrap

        def loss_fn(params, batch=batch, targets=targets):
            q = apply_fn(params, batch.observation)[jnp.arange(u.batch_size), batch.action]
            return jnp.mean((q - targets) ** 2), q.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = adam.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if step % p.target_update_period == 0:
            target_params = jax.tree.map(
                lambda w, t: p.tau * w + (1 - p.tau) * t, params, target_params
            )
        losses.append(loss)
        q_means.append(q_mean)
    return params, target_params, jnp.mean(jnp.stack(losses)), jnp.mean(jnp.stack(q_means))


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_compiled_dqn_update_matches_a_reference_written_with_optax():
    config = cartpole_config(
        DQN,
        CARTPOLE,
        n_envs=4,
        n_env_steps=1_000,
        algo_params=REF_DQN_PARAMS,
        update_cfg=REF_DQN_UPDATE,
    )
    trainer = make_dqn_train(config)
    agent = DQN("dqn-reference", config)
    assert agent.replay_buffer == trainer.buffer
    state = agent.state
    # a target network that differs from the online one
    state = state.replace(target_params=jax.tree.map(lambda w: 0.5 * w + 0.01, state.params))
    transitions = random_cartpole_transitions(20, 4)
    buffer = trainer.buffer
    buffer_state = jax.jit(buffer.add_batch)(
        buffer.init(jax.tree.map(lambda x: x[0], transitions)), transitions
    )
    key = jax.random.PRNGKey(42)

    params, target_params, loss, q_mean = jax.jit(
        functools.partial(reference_dqn_update, state.apply_fn, buffer=buffer)
    )(state.params, state.target_params, buffer_state=buffer_state, key=key)

    copy = jax.tree.map(jnp.copy, buffer_state)  # the agent's update donates the buffer state
    paths = {
        "compiled": jax.jit(trainer.update_fn)(state, buffer_state, key),
        "gymnasium agent": agent.update_fn(state, copy, key),
    }
    for path, (new_state, _, new_key, info) in paths.items():
        assert int(new_state.step) == 3, path
        assert_trees_close(new_state.params, params)
        assert_trees_close(new_state.target_params, target_params)
        np.testing.assert_allclose(float(info["loss_qvalue"]), float(loss), rtol=1e-5)
        np.testing.assert_allclose(float(info["qvalue_mean"]), float(q_mean), rtol=1e-5)
        np.testing.assert_array_equal(new_key, jax.random.split(key)[0])
    # the check has teeth: the steps moved both networks
    assert not trees_equal(params_of(paths["compiled"][0]), params_of(state))
    assert not trees_equal(paths["compiled"][0].target_params, state.target_params)


REF_PPO_PARAMS = PPOParams(
    hidden_sizes=(16,),
    gamma=0.9,
    gae_lambda=0.8,
    clip_eps=0.2,
    entropy_coef=0.01,
    value_coef=0.5,
    normalize_advantages=True,
)
REF_PPO_UPDATE = UpdateConfig(
    learning_rate=3e-2,
    learning_rate_annealing=False,
    max_grad_norm=None,
    max_buffer_size=32,
    batch_size=32,
    n_epochs=2,
)


def gae_by_hand(rewards, values, next_values, terminated, truncated, gamma, lam):
    """GAE over one env's ``[T]`` rollout in plain numpy: terminations do not bootstrap, both
    kinds of episode end stop the recursion, the rollout's last step bootstraps."""
    advantages = np.zeros(len(rewards))
    following = 0.0
    for t in reversed(range(len(rewards))):
        bootstrap = 0.0 if terminated[t] else gamma * next_values[t]
        if terminated[t] or truncated[t]:
            following = 0.0
        advantages[t] = rewards[t] + bootstrap - values[t] + gamma * lam * following
        following = advantages[t]
    return advantages


def reference_ppo_update(apply_fn, params, rollout):
    """``REF_PPO_PARAMS``' update written out: GAE by hand with the values of the initial
    params, then, per epoch, one full-batch ``optax.adam`` step (eps 1e-5) on the clipped
    surrogate with normalised advantages, plus ``0.5 * (V - G)^2`` minus ``0.01 * entropy``.

    Returns:
        ``(params, info)``, ``info`` averaged over the epochs.
    """
    p, u = REF_PPO_PARAMS, REF_PPO_UPDATE
    n_steps, n_envs = rollout.reward.shape

    def values_of(observations):  # [T, N, 4] -> [T, N]
        _, v = apply_fn(params, observations.reshape(n_steps * n_envs, -1))
        return np.asarray(v, np.float64).reshape(n_steps, n_envs)

    values, next_values = values_of(rollout.observation), values_of(rollout.next_observation)
    advantages = np.stack(
        [
            gae_by_hand(
                np.asarray(rollout.reward)[:, n],
                values[:, n],
                next_values[:, n],
                np.asarray(rollout.done)[:, n],
                np.asarray(rollout.truncated)[:, n],
                p.gamma,
                p.gae_lambda,
            )
            for n in range(n_envs)
        ],
        axis=1,
    )
    returns = advantages + values
    flat = lambda x: jnp.asarray(np.reshape(x, (-1, *np.shape(x)[2:])))  # noqa: E731
    obs, actions, old_log_probs = (
        flat(rollout.observation),
        flat(rollout.action),
        flat(rollout.log_prob),
    )
    adv = flat(advantages).astype(jnp.float32)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    targets = flat(returns).astype(jnp.float32)

    def loss_fn(params):
        logits, v = apply_fn(params, obs)
        log_pi = jax.nn.log_softmax(logits)
        log_ratio = log_pi[jnp.arange(actions.shape[0]), actions] - old_log_probs
        ratio = jnp.exp(log_ratio)
        clipped = jnp.clip(ratio, 1 - p.clip_eps, 1 + p.clip_eps)
        policy = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
        value = 0.5 * jnp.mean((v - targets) ** 2)
        entropy = jnp.mean(-jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1))
        loss = policy + p.value_coef * value - p.entropy_coef * entropy
        kl = jnp.mean(ratio - 1 - log_ratio)
        return loss, {
            "loss": loss,
            "loss_policy": policy,
            "loss_value": value,
            "entropy": entropy,
            "approx_kl": kl,
        }

    adam = optax.adam(u.learning_rate, eps=1e-5)

    @jax.jit
    def step(params, opt_state):
        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = adam.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, info

    opt_state = adam.init(params)
    infos = []
    for _ in range(u.n_epochs):
        params, opt_state, info = step(params, opt_state)
        infos.append(info)
    return params, jax.tree.map(lambda *x: np.mean(x), *infos)


def test_compiled_ppo_update_matches_a_reference_written_with_optax():
    config = cartpole_config(
        PPO,
        CARTPOLE,
        n_envs=4,
        n_env_steps=256,
        algo_params=REF_PPO_PARAMS,
        update_cfg=REF_PPO_UPDATE,
    )
    agent = PPO("ppo-reference", config)
    trainer = make_train(
        config,
        CARTPOLE,
        ppo_module.train_state_ppo_factory,
        ppo_module.explore_factory,
        ppo_module.process_experience_factory,
        ppo_module.update_step_factory,
        algo_type="on_policy",
    )
    assert trainer.rollout_steps == 8
    rollout = random_cartpole_transitions(8, 4, seed=3)
    assert rollout.done.any() and rollout.truncated.any()
    state = agent.state
    params, info = reference_ppo_update(state.apply_fn, state.params, rollout)
    key = jax.random.PRNGKey(3)

    paths = {
        "compiled": jax.jit(trainer.update_fn)(state, rollout, key),
        "gymnasium agent": agent.update_fn(state, jax.tree.map(jnp.copy, rollout), key),
    }
    for path, (new_state, _, new_info) in paths.items():
        assert int(new_state.step) == 2, path
        assert_trees_close(new_state.params, params, rtol=1e-4, atol=1e-6)
        for name, value in info.items():
            np.testing.assert_allclose(
                float(new_info[name]), float(value), rtol=1e-4, atol=1e-6, err_msg=name
            )
    assert not trees_equal(params_of(paths["compiled"][0]), params_of(state))


# ---- the functional entry point -----------------------------------------------------------------


def test_make_train_functional_entry(dqn_train, dqn_run):
    runner, metrics = dqn_run
    assert isinstance(runner, RunnerState) and isinstance(metrics, Metrics)
    n_chunks = dqn_train.n_chunks
    assert dqn_train.n_iterations == DQN_STEPS // DQN_ENVS
    assert n_chunks == 4 and dqn_train.chunk_iterations == 125  # log_interval=500 transitions
    for leaf in (
        metrics.env_steps,
        metrics.episode_return,
        metrics.episode_length,
        metrics.n_episodes,
        metrics.n_updates,
        *jax.tree.leaves(metrics.info),
    ):
        assert leaf.shape == (n_chunks,)
    assert set(metrics.info) == {"loss_qvalue", "qvalue_mean"}

    np.testing.assert_array_equal(metrics.env_steps, [500, 1000, 1500, 2000])
    assert int(runner.env_steps) == DQN_STEPS
    expected_updates = off_policy_update_count(
        DQN_STEPS, DQN_ENVS, DQN_PARAMS.skip_steps, DQN_PARAMS.start_step, DQN_UPDATE.batch_size
    )
    assert expected_updates > 0
    assert int(metrics.n_updates.sum()) == expected_updates
    # no update before start_step=202 transitions: the first chunk has fewer updates
    assert 0 < int(metrics.n_updates[0]) < int(metrics.n_updates[1])
    assert int(runner.agent_state.step) == expected_updates * DQN_UPDATE.n_epochs
    # CartPole episodes end in every chunk, their length equals their return (reward 1 per step)
    assert np.all(metrics.n_episodes > 0)
    np.testing.assert_allclose(metrics.episode_return, metrics.episode_length)
    assert np.all(np.isfinite(np.asarray(metrics.info["loss_qvalue"])))
    # the buffer holds its capacity (1000 transitions = 250 slots x 4 envs), all filled
    np.testing.assert_array_equal(runner.buffer_state.size, [250] * 4)


def test_make_train_rejects_mismatched_configs(dqn_config):
    other = make_jax_env(FixedLengthEnv())
    with pytest.raises(ValueError, match="observation_space"):
        make_dqn_train(dqn_config, env=other)
    with pytest.raises(ValueError, match="zero updates"):
        make_dqn_train(dqn_config, n_env_steps=100)  # start_step=202 is never reached


# ---- determinism and seeds ----------------------------------------------------------------------


def test_same_key_same_params_different_key_different_params(dqn_train_jit, dqn_run):
    runner, metrics = dqn_run
    again, metrics_again = dqn_train_jit(jax.random.PRNGKey(0))
    assert_trees_equal(params_of(runner.agent_state), params_of(again.agent_state))
    assert_trees_equal(runner.buffer_state, again.buffer_state)
    assert_trees_equal(metrics, metrics_again)

    other, _ = dqn_train_jit(jax.random.PRNGKey(1))
    for a, b in zip(
        jax.tree.leaves(params_of(runner.agent_state)),
        jax.tree.leaves(params_of(other.agent_state)),
        strict=True,
    ):
        assert not np.array_equal(a, b)


@pytest.fixture(scope="module")
def agent_sweep(dqn_agent_config):
    """``jit(vmap(train))`` of the agent's compiled trainer over keys and hyperparameters,
    with a trace counter."""
    agent = DQN("sweep", dqn_agent_config)
    trainer = make_agent_train(agent, CARTPOLE, DQN_STEPS, log_interval=500)
    traces = []

    def counted(key, hyperparams):
        traces.append(1)
        return trainer(key, hyperparams)

    return trainer, jax.jit(jax.vmap(counted)), traces


def sweep_inputs(keys, learning_rate, exploration_end):
    return keys, {
        "learning_rate": jnp.asarray(learning_rate, jnp.float32),
        "exploration_end": jnp.asarray(exploration_end, jnp.float32),
    }


def test_vmap_over_seeds_gives_per_seed_runs(agent_sweep):
    trainer, sweep, _ = agent_sweep
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    runner, metrics = sweep(*sweep_inputs(keys, [1e-3] * 3, [0.05] * 3))
    assert metrics.episode_return.shape == (3, trainer.n_chunks)
    np.testing.assert_array_equal(metrics.env_steps, np.tile([500, 1000, 1500, 2000], (3, 1)))
    assert np.all(metrics.n_episodes > 0)
    # per-seed metrics and params differ
    assert len({tuple(np.asarray(row)) for row in metrics.episode_return}) == 3
    params = params_of(runner.agent_state)
    for leaf in jax.tree.leaves(params):
        assert leaf.shape[0] == 3
        assert not np.array_equal(leaf[0], leaf[1]) and not np.array_equal(leaf[1], leaf[2])


def test_sweep_learning_rate_and_exploration_without_recompiling(agent_sweep):
    trainer, sweep, traces = agent_sweep
    key = jax.random.PRNGKey(7)
    same_keys = jnp.stack([key] * 3)
    learning_rates = [1e-4, 3e-3, 1e-4]
    runner, _ = sweep(*sweep_inputs(same_keys, learning_rates, [0.05] * 3))

    # the learning rates reached the optimizer states
    lr = np.asarray(get_learning_rate(runner.agent_state.opt_state))
    np.testing.assert_allclose(lr, learning_rates, rtol=1e-6)
    # same key: lanes with the same learning rate agree, a different learning rate differs
    params = params_of(runner.agent_state)
    for leaf in jax.tree.leaves(params):
        np.testing.assert_array_equal(leaf[0], leaf[2])
        assert not np.array_equal(leaf[0], leaf[1])

    # exploration_end reaches DQN.explore: every stored transition comes after the decay (20
    # transitions), so its behaviour probability is 1 - eps/2 (greedy) or eps/2 (random).
    eps = [0.0, 1.0, 0.5]
    runner, _ = sweep(*sweep_inputs(same_keys, [1e-3] * 3, eps))
    probs = np.exp(np.asarray(runner.buffer_state.data.log_prob))
    assert probs.shape == (3, 250, 4)
    np.testing.assert_allclose(probs[0], 1.0)
    np.testing.assert_allclose(probs[1], 0.5, rtol=1e-6)
    greedy = np.isclose(probs[2], 0.75)
    assert np.all(greedy | np.isclose(probs[2], 0.25))
    assert 0.6 < greedy.mean() < 0.9

    # three calls with different values, one trace (and one compilation)
    assert len(traces) == 1
    assert sweep._cache_size() == 1


# ---- agent.train on a JAX env -------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=2)
def dqn_td_error(state, data: Experience, gamma: float) -> jax.Array:
    """Mean squared double-Q TD error of ``state`` on transitions ``data`` (leaves ``[T, N]``)
    against its own target network."""
    flat = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), data)
    rows = jnp.arange(flat.action.shape[0])
    next_actions = jnp.argmax(state.apply_fn(state.params, flat.next_observation), axis=-1)
    bootstrap = state.apply_fn(state.target_params, flat.next_observation)[rows, next_actions]
    targets = flat.reward + gamma * (1.0 - flat.done) * bootstrap
    q = state.apply_fn(state.params, flat.observation)[rows, flat.action]
    return jnp.mean((q - targets) ** 2)


def test_agent_train_on_a_jax_env_uses_the_compiled_path(dqn_agent_config, dqn_run):
    agent = DQN("compiled", dqn_agent_config)
    initial = params_of(agent.state)
    # real CartPole transitions of another run, which this agent never trains on
    data = dqn_run[0].buffer_state.data
    error_before = float(dqn_td_error(agent.state, data, AGENT_PARAMS.gamma))
    expected = agent.expected_updates(DQN_STEPS)

    summary = agent.train(CARTPOLE, DQN_STEPS)

    assert {"compile_s", "train_s", "env_steps", "n_updates", "episodes"} <= set(summary)
    assert summary["compile_s"] > 0 and summary["train_s"] > 0
    assert summary["env_steps"] == agent.env_steps == DQN_STEPS
    assert summary["n_updates"] == agent.n_updates == expected
    assert summary["episodes"] > 0
    assert int(agent.state.step) == expected * AGENT_UPDATE.n_epochs
    assert not trees_equal(params_of(agent.state), initial)
    # the Q-network fits its TD targets on CartPole data it never saw
    error_after = float(dqn_td_error(agent.state, data, AGENT_PARAMS.gamma))
    assert error_after < 0.2 * error_before, (error_before, error_after)
    rows = agent.logger.history["train"]
    # default log interval: 1% of the run -> 100 rows of 20 transitions
    assert len(rows) == 100
    assert [row["step"] for row in rows] == list(range(20, DQN_STEPS + 1, 20))
    assert sum(row["n_episodes"] for row in rows) == summary["episodes"]
    assert {"episode_return", "episode_length", "loss_qvalue"} <= set(rows[-1])

    # a second call continues from the trained state and the step counter
    trained, step = params_of(agent.state), int(agent.state.step)
    agent.train(make_jax_env("CartPole-v1"), 400)
    assert agent.env_steps == DQN_STEPS + 400
    assert int(agent.state.step) > step
    assert not trees_equal(params_of(agent.state), trained)
    assert agent.logger.history["train"][-1]["step"] == DQN_STEPS + 400


def test_second_agent_train_call_continues_the_schedules(dqn_agent_config):
    agent = DQN("continue", dqn_agent_config)
    agent.train(CARTPOLE, DQN_STEPS)
    end = dqn_agent_config.algo_params.exploration_end
    assert agent.exploration(agent.env_steps) == pytest.approx(end)  # decayed after 20 steps
    epsilons = []
    explore_fn = agent.explore_fn

    def spy(state, key, observation, exploration):
        jax.debug.callback(lambda e: epsilons.append(float(e)), exploration)
        return explore_fn(state, key, observation, exploration=exploration)

    agent.explore_fn = spy
    expected = agent.expected_updates(400)
    summary = agent.train(CARTPOLE, 400)
    assert len(epsilons) == 400 // DQN_ENVS
    assert max(epsilons) == pytest.approx(end), "epsilon schedule restarted"
    assert summary["n_updates"] == expected


# ---- episode statistics, truncation and termination ---------------------------------------------

FIXED_LENGTH = 7


@pytest.fixture(scope="module")
def fixed_run():
    env = make_jax_env(FixedLengthEnv(), FixedParams(max_steps_in_episode=FIXED_LENGTH))
    config = cartpole_config(
        DQN,
        env,
        n_envs=4,
        n_env_steps=400,
        algo_params=DQNParams(hidden_sizes=(32, 32), start_step=-1, skip_steps=4, gamma=0.9),
        update_cfg=UpdateConfig(learning_rate=1e-3, max_buffer_size=400, batch_size=16),
    )
    trainer = make_dqn_train(config, env=env, exploration=1.0, log_interval=20)
    runner, metrics = jax.jit(trainer)(jax.random.PRNGKey(0))
    return config, trainer, jax.device_get(runner), jax.device_get(metrics)


def test_episode_statistics_under_autoreset(fixed_run):
    _, trainer, runner, metrics = fixed_run
    n_envs, length, chunk = 4, FIXED_LENGTH, trainer.chunk_iterations
    assert chunk == 5 and trainer.n_chunks == 20
    # every env's episodes end at iterations L, 2L, ...: count the multiples of L per chunk
    ends = np.array(
        [(c + 1) * chunk // length - c * chunk // length for c in range(trainer.n_chunks)]
    )
    np.testing.assert_array_equal(metrics.n_episodes, n_envs * ends)
    assert (ends == 0).any() and (ends > 0).any()
    with_episodes = ends > 0
    np.testing.assert_array_equal(metrics.episode_return[with_episodes], float(length))
    np.testing.assert_array_equal(metrics.episode_length[with_episodes], float(length))
    assert np.all(np.isnan(metrics.episode_return[~with_episodes]))
    assert np.all(np.isnan(metrics.episode_length[~with_episodes]))
    # running statistics at the end: 100 iterations = 14 episodes + 2 steps
    np.testing.assert_array_equal(runner.episode_length, [100 % length] * n_envs)
    np.testing.assert_array_equal(runner.episode_return, [100 % length] * n_envs)


def test_truncation_bootstraps_and_termination_does_not(fixed_run):
    config, trainer, runner, _ = fixed_run
    data = runner.buffer_state.data
    np.testing.assert_array_equal(runner.buffer_state.size, [100] * 4)  # the whole run is stored
    time, kind = data.observation[..., 0], data.observation[..., 1]
    next_time = data.next_observation[..., 0]
    # next_observation is the true next observation, also at the end of an episode
    np.testing.assert_array_equal(next_time, time + 1)
    np.testing.assert_array_equal(data.next_observation[..., 1], kind)
    final = next_time == FIXED_LENGTH
    np.testing.assert_array_equal(data.done, final & (kind == 1))
    np.testing.assert_array_equal(data.truncated, final & (kind == 0))
    assert data.done.any() and data.truncated.any()
    assert not (data.done & data.truncated).any()
    np.testing.assert_array_equal(data.reward, 1.0)
    # after an end the next stored step starts a fresh episode
    np.testing.assert_array_equal(time[1:][final[:-1]], 0)

    # DQN targets: r + gamma * Q_target(s', a*) unless terminated
    state = runner.agent_state
    flat = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), data)
    batch = dqn_module.process_experience_factory(config)(state, jax.random.PRNGKey(0), flat)
    next_q_target = state.apply_fn(state.target_params, flat.next_observation)
    next_q_online = state.apply_fn(state.params, flat.next_observation)
    bootstrap = np.take_along_axis(
        np.asarray(next_q_target), np.asarray(next_q_online).argmax(-1)[:, None], -1
    )[:, 0]
    done, truncated = flat.done, flat.truncated
    np.testing.assert_array_equal(batch.target[done], 1.0)
    np.testing.assert_allclose(batch.target[truncated], 1.0 + 0.9 * bootstrap[truncated], rtol=1e-5)
    assert np.all(np.abs(bootstrap[truncated]) > 1e-3)


# ---- in-place buffer ----------------------------------------------------------------------------


def test_run_chunk_with_donation_updates_the_buffer_in_place(dqn_agent_config):
    agent = DQN("donate", dqn_agent_config)
    trainer = make_agent_train(agent, CARTPOLE, DQN_STEPS)
    runner = jax.jit(trainer.init)(jax.random.PRNGKey(0), {}, agent.state)
    run_chunk = jax.jit(trainer.run_chunk, donate_argnums=0)
    buffer_leaves = jax.tree.leaves(runner.buffer_state)
    pointers = [leaf.unsafe_buffer_pointer() for leaf in buffer_leaves]

    new_runner, metrics = run_chunk(runner)
    jax.block_until_ready(new_runner)

    assert all(leaf.is_deleted() for leaf in buffer_leaves)
    new_leaves = jax.tree.leaves(new_runner.buffer_state)
    assert not any(leaf.is_deleted() for leaf in new_leaves)
    assert [leaf.unsafe_buffer_pointer() for leaf in new_leaves] == pointers
    assert int(metrics.env_steps) == trainer.chunk_iterations * DQN_ENVS
    np.testing.assert_array_equal(new_runner.buffer_state.size, trainer.chunk_iterations)
    # the agent's own state was not donated
    arrays = [leaf for leaf in jax.tree.leaves(agent.state) if isinstance(leaf, jax.Array)]
    assert arrays and not any(leaf.is_deleted() for leaf in arrays)


# ---- evaluation ---------------------------------------------------------------------------------


def test_evaluate_compiled_with_greedy_dqn(dqn_agent_config):
    agent = DQN("eval", dqn_agent_config)
    act = agent.act_fn(greedy=True)
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
    actions, log_probs = jax.jit(act)(agent.state, jax.random.PRNGKey(2), obs, jnp.int32(0), {})
    q = agent.state.apply_fn(agent.state.params, obs)
    np.testing.assert_array_equal(actions, jnp.argmax(q, -1))
    np.testing.assert_allclose(log_probs, 0.0, atol=1e-6)

    greedy = lambda state, key, o: act(state, key, o, jnp.int32(0), {})[0]  # noqa: E731
    returns = jax.jit(lambda s, k: evaluate_compiled(greedy, s, CARTPOLE, k, n_episodes=8))(
        agent.state, jax.random.PRNGKey(0)
    )
    assert returns.shape == (8,) and returns.dtype == jnp.float32
    assert np.all((returns >= 1) & (returns <= 500))
    np.testing.assert_array_equal(returns, np.round(returns))  # reward 1 per step

    capped = evaluate_compiled(greedy, agent.state, CARTPOLE, jax.random.PRNGKey(0), 8, max_steps=3)
    np.testing.assert_array_equal(capped, 3.0)  # no CartPole episode ends within 3 steps


@pytest.mark.parametrize("max_steps", [None, 3, 20])
def test_evaluate_compiled_counts_each_episode_once(max_steps):
    env = make_jax_env(FixedLengthEnv(), FixedParams(max_steps_in_episode=5))
    zeros = lambda state, key, obs: jnp.zeros(obs.shape[0], jnp.int32)  # noqa: E731
    returns = evaluate_compiled(
        zeros, None, env, jax.random.PRNGKey(0), n_episodes=6, max_steps=max_steps
    )
    assert returns.shape == (6,)
    np.testing.assert_array_equal(returns, 3.0 if max_steps == 3 else 5.0)


# ---- learning -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_learns_cartpole_for_every_seed():
    n_env_steps, rollout = 40_960, 512
    config = cartpole_config(
        PPO,
        CARTPOLE,
        n_envs=4,
        n_env_steps=n_env_steps,
        algo_params=PPOParams(hidden_sizes=(32, 32)),
        update_cfg=UpdateConfig(
            learning_rate=2.5e-3,
            learning_rate_annealing=True,
            max_grad_norm=0.5,
            max_buffer_size=rollout,
            batch_size=128,
            n_epochs=4,
        ),
    )
    trainer = make_train(
        config,
        CARTPOLE,
        ppo_module.train_state_ppo_factory,
        ppo_module.explore_factory,
        ppo_module.process_experience_factory,
        ppo_module.update_step_factory,
        algo_type="on_policy",
        log_interval=4 * rollout,
    )
    assert trainer.n_chunks == 20
    runner, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(jax.random.PRNGKey(0), 2))
    returns = np.asarray(metrics.episode_return)
    assert returns.shape == (2, 20)
    np.testing.assert_array_equal(metrics.n_updates, 4)
    first, last = np.nanmean(returns[:, :3], axis=1), np.nanmean(returns[:, -5:], axis=1)
    assert np.all(last > 2 * first), (first, last)
    assert np.all(last > 150), last
    for leaf in jax.tree.leaves(params_of(runner.agent_state)):
        assert not np.array_equal(leaf[0], leaf[1])
    assert math.isclose(float(np.asarray(metrics.env_steps)[0, -1]), n_env_steps)
