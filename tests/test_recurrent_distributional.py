"""The LSTM torso of the distributional Q-learners (``torso="lstm"`` on C51, QR-DQN and IQN):
the window loss is the feed-forward loss on the unrolled core outputs of the learned steps (burn-in
excluded, cores reset at episode starts, no bootstrap after a termination), validation names the
field, both execution paths train, and a checkpoint resumes as the same agent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import make_vec
from helpers import assert_trees_equal, trees_equal
from test_r2d2 import Recall

from kitae.algos import C51, IQN, QRDQN, iqn, r2d2
from kitae.algos.r2d2 import R2D2Batch
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, validate_config
from kitae.distributional import categorical_atoms, categorical_td_loss, qr_dqn_td_loss

UPDATE = UpdateConfig(
    learning_rate=1e-3,
    learning_rate_annealing=False,
    max_grad_norm=10.0,
    max_buffer_size=256,
    batch_size=4,
    n_epochs=1,
)
SMALL = {
    "torso": "lstm",
    "lstm_size": 4,
    "sequence_length": 6,
    "burn_in": 2,
    "hidden_sizes": (8,),
    "n_step": 2,
    "gamma": 0.9,
    "prioritized": True,
    "start_step": 40,
    "skip_steps": 8,
}
HEADS = {
    C51: {"n_atoms": 5, "v_min": -2.0, "v_max": 2.0},
    QRDQN: {"n_quantiles": 4},
    IQN: {
        "n_tau_samples": 4,
        "n_tau_prime_samples": 4,
        "n_quantile_samples": 4,
        "n_cosines": 4,
        "head_hidden_sizes": (4,),
    },
}
AGENTS = [C51, QRDQN, IQN]


def make_config(cls: type, env, n_env_steps: int = 120, **params) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=cls.params_type(**{**SMALL, **HEADS[cls], **params}),
        update_cfg=UPDATE,
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig.from_env(env),
    )


# ---- the window loss, by hand ------------------------------------------------------------------


def hand_batch() -> R2D2Batch:
    """Two windows of 6 steps (burn-in 2). Window 0: an episode terminates at step 1 (in the
    burn-in: the core resets before step 2), another terminates at step 3 (a learned step, no
    bootstrap) and the next one is truncated at step 5. Window 1: truncated at step 2 (bootstrap
    from its final observation, no return across it)."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1.0, 1.0, (2, 6, 2)).astype(np.float32)
    next_obs = rng.uniform(-1.0, 1.0, (2, 6, 2)).astype(np.float32)
    terminated = np.zeros((2, 6), bool)
    truncated = np.zeros((2, 6), bool)
    terminated[0, 1] = terminated[0, 3] = True
    truncated[0, 5] = truncated[1, 2] = True
    return R2D2Batch(
        observation=jnp.asarray(obs),
        action=jnp.asarray([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 1]], jnp.int32),
        reward=jnp.asarray([[0.5, -1.0, 1.0, 2.0, -0.5, 1.5], [1.0, 0.5, -1.0, 0.5, 2.0, -1.5]]),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
        next_observation=jnp.asarray(next_obs),
        core_state=jnp.asarray(rng.normal(0.0, 0.5, (2, 8)).astype(np.float32)),
        weight=jnp.ones(2, jnp.float32),
    )


def step_by_step_features(state, params, batch: R2D2Batch, b: int):
    """Core outputs of window ``b`` unrolled one step at a time, the core zeroed by hand after
    every episode end: ``(y [L, F], y_next [L, F])``."""

    @jax.jit
    def one_step(params, observation, next_observation, core):
        out = state.apply_fn(
            params,
            observation[None, None],
            jnp.zeros((1, 1), bool),
            core,
            next_observation[None, None],
            method="features",
        )
        return out.q[0, 0], out.q_next[0, 0], out.states[0]

    core = batch.core_state[b][None]
    ys, ys_next = [], []
    for t in range(batch.reward.shape[1]):
        if t > 0 and (batch.terminated[b, t - 1] or batch.truncated[b, t - 1]):
            core = jnp.zeros_like(core)
        y, y_next, core = one_step(
            params, batch.observation[b, t], batch.next_observation[b, t], core
        )
        ys.append(y)
        ys_next.append(y_next)
    return jnp.stack(ys), jnp.stack(ys_next)


def n_step_by_hand(batch: R2D2Batch, b: int, t: int, gamma: float, n: int):
    """``(return, discount, last)`` of step ``t`` of window ``b``: at most ``n`` rewards, cut
    after an episode end and at the window's end; discount 0 after a termination."""
    ret, k, last = 0.0, 0, t
    for i in range(n):
        s = t + i
        if s >= batch.reward.shape[1]:
            break
        ret += gamma**i * float(batch.reward[b, s])
        k, last = i + 1, s
        if batch.terminated[b, s] or batch.truncated[b, s]:
            break
    discount = 0.0 if batch.terminated[b, last] else gamma**k
    return ret, discount, last


def c51_step(p):
    atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
    q_of = lambda logits: jnp.sum(jax.nn.softmax(logits, -1) * atoms, -1)  # noqa: E731

    def loss(online_tm1, action, ret, discount, target_tp1):
        probs = jax.nn.softmax(target_tp1, -1)
        return categorical_td_loss(online_tm1, action, ret, discount, probs, atoms)

    return q_of, loss


def qrdqn_step(p):
    def loss(online_tm1, action, ret, discount, target_tp1):
        return qr_dqn_td_loss(online_tm1, action, ret, discount, target_tp1, p.kappa)

    return (lambda quantiles: quantiles.mean(-1)), loss


@pytest.mark.parametrize("cls, step", [(C51, c51_step), (QRDQN, qrdqn_step)], ids=["c51", "qrdqn"])
def test_window_loss_is_the_feed_forward_loss_on_the_learned_steps_of_the_unroll(cls, step):
    env = make_vec(lambda: Recall(), 2)
    agent = cls("hand", make_config(cls, env))
    state = agent.state.replace(
        target_params=jax.tree.map(lambda x: x * 0.8 + 0.05, agent.state.params)
    )
    p = agent.config.algo_params
    batch = hand_batch()
    q_of, step_loss = step(p)

    head = jax.jit(lambda params, y: state.apply_fn(params, y[None], method="head_values")[0])

    window_losses = []
    for b in range(2):
        y, y_next = step_by_step_features(state, state.params, batch, b)
        _, y_next_target = step_by_step_features(state, state.target_params, batch, b)
        losses = []
        for t in range(p.burn_in, p.sequence_length):
            ret, discount, last = n_step_by_hand(batch, b, t, p.gamma, p.n_step)
            a_star = int(jnp.argmax(q_of(head(state.params, y_next[last]))))  # double-Q
            target = head(state.target_params, y_next_target[last])[a_star]
            losses.append(
                float(
                    step_loss(head(state.params, y[t]), batch.action[b, t], ret, discount, target)
                )
            )
        window_losses.append(losses)
    window_losses = np.array(window_losses)  # [B, T - burn_in]
    assert window_losses.shape == (2, 4)

    _, info = jax.jit(agent.update_step_fn)(state, jax.random.PRNGKey(0), batch)
    np.testing.assert_allclose(info["loss_qvalue"], window_losses.mean(), rtol=1e-5)
    priorities = 0.9 * window_losses.max(1) + 0.1 * window_losses.mean(1)
    np.testing.assert_allclose(info["td_error"], priorities, rtol=1e-5)


def test_iqn_window_loss_ignores_burn_in_steps_and_does_not_bootstrap_after_terminations():
    """IQN samples its quantile levels, so its loss is checked by what must not change it."""
    env = make_vec(lambda: Recall(), 2)
    agent = IQN("iqn", make_config(IQN, env))
    params = agent.state.params
    other = jax.tree.map(lambda x: x * 0.8 + 0.05, params)
    config = agent.config
    window_losses = jax.jit(
        r2d2.recurrent_head_sample_losses(
            config, iqn.batch_factory(config), iqn.iqn_sample_losses(config)
        )
    )
    key = jax.random.PRNGKey(3)

    def loss(batch, target_params):
        state = agent.state.replace(target_params=target_params)
        return float(window_losses(state, params, key, batch)[0].mean())

    batch = hand_batch()
    value = loss(batch, other)
    burn_changed = batch._replace(
        reward=batch.reward.at[:, :2].add(5.0), action=batch.action.at[:, :2].set(1)
    )
    assert loss(burn_changed, other) == value
    assert loss(batch._replace(reward=batch.reward.at[:, 2].add(5.0)), other) != value
    # terminations at every learned step: the targets are the rewards, whatever the target net
    ended = batch._replace(terminated=batch.terminated.at[:, 2:].set(True))
    assert loss(ended, other) == loss(ended, params)
    assert loss(batch, other) != loss(batch, params)


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", AGENTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("torso", "gru", "algo_params.torso='gru' is invalid"),
        ("lstm_size", 0, "algo_params.lstm_size"),
        ("sequence_length", 10_000, "longer than the replay buffer"),
        ("burn_in", 6, "algo_params.burn_in=6 must be smaller"),
    ],
    ids=lambda v: str(v),
)
def test_invalid_lstm_params_raise_naming_the_field(cls, field, value, message):
    env = make_vec(lambda: Recall(), 2)
    with pytest.raises(ValueError, match=message):
        validate_config(make_config(cls, env, **{field: value}))


@pytest.mark.parametrize("cls", AGENTS, ids=lambda c: c.__name__)
def test_sequence_length_belongs_to_the_lstm_torso(cls):
    env = make_vec(lambda: Recall(), 2)
    with pytest.raises(ValueError, match="sequence_length=6 is only read with torso='lstm'"):
        validate_config(make_config(cls, env, torso="mlp"))
    assert cls.params_type().sequence_length is None
    assert cls.params_type(torso="lstm").sequence_length == 20


# ---- both paths train, checkpoints resume ------------------------------------------------------


def test_c51_lstm_trains_on_gymnasium_and_resumes_from_a_checkpoint(tmp_path):
    env = make_vec(lambda: Recall(), 2)
    agent = C51("ckpt", make_config(C51, env), run_dir=tmp_path)
    assert agent.recurrent and agent.core_state.shape == (2, 8)
    before = agent.state.params
    agent.train(env)
    assert agent.n_updates > 0 and not trees_equal(agent.state.params, before)
    assert np.abs(np.asarray(agent.buffer_state.data.actor_state)).sum() > 0
    agent.save(include_buffer=True)
    resumed = C51.resume(tmp_path / "ckpt")
    assert type(resumed) is C51 and resumed.config.algo_params.torso == "lstm"
    assert_trees_equal(resumed.state.params, agent.state.params)
    assert_trees_equal(resumed.buffer_state, agent.buffer_state)
    resumed.train(env, 16)
    assert resumed.env_steps == 136


@pytest.mark.slow
@pytest.mark.parametrize("cls", [QRDQN, IQN], ids=lambda c: c.__name__)
def test_lstm_agents_train_on_the_gymnasium_path(cls):
    env = make_vec(lambda: Recall(), 2)
    agent = cls("gym", make_config(cls, env))
    before = agent.state.params
    agent.train(env)
    assert agent.n_updates > 0 and not trees_equal(agent.state.params, before)
    assert np.abs(np.asarray(agent.buffer_state.data.actor_state)).sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("cls", AGENTS, ids=lambda c: c.__name__)
def test_lstm_agents_train_on_the_compiled_path(cls):
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    env = make_jax_env("MemoryChain-bsuite")
    config = config_for_jax_env(make_config(cls, make_vec(lambda: Recall(), 1)), env, 2)
    agent = cls("compiled", config)
    before = agent.state.params
    agent.train(env, 120)
    assert agent.n_updates > 0 and not trees_equal(agent.state.params, before)
    runner = agent._compiled_cache["runner"]
    assert runner.actor_state.shape == (2, 8)
    assert np.any(np.asarray(runner.buffer_state.data.actor_state) != 0)
