"""Tests for kitae.modules.train_state: TrainState.update_target and polyak_update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitae.modules.train_state import TrainState, polyak_update


def make_state(params=None, target_params=None, learning_rate=0.5):
    params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)} if params is None else params
    if target_params is None:
        target_params = jax.tree.map(jnp.zeros_like, params)
    return TrainState.create(
        apply_fn=lambda p, x: p["w"] * x + p["b"],
        params=params,
        tx=optax.sgd(learning_rate),
        target_params=target_params,
    )


def assert_tree_allclose(a, b, **kwargs):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kwargs)


def assert_tree_equal(a, b):
    """Exactly equal leaves: an unchanged target, or a hard copy, is bit for bit the same."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_update_target_hard_copy_with_tau_one():
    state = make_state()
    new = state.update_target(tau=1.0)
    assert_tree_equal(new.target_params, state.params)
    assert_tree_equal(new.params, state.params)


def test_update_target_polyak_tau_0_1_by_hand():
    state = make_state(target_params={"w": jnp.array([11.0, -8.0]), "b": jnp.array(0.0)})
    new = state.update_target(tau=0.1)
    # 0.1 * params + 0.9 * target
    assert_tree_allclose(
        new.target_params,
        {"w": jnp.array([0.1 * 1 + 0.9 * 11, 0.1 * 2 + 0.9 * -8]), "b": jnp.array(0.3)},
        rtol=1e-6,
    )


def test_update_target_polyak_converges_geometrically():
    state = make_state()  # target starts at 0, params fixed
    for _ in range(3):
        state = state.update_target(tau=0.5)
    # target = (1 - 0.5^3) * params
    assert_tree_allclose(
        state.target_params, jax.tree.map(lambda p: 0.875 * p, state.params), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("step", "period", "updated"),
    [
        (0, 3, True),
        (1, 3, False),
        (2, 3, False),
        (3, 3, True),
        (6, 3, True),
        (7, 1, True),
        (5, 2, False),
        (10, 5, True),
    ],
    ids=[
        "step0-period3",
        "step1-period3",
        "step2-period3",
        "step3-period3",
        "step6-period3",
        "step7-period1",
        "step5-period2",
        "step10-period5",
    ],
)
def test_update_target_only_on_period_multiples(step, period, updated):
    state = make_state().replace(step=jnp.asarray(step))
    new = state.update_target(tau=1.0, period=period)
    expected = state.params if updated else state.target_params
    assert_tree_equal(new.target_params, expected)


def test_update_target_period_follows_apply_gradients_steps():
    state = make_state()
    zero_grads = jax.tree.map(jnp.zeros_like, state.params)
    synced_at = []
    for _ in range(6):
        state = state.apply_gradients(grads=zero_grads)
        state = state.replace(target_params=jax.tree.map(jnp.zeros_like, state.params))
        state = state.update_target(tau=1.0, period=3)
        if float(state.target_params["b"]) == 3.0:
            synced_at.append(int(state.step))
    assert synced_at == [3, 6]


def test_update_target_under_jit_with_traced_step_and_tau():
    state = make_state().replace(step=jnp.asarray(4))
    update = jax.jit(lambda s, tau: s.update_target(tau=tau, period=2))
    new = update(state, jnp.float32(0.25))
    assert_tree_allclose(
        new.target_params, jax.tree.map(lambda p: 0.25 * p, state.params), rtol=1e-6
    )
    new = update(state.replace(step=jnp.asarray(5)), jnp.float32(0.25))
    assert_tree_equal(new.target_params, state.target_params)


def test_target_params_are_a_separate_pytree_from_params():
    state = make_state().update_target(tau=1.0)
    grads = {"w": jnp.array([1.0, 1.0]), "b": jnp.array(2.0)}

    new = state.apply_gradients(grads=grads)

    # sgd(0.5) moved the online params; the target keeps the copied values
    assert_tree_allclose(new.params, {"w": jnp.array([0.5, 1.5]), "b": jnp.array(2.0)})
    assert_tree_equal(new.target_params, {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)})
    assert int(new.step) == 1


def test_train_state_without_target_defaults_to_none():
    state = TrainState.create(apply_fn=None, params={"w": jnp.ones(2)}, tx=optax.sgd(0.1))
    assert state.target_params is None


def test_polyak_update_function_by_hand():
    params, target = {"a": jnp.array(10.0)}, {"a": jnp.array(0.0)}
    np.testing.assert_allclose(polyak_update(params, target, 0.1)["a"], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(polyak_update(params, target, 0.1, step=1, period=2)["a"], 0.0)
    np.testing.assert_allclose(
        polyak_update(params, target, 0.1, step=2, period=2)["a"], 1.0, rtol=1e-6
    )
