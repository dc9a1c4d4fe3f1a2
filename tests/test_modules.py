"""Tests for kitae.modules (modules, qvalue, policy, optimizer) with tiny networks."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitae.config import UpdateConfig
from kitae.modules.modules import MLP, get_activation, init_params
from kitae.modules.optimizer import get_learning_rate, make_optimizer, set_learning_rate
from kitae.modules.policy import action_distribution, actor_critic_factory
from kitae.modules.qvalue import qvalue_factory

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
KEY = jax.random.PRNGKey(0)


def init(module, *input_shapes):
    """``init_params`` compiled as one program (eager init would compile op by op)."""
    return jax.jit(init_params, static_argnums=(1, 2))(KEY, module, tuple(input_shapes))


def apply(module, params, *args, **kwargs):
    return jax.jit(lambda p, *a: module.apply(p, *a, **kwargs))(params, *args)


def test_get_activation_known_and_unknown():
    np.testing.assert_allclose(get_activation("relu")(jnp.array([-1.0, 2.0])), [0.0, 2.0])
    with pytest.raises(ValueError, match=r"activation='swish' is unknown.*relu"):
        get_activation("swish")


def test_mlp_flattens_input_and_applies_hidden_layers():
    mlp = MLP(hidden_sizes=(5, 4), activation="relu")
    params = init(mlp, (2, 3))
    assert params["params"]["Dense_0"]["kernel"].shape == (6, 5)
    assert params["params"]["Dense_1"]["kernel"].shape == (5, 4)
    out = apply(mlp, params, jnp.ones((7, 2, 3)))
    assert out.shape == (7, 4)
    assert bool(jnp.all(out >= 0.0))  # relu output


def test_mlp_casts_integer_observations_to_float():
    mlp = MLP(hidden_sizes=())
    out = mlp.apply({}, jnp.arange(6, dtype=jnp.uint8).reshape(1, 2, 3))
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, [[0, 1, 2, 3, 4, 5]])


def test_qvalue_factory_outputs_one_value_per_action():
    module = qvalue_factory(BOX_OBS, gym.spaces.Discrete(4), hidden_sizes=(8,))
    params = init(module, BOX_OBS.shape)
    assert apply(module, params, jnp.zeros((5, 3))).shape == (5, 4)


def test_qvalue_dueling_head_mean_over_actions_is_state_value():
    module = qvalue_factory(BOX_OBS, gym.spaces.Discrete(3), hidden_sizes=(8,), dueling=True)
    params = init(module, BOX_OBS.shape)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    q, state = apply(module, params, obs, capture_intermediates=True)
    (value,) = state["intermediates"]["Dense_0"]["__call__"]  # the V(o) head, [B, 1]
    assert value.shape == (4, 1)
    np.testing.assert_allclose(q.mean(axis=-1), value[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "action_space",
    [gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.MultiDiscrete([2, 2])],
    ids=["box", "multidiscrete"],
)
def test_qvalue_factory_rejects_non_discrete_actions(action_space):
    with pytest.raises(ValueError, match="Discrete"):
        qvalue_factory(BOX_OBS, action_space)


def test_actor_critic_discrete_returns_logits_and_values():
    module = actor_critic_factory(BOX_OBS, gym.spaces.Discrete(3), hidden_sizes=(8,))
    params = init(module, BOX_OBS.shape)
    logits, value = apply(module, params, jnp.ones((5, 3)))
    assert logits.shape == (5, 3) and value.shape == (5,)
    dist = action_distribution(logits, discrete=True)
    np.testing.assert_allclose(
        jnp.exp(dist.log_prob(jnp.zeros(5, jnp.int32))), jax.nn.softmax(logits)[:, 0], rtol=1e-5
    )


def test_actor_critic_continuous_returns_mean_and_initial_log_std():
    module = actor_critic_factory(
        BOX_OBS, gym.spaces.Box(-2.0, 2.0, (2,)), hidden_sizes=(8,), log_std_init=-0.5
    )
    params = init(module, BOX_OBS.shape)
    (mean, log_std), value = apply(module, params, jnp.ones((4, 3)))
    assert mean.shape == (4, 2) and value.shape == (4,)
    np.testing.assert_allclose(log_std, np.full((4, 2), -0.5))
    dist = action_distribution((mean, log_std), discrete=False)
    np.testing.assert_allclose(dist.stddev(), np.full((4, 2), np.exp(-0.5)), rtol=1e-6)


def test_actor_critic_shared_encoder_has_one_torso():
    def n_torsos(shared):
        module = actor_critic_factory(
            BOX_OBS, gym.spaces.Discrete(2), hidden_sizes=(4,), shared_encoder=shared
        )
        params = init(module, BOX_OBS.shape)["params"]
        return sum(name.startswith("MLP") for name in params)

    assert n_torsos(shared=True) == 1
    assert n_torsos(shared=False) == 2


@pytest.mark.parametrize(
    ("action_space", "match"),
    [
        (gym.spaces.Box(-np.inf, np.inf, (2,)), "infinite bounds"),
        (gym.spaces.Box(-1.0, 1.0, (2, 2)), "not supported"),
        (gym.spaces.MultiBinary(3), "not supported"),
    ],
    ids=["infinite-box", "2d-box", "multibinary"],
)
def test_actor_critic_factory_rejects_unsupported_action_spaces(action_space, match):
    with pytest.raises(ValueError, match=match):
        actor_critic_factory(BOX_OBS, action_space)


def adam_updates(tx, grads, n_steps):
    params = jnp.zeros_like(grads)
    opt_state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for _ in range(n_steps):
        updates, opt_state = update(grads, opt_state, params)
        out.append(np.asarray(updates))
    return np.stack(out)


def test_make_optimizer_anneals_learning_rate_linearly_to_zero():
    cfg = UpdateConfig(learning_rate=0.1, learning_rate_annealing=True)
    # with a constant gradient Adam's normalised step is 1, so each update is -lr_t
    updates = adam_updates(make_optimizer(cfg, total_gradient_steps=4), jnp.ones(1), 6)
    np.testing.assert_allclose(
        updates[:, 0], [-0.1, -0.075, -0.05, -0.025, 0.0, 0.0], rtol=1e-4, atol=1e-7
    )


def test_make_optimizer_without_annealing_keeps_learning_rate():
    cfg = UpdateConfig(learning_rate=0.1)
    updates = adam_updates(make_optimizer(cfg, total_gradient_steps=2), jnp.ones(1), 4)
    np.testing.assert_allclose(updates[:, 0], [-0.1] * 4, rtol=1e-4)


def test_make_optimizer_clips_global_gradient_norm():
    grads = jnp.array([300.0, 400.0])  # global norm 500
    # a huge eps makes Adam's step proportional to the (clipped) gradient: -lr * g / eps
    eps = 1e6
    clipped = make_optimizer(UpdateConfig(learning_rate=1.0, max_grad_norm=1.0), 1, eps=eps)
    unclipped = make_optimizer(UpdateConfig(learning_rate=1.0), 1, eps=eps)
    np.testing.assert_allclose(
        adam_updates(clipped, grads, 1)[0], -np.array([0.6, 0.8]) / eps, rtol=1e-3
    )
    np.testing.assert_allclose(
        adam_updates(unclipped, grads, 1)[0],
        -np.array([300.0, 400.0]) / (eps + np.array([300.0, 400.0])),
        rtol=1e-3,
    )


@pytest.mark.parametrize("max_grad_norm", [None, 10.0], ids=["adam", "clipped-adam"])
def test_set_learning_rate_changes_the_step_size_inside_the_optimizer_state(max_grad_norm):
    tx = make_optimizer(UpdateConfig(learning_rate=0.1, max_grad_norm=max_grad_norm), 10)
    params = jnp.zeros(2)
    opt_state = tx.init(params)
    np.testing.assert_allclose(get_learning_rate(opt_state), 0.1, rtol=1e-6)

    # a traced learning rate: a compiled program can set it without recompiling
    new_state = jax.jit(set_learning_rate)(opt_state, jnp.float32(0.5))

    np.testing.assert_allclose(get_learning_rate(new_state), 0.5, rtol=1e-6)
    np.testing.assert_allclose(get_learning_rate(opt_state), 0.1, rtol=1e-6)  # not mutated
    updates, _ = jax.jit(tx.update)(jnp.ones(2), new_state, params)
    np.testing.assert_allclose(updates, [-0.5, -0.5], rtol=1e-4)  # Adam's step is -lr here


def test_set_learning_rate_rejects_optimizer_without_injected_learning_rate():
    opt_state = optax.sgd(0.1).init(jnp.zeros(2))
    with pytest.raises(ValueError, match="no injected learning_rate"):
        set_learning_rate(opt_state, 0.5)
    with pytest.raises(ValueError, match="no injected learning_rate"):
        get_learning_rate(opt_state)


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (3, 5, 7)], ids=str)
def test_orthogonal_init_is_scaled_orthonormal(shape):
    from kitae.modules.modules import orthogonal

    w = np.asarray(orthogonal(2.0)(jax.random.PRNGKey(0), shape)).reshape(-1, shape[-1]) / 2.0
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)
    other = np.asarray(orthogonal(2.0)(jax.random.PRNGKey(1), shape)).reshape(w.shape) / 2.0
    assert not np.allclose(w, other)


def test_orthogonal_init_needs_no_lapack_call_under_vmap():
    # A batched LAPACK QR inside a compiled training program can deadlock XLA's CPU pool.
    from kitae.modules.modules import orthogonal

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    hlo = jax.jit(jax.vmap(lambda k: orthogonal()(k, (8, 8)))).lower(keys).as_text()
    assert "lapack" not in hlo.lower() and "custom_call" not in hlo
