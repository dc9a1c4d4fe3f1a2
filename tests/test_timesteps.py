"""Tests for kitae.timesteps: compute_td_targets and compute_gae."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.timesteps import (
    compute_gae,
    compute_lambda_returns,
    compute_n_step_return,
    compute_td_targets,
)

gae_jit = jax.jit(compute_gae, static_argnames=("gamma", "gae_lambda"))


def test_td_targets_by_hand():
    r_t = jnp.array([1.0, 0.5, -2.0])
    discount_t = jnp.array([0.99, 0.0, 0.5])  # gamma * (1 - terminated)
    v_tp1 = jnp.array([2.0, 100.0, 4.0])

    targets = compute_td_targets(r_t, discount_t, v_tp1)

    np.testing.assert_allclose(targets, [1.0 + 0.99 * 2.0, 0.5, -2.0 + 0.5 * 4.0], rtol=1e-6)


def test_td_targets_keep_shape_and_stop_gradients():
    v_tp1 = jnp.arange(6.0).reshape(2, 3)
    grad = jax.grad(lambda v: compute_td_targets(jnp.ones((2, 3)), jnp.full((2, 3), 0.9), v).sum())
    assert compute_td_targets(jnp.ones((2, 3)), jnp.ones((2, 3)), v_tp1).shape == (2, 3)
    np.testing.assert_array_equal(grad(v_tp1), np.zeros((2, 3)))


def test_td_targets_reject_mismatched_shapes():
    with pytest.raises(AssertionError):
        compute_td_targets(jnp.ones(3), jnp.ones(3), jnp.ones(4))


# A 4-step trajectory: step 1 terminates, step 2 is truncated, step 3 ends the rollout.
GAMMA, LAMBDA = 0.9, 0.8
R_T = [1.0, 2.0, 3.0, 4.0]
V_T = [0.5, 1.0, 1.5, 2.0]
V_TP1 = [1.0, 10.0, 2.0, 3.0]
TERMINATED = [0, 1, 0, 0]
TRUNCATED = [0, 0, 1, 0]
# deltas: r + gamma * (1 - term) * v_tp1 - v
#   d0 = 1 + 0.9 * 1 - 0.5 = 1.4
#   d1 = 2 + 0        - 1.0 = 1.0   (terminated: v_tp1 = 10 is not used)
#   d2 = 3 + 0.9 * 2 - 1.5 = 3.3   (truncated: bootstraps from v_tp1)
#   d3 = 4 + 0.9 * 3 - 2.0 = 4.7
# advantages, backwards with decay gamma * lambda = 0.72 unless the episode ended at t:
#   A3 = 4.7
#   A2 = 3.3                 (truncation stops the recursion: not 3.3 + 0.72 * 4.7)
#   A1 = 1.0                 (termination stops the recursion)
#   A0 = 1.4 + 0.72 * 1.0 = 2.12
EXPECTED_ADVANTAGES = [2.12, 1.0, 3.3, 4.7]
EXPECTED_RETURNS = [2.62, 2.0, 4.8, 6.7]


def hand_example(dtype=jnp.float32):
    return (
        jnp.array(R_T, dtype),
        jnp.array(V_T, dtype),
        jnp.array(V_TP1, dtype),
        jnp.array(TERMINATED),
        jnp.array(TRUNCATED),
    )


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gae_hand_computed_with_termination_and_truncation(jit):
    gae = gae_jit if jit else compute_gae
    advantages, returns = gae(*hand_example(), gamma=GAMMA, gae_lambda=LAMBDA)
    np.testing.assert_allclose(advantages, EXPECTED_ADVANTAGES, rtol=1e-5)
    np.testing.assert_allclose(returns, EXPECTED_RETURNS, rtol=1e-5)


def test_gae_accepts_boolean_flags():
    r, v, v_tp1, term, trunc = hand_example()
    advantages, _ = compute_gae(
        r, v, v_tp1, term.astype(bool), trunc.astype(bool), gamma=GAMMA, gae_lambda=LAMBDA
    )
    np.testing.assert_allclose(advantages, EXPECTED_ADVANTAGES, rtol=1e-5)


def random_trajectory(seed: int, length: int, p_end: float):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=length).astype(np.float32)
    v = rng.normal(size=length).astype(np.float32)
    v_tp1 = rng.normal(size=length).astype(np.float32)
    terminated = (rng.random(length) < p_end).astype(np.float32)
    truncated = ((rng.random(length) < p_end) & (terminated == 0)).astype(np.float32)
    return r, v, v_tp1, terminated, truncated


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_gae_lambda_zero_gives_one_step_td_errors(seed):
    r, v, v_tp1, terminated, truncated = random_trajectory(seed, 12, p_end=0.3)
    gamma = 0.97

    advantages, returns = compute_gae(r, v, v_tp1, terminated, truncated, gamma, 0.0)

    td_errors = r + gamma * (1.0 - terminated) * v_tp1 - v
    np.testing.assert_allclose(advantages, td_errors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns, td_errors + v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length", [1, 5, 16], ids=lambda n: f"T{n}")
def test_gae_lambda_one_gives_discounted_monte_carlo_returns(length):
    rng = np.random.default_rng(length)
    gamma = 0.95
    r = rng.normal(size=length).astype(np.float32)
    v = rng.normal(size=length).astype(np.float32)
    bootstrap = np.float32(rng.normal())
    v_tp1 = np.append(v[1:], bootstrap)  # consistent values along one episode
    zeros = np.zeros(length, np.float32)

    advantages, returns = compute_gae(r, v, v_tp1, zeros, zeros, gamma, 1.0)

    mc = np.array(
        [
            sum(gamma**k * r[t + k] for k in range(length - t)) + gamma ** (length - t) * bootstrap
            for t in range(length)
        ]
    )
    np.testing.assert_allclose(returns, mc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(advantages, mc - v, rtol=1e-5, atol=1e-5)


def numpy_gae(r, v, v_tp1, terminated, truncated, gamma, lam):
    advantages = np.zeros_like(r)
    next_advantage = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * (1 - terminated[t]) * v_tp1[t] - v[t]
        ended = terminated[t] or truncated[t]
        next_advantage = delta + gamma * lam * (1 - ended) * next_advantage
        advantages[t] = next_advantage
    return advantages


def test_gae_vmap_over_envs_matches_per_env_reference():
    n_envs, length, gamma, lam = 3, 10, 0.99, 0.95
    trajectories = [random_trajectory(seed, length, p_end=0.2) for seed in range(n_envs)]
    # time-major [T, N] like a rollout
    r, v, v_tp1, terminated, truncated = (
        np.stack([traj[i] for traj in trajectories], axis=1) for i in range(5)
    )

    gae = jax.jit(jax.vmap(lambda *xs: compute_gae(*xs, gamma, lam), in_axes=1, out_axes=1))
    advantages, returns = gae(r, v, v_tp1, terminated, truncated)

    assert advantages.shape == (length, n_envs)
    for env, traj in enumerate(trajectories):
        expected = numpy_gae(*traj, gamma, lam)
        np.testing.assert_allclose(advantages[:, env], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(returns[:, env], expected + traj[1], rtol=1e-5, atol=1e-5)


def test_gae_stops_gradients():
    r, v, v_tp1, term, trunc = hand_example()
    grad = jax.grad(lambda v: compute_gae(r, v, v_tp1, term, trunc, GAMMA, LAMBDA)[0].sum())(v)
    np.testing.assert_array_equal(grad, np.zeros(4))


@pytest.mark.parametrize("shape", [(2, 4), ()], ids=["rank2-batched-input", "rank0-scalar-input"])
def test_gae_rejects_inputs_that_are_not_one_trajectory(shape):
    x = jnp.ones(shape)
    with pytest.raises(AssertionError, match="rank"):
        compute_gae(x, x, x, x, x, 0.99, 0.95)


def test_gae_rejects_mismatched_lengths():
    with pytest.raises(AssertionError):
        compute_gae(jnp.ones(4), jnp.ones(4), jnp.ones(3), jnp.zeros(4), jnp.zeros(4), 0.9, 0.9)


# ---- n-step returns -----------------------------------------------------------------------------
N_STEP_CASES = {
    # rewards [1, 2, 4], gamma 0.5
    "full-window": ([False, False, False], [False, False, False], 3.0, 0.125, 2),
    "terminated-mid-window": ([False, True, False], [False, False, False], 2.0, 0.0, 1),
    "truncated-first": ([False, False, False], [True, False, False], 1.0, 0.5, 0),
    "terminated-last": ([False, False, True], [False, False, False], 3.0, 0.0, 2),
}


@pytest.mark.parametrize("case", list(N_STEP_CASES), ids=list(N_STEP_CASES))
def test_n_step_return_against_hand_values(case):
    terminated, truncated, expected_return, expected_discount, expected_last = N_STEP_CASES[case]
    n_return, discount, last = compute_n_step_return(
        jnp.array([1.0, 2.0, 4.0]), jnp.array(terminated), jnp.array(truncated), 0.5
    )
    assert float(n_return) == pytest.approx(expected_return)
    assert float(discount) == pytest.approx(expected_discount)
    assert int(last) == expected_last


def test_n_step_return_with_one_step_is_the_td_target_parts():
    for terminated in (False, True):
        n_return, discount, last = compute_n_step_return(
            jnp.array([1.5]), jnp.array([terminated]), jnp.array([False]), 0.9
        )
        td = compute_td_targets(
            jnp.float32(1.5), jnp.float32(0.9 * (1 - terminated)), jnp.float32(2.0)
        )
        assert float(n_return + discount * 2.0) == pytest.approx(float(td))
        assert int(last) == 0


def test_n_step_return_vmaps_and_jits():
    rewards = jnp.ones((4, 3))
    flags = jnp.zeros((4, 3), bool)
    n_return, discount, _ = jax.jit(jax.vmap(compute_n_step_return, in_axes=(0, 0, 0, None)))(
        rewards, flags, flags, 0.5
    )
    np.testing.assert_allclose(n_return, 1.75)
    np.testing.assert_allclose(discount, 0.125)


# ---- lambda returns (cut at episode ends) ---------------------------------------------------

LR_GAMMA = 0.9
LR_R_T = jnp.array([0.0, 1.0, 0.0, 2.0])
LR_V_TP1 = jnp.array([0.5, 9.0, 0.3, 0.7])
LR_NO = jnp.zeros(4, bool)
LR_AT_1 = jnp.array([False, True, False, False])


@pytest.mark.parametrize(
    "terminated, truncated, lambda_, expected",
    [
        (LR_AT_1, LR_NO, 0.5, [0.675, 1.0, 1.3185, 2.63]),
        (LR_AT_1, LR_NO, 1.0, [0.9, 1.0, 2.367, 2.63]),
        (LR_NO, LR_AT_1, 0.5, [4.32, 9.1, 1.3185, 2.63]),
        (LR_NO, LR_AT_1, 1.0, [8.19, 9.1, 2.367, 2.63]),
    ],
    ids=["lambda-terminated", "monte-carlo-terminated", "lambda-truncated", "mc-truncated"],
)
def test_compute_lambda_returns_hand_computed(terminated, truncated, lambda_, expected):
    targets = compute_lambda_returns(LR_R_T, LR_V_TP1, terminated, truncated, LR_GAMMA, lambda_)
    np.testing.assert_allclose(targets, expected, rtol=1e-5)


def test_compute_lambda_returns_with_lambda_zero_are_one_step_td_and_vmap():
    discount = LR_GAMMA * (1.0 - LR_AT_1.astype(jnp.float32))
    np.testing.assert_allclose(
        compute_lambda_returns(LR_R_T, LR_V_TP1, LR_AT_1, LR_NO, LR_GAMMA, 0.0),
        compute_td_targets(LR_R_T, discount, LR_V_TP1),
        rtol=1e-6,
    )
    batched = jax.jit(jax.vmap(compute_lambda_returns, in_axes=(0, 0, 0, 0, None, None)))(
        jnp.stack([LR_R_T, LR_R_T]),
        jnp.stack([LR_V_TP1, LR_V_TP1]),
        jnp.stack([LR_AT_1, LR_NO]),
        jnp.stack([LR_NO, LR_AT_1]),
        LR_GAMMA,
        1.0,
    )
    expected = [[0.9, 1.0, 2.367, 2.63], [8.19, 9.1, 2.367, 2.63]]
    np.testing.assert_allclose(batched, expected, rtol=1e-5)
