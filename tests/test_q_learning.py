"""Tests for the Q-learning family: DQN's Rainbow options (n-step, prioritized replay) and the
distributional agents C51, QR-DQN and IQN, on both execution paths."""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import corridor, make_vec

from kitae.algos import C51, DQN, IQN, QRDQN, C51Params, DQNParams, IQNParams, QRDQNParams
from kitae.algos.dqn import DQNBatch, bootstrap_transition, update_step_factory
from kitae.base import make_off_policy_update
from kitae.buffer import Experience, make_replay_buffer
from kitae.compiled import config_for_jax_env
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
from kitae.envs.jax_env import make_jax_env
from kitae.modules.train_state import TrainState

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


CORRIDOR_Q_RIGHT = np.array([0.7019, 0.791, 0.89, 1.0])
"""Optimal ``Q(cell, right)`` of the 5-cell corridor with gamma 0.9 and step reward -0.01:
``1`` next to the goal, then ``-0.01 + 0.9 * Q(next cell, right)`` going left."""


def q_values(agent: DQN, observations: np.ndarray) -> np.ndarray:
    """``Q(o, .)`` ``[B, A]`` from the network's output (C51: mean of the categorical
    distribution; QR-DQN: mean of the quantiles; IQN: mean at 64 evenly spaced levels)."""
    state, p = agent.state, agent.config.algo_params
    if isinstance(agent, IQN):
        taus = np.broadcast_to(
            (np.arange(64, dtype=np.float32) + 0.5) / 64, (len(observations), 64)
        )
        return np.asarray(state.apply_fn(state.params, observations, taus), np.float64).mean(-1)
    out = np.asarray(state.apply_fn(state.params, observations), np.float64)
    if isinstance(agent, C51):
        probs = np.exp(out - out.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return probs @ np.linspace(p.v_min, p.v_max, p.n_atoms)
    if isinstance(agent, QRDQN):
        return out.mean(-1)
    return out


def corridor_q_right(agent: DQN) -> np.ndarray:
    """``Q(cell, right)`` of the 4 non-goal cells."""
    return q_values(agent, np.eye(5, dtype=np.float32)[:4])[:, 1]


def solves_the_corridor(agent: DQN) -> tuple[bool, str]:
    """Greedy right at every cell, and ``Q(cell, right)`` within 0.05 of the optimum."""
    actions, q = greedy_corridor_actions(agent), corridor_q_right(agent)
    ok = (actions == 1).all() and np.abs(q - CORRIDOR_Q_RIGHT).max() <= 0.05
    return bool(ok), f"greedy {actions}, Q(., right) {np.round(q, 3)}, optimal {CORRIDOR_Q_RIGHT}"


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


# ---- DQN's targets ----------------------------------------------------------------------------

DQN_ONLINE = np.array([[0.0, 0.0], [5.0, 1.0], [2.0, 9.0], [3.0, 4.0]], np.float32)
"""Online Q-table: row ``i`` is ``Q(o = [i], .)``; it prefers action 0 at o = 1."""
DQN_TARGET = np.array([[0.0, 0.0], [10.0, 20.0], [30.0, 40.0], [50.0, 70.0]], np.float32)
"""Target Q-table: it prefers action 1 everywhere, and its values differ from the online ones."""


def table_dqn_state() -> TrainState:
    return TrainState.create(
        apply_fn=lambda params, obs: params["q"][obs[:, 0].astype(jnp.int32)],
        params={"q": jnp.asarray(DQN_ONLINE)},
        target_params={"q": jnp.asarray(DQN_TARGET)},
        tx=optax.sgd(1.0),
    )


@pytest.mark.parametrize(
    "double_q, expected",
    [
        # next o = 1 (online argmax 0), a termination into 2, a truncation whose final o is 3:
        # double-Q evaluates the online argmax with the target net: .5 + .9 * 10 = 9.5, -1,
        # .5 + .9 * Q_target(3, argmax_a Q_online(3, a) = 1) = .5 + .9 * 70 = 63.5
        (True, [9.5, -1.0, 63.5]),
        # plain DQN takes the target's own max: .5 + .9 * 20 = 18.5, -1, .5 + .9 * 70 = 63.5
        (False, [18.5, -1.0, 63.5]),
    ],
    ids=["double-q", "target-max"],
)
def test_dqn_targets_bootstrap_from_the_target_network_by_hand(double_q, expected):
    env = make_vec(corridor, 1)
    config = make_config(env, "dqn", double_q=double_q)
    process = DQN.factories[2](config)
    experience = Experience(
        observation=jnp.zeros((3, 1)),
        action=jnp.array([1, 0, 1], jnp.int32),
        reward=jnp.array([0.5, -1.0, 0.5]),
        done=jnp.array([False, True, False]),
        next_observation=jnp.array([[1.0], [2.0], [3.0]]),
        truncated=jnp.array([False, False, True]),
    )
    batch = jax.jit(process)(table_dqn_state(), jax.random.PRNGKey(0), experience)
    np.testing.assert_allclose(batch.target, expected, rtol=1e-6)
    np.testing.assert_array_equal(batch.action, [1, 0, 1])
    np.testing.assert_array_equal(batch.weight, [1.0, 1.0, 1.0])


def test_dqn_n_step_targets_by_hand():
    """Windows of 3 (gamma 0.9): a full window bootstraps ``gamma^3`` from its last next
    observation; a window terminated at its 2nd step does not bootstrap; a window truncated at
    its 1st step bootstraps ``gamma`` from that step's final observation."""
    env = make_vec(corridor, 1)
    config = make_config(env, "dqn", n_step=3, double_q=False)
    process = DQN.factories[2](config)
    f, t = False, True
    experience = Experience(
        observation=jnp.zeros((3, 3, 1)),
        action=jnp.ones((3, 3), jnp.int32),
        reward=jnp.array([[1.0, 2.0, 4.0]] * 3),
        done=jnp.array([[f, f, f], [f, t, f], [f, f, f]]),
        next_observation=jnp.array([[[1.0], [2.0], [3.0]]] * 3),
        truncated=jnp.array([[f, f, f], [f, f, f], [t, f, f]]),
    )
    batch = jax.jit(process)(table_dqn_state(), jax.random.PRNGKey(0), experience)
    full = 1.0 + 0.9 * 2.0 + 0.81 * 4.0 + 0.729 * 70.0  # max_a Q_target(3, a) = 70
    terminated = 1.0 + 0.9 * 2.0
    truncated = 1.0 + 0.9 * 20.0  # max_a Q_target(1, a) = 20
    np.testing.assert_allclose(batch.target, [full, terminated, truncated], rtol=1e-6)


def test_dqn_loss_and_gradient_step_by_hand():
    """One SGD step (lr 1) of the MSE TD loss on a Q-table: ``d/dQ mean((Q - y)^2)`` is
    ``2 (Q - y) / B`` at the taken actions only, and the Polyak target moves by ``tau``."""
    env = make_vec(corridor, 1)
    config = make_config(env, "dqn", loss="mse", tau=0.5, target_update_period=1)
    update = DQN.factories[3](config)
    state = table_dqn_state().replace(
        tx=optax.sgd(0.25), opt_state=optax.sgd(0.25).init({"q": jnp.asarray(DQN_ONLINE)})
    )
    batch = DQNBatch(
        observation=jnp.array([[1.0], [2.0]]),
        action=jnp.array([1, 1], jnp.int32),  # not the greedy action at o = 1
        target=jnp.array([4.0, 8.0]),
        weight=jnp.ones(2),
    )
    new, info = jax.jit(update)(state, jax.random.PRNGKey(0), batch)
    # errors Q - y: 1 - 4 = -3 and 9 - 8 = 1; loss (9 + 1) / 2 = 5
    np.testing.assert_allclose(info["loss_qvalue"], 5.0, rtol=1e-6)
    expected = DQN_ONLINE.copy()
    expected[1, 1] -= 0.25 * 2 * -3.0 / 2  # 1 -> 1.75
    expected[2, 1] -= 0.25 * 2 * 1.0 / 2  # 9 -> 8.75
    np.testing.assert_allclose(new.params["q"], expected, rtol=1e-6)
    np.testing.assert_allclose(new.target_params["q"], 0.5 * DQN_TARGET + 0.5 * expected, rtol=1e-6)


# ---- prioritized replay wiring ---------------------------------------------------------------


def corridor_config(name="dqn", **params):
    env = make_vec(corridor, 2)
    return env, make_config(env, name, **params)


def test_importance_weights_scale_the_dqn_loss():
    """A tabular Q-network (one-hot observations) and SGD: the per-sample squared TD errors are
    multiplied by ``batch.weight`` in the loss and its gradient."""
    _, config = corridor_config(prioritized=True, loss="mse")
    update_step = jax.jit(update_step_factory(config))
    table = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 1.5], [-0.5, 0.25], [0.0, 0.0]], np.float32)
    state = TrainState.create(
        apply_fn=lambda params, obs: obs @ params["q"],
        params={"q": jnp.asarray(table)},
        target_params={"q": jnp.asarray(table)},
        tx=optax.sgd(0.1),
    )
    batch = DQNBatch(
        observation=jnp.eye(5)[:4],
        action=jnp.array([1, 0, 1, 0]),
        target=jnp.array([1.0, -1.0, 2.0, 0.5]),
        weight=jnp.array([1.0, 0.5, 0.25, 0.0]),
    )

    new_state, info = update_step(state, jax.random.PRNGKey(0), batch)

    # Q(s, a) taken: [-1, 2, 1.5, -0.5]; TD errors target - Q: [2, -3, 0.5, 1]
    np.testing.assert_allclose(info["td_error"], [2.0, -3.0, 0.5, 1.0], rtol=1e-6)
    # loss = mean(w * (Q - target)^2) = (1 * 4 + 0.5 * 9 + 0.25 * 0.25 + 0 * 1) / 4
    assert float(info["loss_qvalue"]) == pytest.approx(8.5625 / 4, rel=1e-6)
    # d loss / d Q(s_i, a_i) = 2 * w_i * (Q - target) / 4 = [-1, 0.75, -0.0625, 0]; SGD step 0.1
    expected = table.copy()
    expected[[0, 1, 2, 3], [1, 0, 1, 0]] = [-0.9, 1.925, 1.50625, -0.5]
    np.testing.assert_allclose(new_state.params["q"], expected, rtol=1e-6)


class IdBatch(NamedTuple):
    """A processed batch that only carries the sampled transitions' ids."""

    ids: jax.Array
    weight: jax.Array


def test_off_policy_update_writes_priorities_at_the_sampled_slots():
    """Through ``make_off_policy_update`` (3 gradient steps): each step receives the importance
    weights of what it sampled, and its TD errors land as ``(|td| + eps)^alpha`` exactly at the
    sampled (slot, env) positions; every other priority is unchanged."""
    n_envs, alpha, eps, beta_start, beta_steps = 3, 0.7, 1e-3, 0.5, 4
    buffer = make_replay_buffer(
        24,
        n_envs,
        prioritized=True,
        alpha=alpha,
        beta_start=beta_start,
        beta_steps=beta_steps,
        eps=eps,
    )  # T = 8
    # 6 steps stored: the transition in (slot s, env e) has the id 10 * s + e as its reward.
    ids = 10.0 * np.arange(6)[:, None] + np.arange(n_envs)[None, :]
    steps = Experience(
        observation=np.zeros((6, n_envs, 1), np.float32),
        action=np.zeros((6, n_envs), np.int32),
        reward=ids.astype(np.float32),
        done=np.zeros((6, n_envs), bool),
        next_observation=np.zeros((6, n_envs, 1), np.float32),
    )
    state = jax.jit(buffer.add_batch)(buffer.init(jax.tree.map(lambda x: x[0], steps)), steps)
    slots, envs = np.divmod(np.arange(18), n_envs)
    state = jax.jit(buffer.update_priorities)(state, slots, envs, ids.reshape(-1) % 7 - 3.0)
    before = np.asarray(state.priorities, np.float64)
    n_epochs, batch_size = 3, 5

    def td_error(sample_ids):  # a known TD error per transition, of either sign
        return 0.5 - sample_ids / 16.0

    def process(learner, key, experience):
        del learner, key
        return IdBatch(experience.reward, jnp.zeros_like(experience.reward))

    def update_step(learner, key, batch):
        del key
        seen_ids, seen_weights, epoch = learner
        learner = (seen_ids.at[epoch].set(batch.ids), seen_weights.at[epoch].set(batch.weight))
        return (*learner, epoch + 1), {"td_error": td_error(batch.ids)}

    update = jax.jit(
        make_off_policy_update(buffer, process, update_step, batch_size, n_epochs),
        donate_argnums=1,
    )
    learner = (jnp.zeros((n_epochs, batch_size)), jnp.zeros((n_epochs, batch_size)), 0)
    (seen_ids, seen_weights, _), state, _, _ = update(learner, state, jax.random.PRNGKey(4))

    # Replay the three steps by hand: weights from the priorities before each step, then the
    # write-back at the sampled positions.
    priorities = before.copy()
    stored = np.zeros((8, n_envs), bool)
    stored[:6] = True
    for epoch, (step_ids, weights) in enumerate(zip(seen_ids, seen_weights, strict=True)):
        step_slots, step_envs = np.divmod(np.asarray(step_ids).astype(int), 10)
        beta = beta_start + (1.0 - beta_start) * (1 + epoch) / beta_steps  # 1 + epoch updates
        p = priorities[stored]
        scaled = (len(p) * priorities[step_slots, step_envs] / p.sum()) ** -beta
        expected_weights = scaled / ((len(p) * p / p.sum()) ** -beta).max()
        np.testing.assert_allclose(weights, expected_weights, rtol=1e-5)
        priorities[step_slots, step_envs] = (np.abs(td_error(np.asarray(step_ids))) + eps) ** alpha

    sampled = np.divmod(np.asarray(seen_ids).astype(int).reshape(-1), 10)
    assert len(set(zip(*sampled, strict=True))) >= 5
    np.testing.assert_allclose(state.priorities, priorities, rtol=1e-6)
    untouched = np.ones((8, n_envs), bool)
    untouched[sampled] = False
    np.testing.assert_array_equal(np.asarray(state.priorities)[untouched], before[untouched])
    assert int(state.updates) == 1 + n_epochs
    assert float(state.max_priority) == pytest.approx(max(before.max(), priorities.max()))


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


def test_iqn_defaults_are_dopamines():
    """IQN's defaults are Dopamine's (JaxImplicitQuantileAgent and its gin config): N = N' = 64
    online and target levels, K = 32 levels for Q-values, kappa = 1, a 64-cosine embedding,
    no double-Q (the target network picks the bootstrap action), hard target copies."""
    p = IQNParams()
    assert (p.n_tau_samples, p.n_tau_prime_samples, p.n_quantile_samples) == (64, 64, 32)
    assert p.kappa == 1.0 and p.n_cosines == 64
    assert p.double_q is False
    assert p.tau == 1.0
    assert IQN.default_config(gym.make("CartPole-v1"), tuned=False).algo_params == p


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
    ok, report = solves_the_corridor(agent)
    assert not ok, f"the untrained agent already solves the corridor: {report}"
    agent.train(env)
    ok, report = solves_the_corridor(agent)
    assert ok, report


@pytest.mark.parametrize("name", ["c51", "qrdqn", "iqn", "dqn"])
def test_q_learning_agents_train_on_the_compiled_path(name):
    """2,000 compiled CartPole steps: the Q-values of CartPole states climb from about 0 toward
    the discounted return of +1 per step (gamma 0.9: about 10 for long episodes), which needs
    stored rewards, bootstrapping and the updates to reach the network."""
    gym_env = gym.make("CartPole-v1")
    params = {"n_step": 3, "prioritized": True} if name == "dqn" else {}
    if name == "c51":
        params = {"v_min": -12.0, "v_max": 12.0}
    config = make_config(gym_env, name, n_env_steps=2_000, **params)
    env = make_jax_env("CartPole-v1")
    agent = AGENTS[name][0](name, config_for_jax_env(config, env, n_envs=4))
    rng = np.random.default_rng(0)
    states = (rng.uniform(-0.05, 0.05, (64, 4))).astype(np.float32)  # CartPole's start states
    before = q_values(agent, states).max(-1).mean()
    agent.train(env, 2_000)
    assert agent.n_updates > 0 and agent.env_steps == 2_000
    after = q_values(agent, states).max(-1).mean()
    assert abs(before) < 1.5 and 3.0 < after < 11.0, (before, after)
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
