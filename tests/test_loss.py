"""Tests for kitae.loss, against hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.loss import loss_huber, loss_mean_squared_error, loss_policy_ppo, loss_value_clip


def test_mse_by_hand():
    predictions = jnp.array([1.0, 2.0, -1.0, 0.5])
    targets = jnp.array([0.0, 4.0, -1.0, 1.5])
    # squared errors 1, 4, 0, 1 -> mean 1.5
    np.testing.assert_allclose(loss_mean_squared_error(predictions, targets), 1.5, rtol=1e-6)


def test_mse_averages_over_all_axes():
    predictions = jnp.array([[1.0, 3.0], [0.0, 0.0]])
    targets = jnp.zeros((2, 2))
    np.testing.assert_allclose(loss_mean_squared_error(predictions, targets), 2.5, rtol=1e-6)


@pytest.mark.parametrize(
    ("error", "delta", "expected"),
    [
        (0.5, 1.0, 0.5 * 0.25),  # inside delta: 0.5 x^2
        (-0.5, 1.0, 0.5 * 0.25),
        (1.0, 1.0, 0.5),  # at delta both branches agree
        (3.0, 1.0, 1.0 * (3.0 - 0.5)),  # outside: delta * (|x| - delta / 2)
        (-3.0, 1.0, 2.5),
        (3.0, 2.0, 2.0 * (3.0 - 1.0)),
        (1.5, 2.0, 0.5 * 2.25),
    ],
    ids=[
        "inside",
        "inside-negative",
        "at-delta",
        "outside",
        "outside-negative",
        "outside-delta2",
        "inside-delta2",
    ],
)
def test_huber_by_hand(error, delta, expected):
    loss = loss_huber(jnp.array([error]), jnp.array([0.0]), delta=delta)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_huber_is_mean_over_batch():
    # 0.5 * 0.25 = 0.125 inside, 2.5 outside -> mean 1.3125
    loss = loss_huber(jnp.array([1.5, 0.0]), jnp.array([2.0, 3.0]))
    np.testing.assert_allclose(loss, 1.3125, rtol=1e-6)


@pytest.mark.parametrize("loss_fn", [loss_mean_squared_error, loss_huber], ids=["mse", "huber"])
def test_regression_losses_reject_mismatched_shapes(loss_fn):
    with pytest.raises(AssertionError):
        loss_fn(jnp.ones(3), jnp.ones((3, 1)))


EPS = 0.2


@pytest.mark.parametrize(
    ("ratio", "advantage", "expected_loss", "clipped"),
    [
        (1.5, 2.0, -1.2 * 2.0, True),  # A > 0, ratio > 1 + eps: clipped at 1.2
        (1.1, 2.0, -1.1 * 2.0, False),  # A > 0, inside the range
        (0.5, 2.0, -0.5 * 2.0, False),  # A > 0, ratio < 1 - eps: the unclipped term is smaller
        (0.5, -1.0, -0.8 * -1.0, True),  # A < 0, ratio < 1 - eps: clipped at 0.8
        (0.9, -1.0, -0.9 * -1.0, False),  # A < 0, inside the range
        (1.5, -1.0, -1.5 * -1.0, False),  # A < 0, ratio > 1 + eps: the unclipped term is smaller
    ],
    ids=[
        "pos-adv-clip-active",
        "pos-adv-inside",
        "pos-adv-low-ratio-unclipped",
        "neg-adv-clip-active",
        "neg-adv-inside",
        "neg-adv-high-ratio-unclipped",
    ],
)
def test_ppo_policy_loss_clipping_by_hand(ratio, advantage, expected_loss, clipped):
    old_log_probs = jnp.array([-1.0])
    advantages = jnp.array([advantage])

    def loss(log_probs):
        return loss_policy_ppo(log_probs, old_log_probs, advantages, EPS)[0]

    log_probs = old_log_probs + np.log(ratio)
    np.testing.assert_allclose(loss(log_probs), expected_loss, rtol=1e-5)
    grad = jax.grad(loss)(log_probs)
    if clipped:
        # the clipped term carries no gradient: the policy is not pushed further
        np.testing.assert_array_equal(grad, [0.0])
    else:
        # d/dlogp (-ratio * A) = -ratio * A
        np.testing.assert_allclose(grad, [-ratio * advantage], rtol=1e-5)


def test_ppo_policy_loss_is_batch_mean_and_reports_approx_kl():
    ratios = np.array([1.5, 1.1, 0.5, 1.5])
    advantages = jnp.array([2.0, 2.0, -1.0, -1.0])
    old_log_probs = jnp.array([-0.5, -1.0, -2.0, -0.1])
    log_probs = old_log_probs + np.log(ratios)

    loss, approx_kl = loss_policy_ppo(log_probs, old_log_probs, advantages, EPS)

    # objectives min(r A, clip(r) A): 2.4, 2.2, -0.8, -1.5 -> loss = -mean = -0.575
    np.testing.assert_allclose(loss, -0.575, rtol=1e-5)
    expected_kl = np.mean((ratios - 1.0) - np.log(ratios))
    np.testing.assert_allclose(approx_kl, expected_kl, rtol=1e-5)
    assert approx_kl > 0


def test_ppo_policy_loss_on_policy_is_minus_mean_advantage_with_zero_kl():
    log_probs = jnp.array([-0.3, -1.2, -2.0])
    advantages = jnp.array([1.0, -2.0, 4.0])
    loss, approx_kl = loss_policy_ppo(log_probs, log_probs, advantages, EPS)
    np.testing.assert_allclose(loss, -1.0, rtol=1e-6)
    np.testing.assert_allclose(approx_kl, 0.0, atol=1e-7)


def test_ppo_policy_loss_rejects_rank2_inputs():
    x = jnp.zeros((2, 3))
    with pytest.raises(AssertionError):
        loss_policy_ppo(x, x, x, EPS)


VALUES = jnp.array([1.0, 2.0, 1.0, 0.55])
TARGETS = jnp.array([3.0, 0.0, 0.0, 1.0])
OLD_VALUES = jnp.array([0.5, 2.5, 0.5, 0.5])


def test_value_loss_without_clipping_is_half_mse():
    # squared errors 4, 4, 1, 0.2025 -> mean 2.300625 -> half 1.1503125
    loss = loss_value_clip(VALUES, TARGETS, OLD_VALUES, None)
    np.testing.assert_allclose(loss, 1.1503125, rtol=1e-6)


def test_value_loss_with_clipping_by_hand():
    # clipped values: 0.5 + 0.2 = 0.7, 2.5 - 0.2 = 2.3, 0.5 + 0.2 = 0.7, 0.55 (inside)
    # clipped errors: (0.7 - 3)^2 = 5.29, 2.3^2 = 5.29, 0.7^2 = 0.49, 0.45^2 = 0.2025
    # unclipped:      4,                  4,            1,           0.2025
    # max:            5.29,               5.29,         1,           0.2025 -> mean 2.945625
    loss = loss_value_clip(VALUES, TARGETS, OLD_VALUES, 0.2)
    np.testing.assert_allclose(loss, 0.5 * 2.945625, rtol=1e-6)


def test_value_loss_with_clipping_equals_unclipped_when_values_stay_in_range():
    values = jnp.array([1.0, 2.0])
    old_values = values + jnp.array([0.05, -0.1])
    targets = jnp.array([0.0, 5.0])
    np.testing.assert_allclose(
        loss_value_clip(values, targets, old_values, 0.2),
        loss_value_clip(values, targets, old_values, None),
        rtol=1e-6,
    )


def test_value_loss_clipped_element_has_no_gradient():
    # element 0 is clipped and the clipped error is larger: its gradient is 0
    grad = jax.grad(lambda v: loss_value_clip(v, TARGETS[:1], OLD_VALUES[:1], 0.2))(VALUES[:1])
    np.testing.assert_array_equal(grad, [0.0])
    grad = jax.grad(lambda v: loss_value_clip(v, TARGETS[2:3], OLD_VALUES[2:3], 0.2))(VALUES[2:3])
    np.testing.assert_allclose(grad, [1.0], rtol=1e-6)  # d/dv 0.5 (v - 0)^2 at v = 1
