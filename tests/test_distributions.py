"""Tests for kitae.modules.distributions (bounds, squashing, squashed Gaussian) and
kitae.modules.critic (critic ensembles)."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.modules.critic import ContinuousCritics, critics_factory
from kitae.modules.distributions import (
    ActionBounds,
    action_bounds,
    clip_to_bounds,
    squash_bijector,
    squash_to_bounds,
    squashed_entropy,
    squashed_gaussian,
    squashed_log_prob,
    squashed_mode,
)

BOUNDS_2 = ActionBounds(np.array([-2.0], np.float32), np.array([2.0], np.float32))
"""Pendulum's bounds: loc 0, scale 2."""

BOUNDS_ASYM = ActionBounds(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
"""Two dimensions: loc [0, 0.5], scale [2, 0.5]."""

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def test_squashed_log_prob_by_hand_one_dimension():
    # u = 0.5 under N(0, 1), a = 2 tanh(0.5) in [-2, 2]:
    # log N(0.5; 0, 1) = -0.125 - 0.9189385 = -1.0439385
    # log(1 - tanh(0.5)^2) = log(0.7864477) = -0.2402290
    # log scale = log 2 = 0.6931472
    # log pi(a) = -1.0439385 + 0.2402290 - 0.6931472 = -1.4968567
    mean, log_std = jnp.zeros((1, 1)), jnp.zeros((1, 1))
    dist = squashed_gaussian(mean, log_std, BOUNDS_2)
    u = jnp.array([[0.5]])
    a = 2 * math.tanh(0.5)
    np.testing.assert_allclose(np.asarray(squashed_log_prob(dist, u)), [-1.4968567], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dist.log_prob(jnp.array([[a]]))), [-1.4968567], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(squash_bijector(BOUNDS_2).forward(u)), [[a]], rtol=1e-6)


def test_squashed_log_prob_by_hand_asymmetric_bounds():
    mean = jnp.array([[0.3, -0.1]])
    std = np.array([0.5, 1.0])
    dist = squashed_gaussian(mean, jnp.log(jnp.asarray(std))[None], BOUNDS_ASYM)
    u = np.array([0.7, -0.4])
    z = (u - np.array([0.3, -0.1])) / std
    gaussian = np.sum(-0.5 * z**2 - np.log(std) - HALF_LOG_2PI)
    tanh_log_det = np.sum(np.log(1 - np.tanh(u) ** 2))
    affine_log_det = math.log(2.0) + math.log(0.5)  # scales 2 and 0.5
    expected = gaussian - tanh_log_det - affine_log_det
    np.testing.assert_allclose(
        np.asarray(squashed_log_prob(dist, jnp.asarray(u)[None])), [expected], rtol=1e-5
    )
    a = np.array([0.0, 0.5]) + np.array([2.0, 0.5]) * np.tanh(u)
    np.testing.assert_allclose(
        np.asarray(dist.log_prob(jnp.asarray(a)[None])), [expected], rtol=1e-4
    )


def test_sample_and_log_prob_agree_with_squashed_log_prob():
    mean = jnp.array([[0.3, -0.1], [1.0, 2.0]])
    log_std = jnp.array([[-0.5, 0.1], [0.0, -1.0]])
    dist = squashed_gaussian(mean, log_std, BOUNDS_ASYM)
    a, log_prob = dist.sample_and_log_prob(seed=jax.random.PRNGKey(3))
    assert a.shape == (2, 2) and log_prob.shape == (2,)
    assert np.all(np.asarray(a) >= BOUNDS_ASYM.low) and np.all(np.asarray(a) <= BOUNDS_ASYM.high)
    u = jnp.arctanh((a - BOUNDS_ASYM.loc) / BOUNDS_ASYM.scale)
    np.testing.assert_allclose(
        np.asarray(squashed_log_prob(dist, u)), np.asarray(log_prob), rtol=1e-4
    )


def test_squashed_log_prob_stays_finite_when_tanh_saturates():
    dist = squashed_gaussian(jnp.array([[20.0]]), jnp.zeros((1, 1)), BOUNDS_2)
    u = jnp.array([[20.0]])
    assert float(squash_to_bounds(u, BOUNDS_2)[0, 0]) == 2.0  # tanh rounds to 1
    # log N(20; 20, 1) - log(1 - tanh(20)^2) - log 2, with log(1 - tanh(u)^2) ~ 2 log 2 - 2u
    expected = -HALF_LOG_2PI - (2 * math.log(2) - 40.0) - math.log(2)
    np.testing.assert_allclose(np.asarray(squashed_log_prob(dist, u)), [expected], rtol=1e-5)


def test_squash_to_bounds_numpy_jax_and_bijector_agree():
    u = np.array([[-3.0, 0.0], [0.25, 5.0]], np.float32)
    expected = np.array([0.0, 0.5]) + np.array([2.0, 0.5]) * np.tanh(u)
    host = squash_to_bounds(u, BOUNDS_ASYM)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    np.testing.assert_allclose(host, expected, rtol=1e-6)
    device = squash_to_bounds(jnp.asarray(u), BOUNDS_ASYM)
    assert isinstance(device, jax.Array)
    np.testing.assert_allclose(np.asarray(device), expected, rtol=1e-6)
    bijector = squash_bijector(BOUNDS_ASYM)
    np.testing.assert_allclose(np.asarray(bijector.forward(jnp.asarray(u))), expected, rtol=1e-6)


def test_squashed_mode_is_the_squashed_mean():
    mean = jnp.array([[0.3, -0.1]])
    dist = squashed_gaussian(mean, jnp.zeros((1, 2)), BOUNDS_ASYM)
    np.testing.assert_allclose(
        np.asarray(squashed_mode(dist)),
        np.array([[0.0, 0.5]]) + np.array([[2.0, 0.5]]) * np.tanh([[0.3, -0.1]]),
        rtol=1e-6,
    )


def test_squashed_entropy_estimate_is_unbiased():
    # H(2 tanh(U)), U ~ N(0.5, 0.8^2) = H(U) + E[log(1 - tanh(U)^2)] + log 2, by quadrature.
    mu, sigma = 0.5, 0.8
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    u = mu + sigma * nodes
    expectation = np.sum(weights * np.log(1 - np.tanh(u) ** 2)) / np.sqrt(2 * np.pi)
    exact = 0.5 * math.log(2 * math.pi * math.e * sigma**2) + expectation + math.log(2)
    n = 20_000
    dist = squashed_gaussian(jnp.full((n, 1), mu), jnp.full((n, 1), math.log(sigma)), BOUNDS_2)
    estimates = np.asarray(squashed_entropy(dist, jax.random.PRNGKey(0)))
    assert estimates.shape == (n,)
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / math.sqrt(n)


def test_clip_to_bounds_keeps_the_array_type():
    a = np.array([[-3.0, 2.0]], np.float32)
    np.testing.assert_array_equal(clip_to_bounds(a, BOUNDS_ASYM), [[-2.0, 1.0]])
    assert isinstance(clip_to_bounds(jnp.asarray(a), BOUNDS_ASYM), jax.Array)


def test_action_bounds_of_a_box():
    bounds = action_bounds(
        gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([3.0, 1.0], np.float32))
    )
    np.testing.assert_array_equal(bounds.loc, [1.0, 0.5])
    np.testing.assert_array_equal(bounds.scale, [2.0, 0.5])


@pytest.mark.parametrize(
    "space, match",
    [
        pytest.param(gym.spaces.Box(-np.inf, np.inf, (1,)), "infinite bounds", id="infinite"),
        pytest.param(gym.spaces.Box(-1.0, np.inf, (2,)), "infinite bounds", id="half-infinite"),
        pytest.param(gym.spaces.Discrete(3), "1-D", id="discrete"),
        pytest.param(gym.spaces.Box(-1.0, 1.0, (2, 2)), "1-D", id="2-D box"),
    ],
)
def test_action_bounds_rejects(space, match):
    with pytest.raises(ValueError, match=match):
        action_bounds(space)


# ---- critics -----------------------------------------------------------------------------------


def test_twin_critics_are_independent_and_stacked():
    critics = critics_factory(gym.spaces.Box(-2.0, 2.0, (1,)), 2, hidden_sizes=(8,))
    obs, actions = jnp.ones((5, 3)), jnp.zeros((5, 1))
    params = critics.init(jax.random.PRNGKey(0), obs, actions)
    q = critics.apply(params, obs, actions)
    assert q.shape == (2, 5)
    assert not np.allclose(np.asarray(q[0]), np.asarray(q[1]))
    kernels = jax.tree.leaves(params)
    assert all(k.shape[0] == 2 for k in kernels)


def test_discrete_critics_give_every_action():
    critics = critics_factory(gym.spaces.Discrete(4), 3, hidden_sizes=(8,))
    params = critics.init(jax.random.PRNGKey(0), jnp.ones((5, 2)))
    assert critics.apply(params, jnp.ones((5, 2))).shape == (3, 5, 4)


def test_critic_sees_actions_scaled_to_unit_bounds():
    wide = ContinuousCritics(2, (-2.0,), (2.0,), (8,))
    unit = ContinuousCritics(2, (-1.0,), (1.0,), (8,))
    obs = jnp.ones((3, 2))
    params = wide.init(jax.random.PRNGKey(0), obs, jnp.zeros((3, 1)))
    a = jnp.array([[-2.0], [0.5], [2.0]])
    np.testing.assert_allclose(
        np.asarray(wide.apply(params, obs, a)),
        np.asarray(unit.apply(params, obs, a / 2)),
        rtol=1e-6,
    )
