"""Tests for kitae.schedules."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.schedules import LinearSchedule, off_policy_update_count, on_policy_update_count

SCHEDULE = LinearSchedule(start=1.0, end=0.1, duration=100)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(-10, 1.0), (0, 1.0), (25, 0.775), (50, 0.55), (100, 0.1), (250, 0.1), (99.5, 0.1045)],
    ids=["before-start", "start", "quarter", "half", "end", "after-end", "fractional-step"],
)
def test_linear_schedule_python_path_by_hand_with_clamping(step, expected):
    value = SCHEDULE(step)
    assert type(value) is float  # no JAX dispatch on the host path
    assert value == pytest.approx(expected, rel=1e-9)


def test_linear_schedule_jax_path_under_jit_agrees_with_python_path():
    steps = [-10, 0, 1, 25, 50, 77, 100, 250]
    values = jax.jit(jax.vmap(SCHEDULE))(jnp.array(steps, jnp.float32))
    assert isinstance(values, jax.Array)
    np.testing.assert_allclose(values, [SCHEDULE(s) for s in steps], rtol=1e-6)


def test_linear_schedule_jax_scalar_outside_jit_returns_array():
    value = SCHEDULE(jnp.asarray(50))
    assert isinstance(value, jax.Array)
    np.testing.assert_allclose(value, 0.55, rtol=1e-6)


def test_linear_schedule_increasing_and_zero_duration():
    up = LinearSchedule(start=0.0, end=2.0, duration=4)
    assert [up(s) for s in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    instant = LinearSchedule(start=1.0, end=0.0, duration=0)
    assert instant(0) == 1.0 and instant(1) == 0.0


def test_off_policy_update_count_rl_zoo_dqn_cartpole():
    # rl-zoo DQN CartPole: 5e4 steps, train_freq 256, learning_starts 1000, batch 64,
    # gradient_steps 128.
    n_updates = off_policy_update_count(
        n_env_steps=50_000, n_envs=1, skip_steps=256, start_step=1000, batch_size=64
    )
    assert n_updates == 192
    assert n_updates * 128 == 24_576


def simulate_off_policy_updates(n_env_steps, n_envs, skip_steps, start_step, batch_size):
    """The training loop's rule, step by step."""
    env_steps = prev_ticks = count = 0
    first = max(start_step, batch_size, 1)
    for _ in range(math.ceil(n_env_steps / n_envs)):
        env_steps += n_envs
        ticks = env_steps // skip_steps
        due, prev_ticks = ticks - prev_ticks, ticks
        if env_steps >= first:
            count += due
    return count


@pytest.mark.parametrize(
    ("n_env_steps", "n_envs", "skip_steps", "start_step", "batch_size", "expected"),
    [
        (100, 1, 1, -1, 1, 100),
        (100, 1, 1, -1, 10, 91),
        (100, 4, 1, -1, 10, 92),  # ticks before env_steps 12 (the first >= 10) are dropped
        (10, 4, 3, 0, 1, 4),  # 12 env steps collected: ticks at 3, 6, 9, 12
        (10, 1, 20, 0, 1, 0),
        (50, 1, 10, 60, 1, 0),  # learning never starts
    ],
    ids=[
        "every-step",
        "wait-for-batch",
        "vector-envs-catch-up",
        "partial-last-vector-step",
        "skip-longer-than-run",
        "start-after-run",
    ],
)
def test_off_policy_update_count_small_cases_by_hand(
    n_env_steps, n_envs, skip_steps, start_step, batch_size, expected
):
    args = (n_env_steps, n_envs, skip_steps, start_step, batch_size)
    assert off_policy_update_count(*args) == expected
    assert simulate_off_policy_updates(*args) == expected


def test_off_policy_update_count_matches_simulation_on_random_configs():
    rng = np.random.default_rng(0)
    for _ in range(400):
        args = (
            int(rng.integers(1, 300)),  # n_env_steps
            int(rng.integers(1, 9)),  # n_envs
            int(rng.integers(1, 40)),  # skip_steps
            int(rng.integers(-1, 120)),  # start_step
            int(rng.integers(1, 80)),  # batch_size
        )
        assert off_policy_update_count(*args) == simulate_off_policy_updates(*args), args


@pytest.mark.parametrize(
    ("n_env_steps", "rollout_size", "expected"),
    [(1000, 128, 7), (1024, 128, 8), (127, 128, 0), (128, 128, 1)],
    ids=["remainder-dropped", "exact-multiple", "shorter-than-rollout", "one-rollout"],
)
def test_on_policy_update_count(n_env_steps, rollout_size, expected):
    assert on_policy_update_count(n_env_steps, rollout_size) == expected
