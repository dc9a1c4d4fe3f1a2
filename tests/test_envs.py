"""Tests for kitae.envs.make and the env helpers of kitae.base (as_vector_env,
true_next_observation, EpisodeTracker)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from kitae.base import EpisodeTracker, as_vector_env, true_next_observation
from kitae.envs.make import make_vec_env

SAME_STEP = gym.vector.AutoresetMode.SAME_STEP


def time_limit(n):
    return lambda env: gym.wrappers.TimeLimit(env, max_episode_steps=n)


@pytest.mark.parametrize(
    ("vectorization", "vector_cls"),
    [("sync", gym.vector.SyncVectorEnv), ("async", gym.vector.AsyncVectorEnv)],
    ids=["sync", "async"],
)
def test_make_vec_env_builds_same_step_autoreset_env(vectorization, vector_cls, tmp_cwd):
    env = make_vec_env("CartPole-v1", 2, vectorization=vectorization, wrappers=[time_limit(3)])
    try:
        assert isinstance(env, vector_cls)
        assert env.metadata["autoreset_mode"] == SAME_STEP
        assert env.num_envs == 2
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 4)
        actions = np.zeros(2, np.int64)
        for _ in range(2):
            obs, _, terminated, truncated, _ = env.step(actions)
            assert not truncated.any() and not terminated.any()
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        # the 3-step TimeLimit wrapper cut both episodes
        np.testing.assert_array_equal(truncated, [True, True])
        # same-step autoreset: the step already returns the next episode's first observation and
        # hands the true final observation in infos
        np.testing.assert_array_equal(infos["_final_obs"], [True, True])
        for i in range(2):
            assert not np.allclose(infos["final_obs"][i], next_obs[i])
            # CartPole resets to small uniform noise; pushing left for 3 steps moves far away
            assert np.all(np.abs(next_obs[i]) <= 0.05)
        np.testing.assert_array_equal(rewards, [1.0, 1.0])
    finally:
        env.close()
    assert not any(tmp_cwd.iterdir())  # nothing (e.g. videos) written to the working directory


def test_make_vec_env_applies_wrappers_in_order_to_every_env():
    env = make_vec_env(
        "CartPole-v1",
        3,
        wrappers=[time_limit(5), gym.wrappers.RecordEpisodeStatistics],
    )
    try:
        for sub_env in env.envs:
            assert isinstance(sub_env, gym.wrappers.RecordEpisodeStatistics)
            assert isinstance(sub_env.env, gym.wrappers.TimeLimit)
            assert sub_env.env._max_episode_steps == 5
    finally:
        env.close()


def test_make_vec_env_passes_env_kwargs_to_gym_make():
    env = make_vec_env("CartPole-v1", 2, max_episode_steps=2)
    try:
        env.reset(seed=1)
        _, _, _, truncated, _ = env.step(np.zeros(2, np.int64))
        assert not truncated.any()
        _, _, _, truncated, _ = env.step(np.zeros(2, np.int64))
        np.testing.assert_array_equal(truncated, [True, True])
    finally:
        env.close()


@pytest.mark.parametrize(
    "n_envs", [0, -2, 1.0, True, "2"], ids=["zero", "negative", "float", "bool", "str"]
)
def test_make_vec_env_rejects_invalid_n_envs(n_envs):
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("CartPole-v1", n_envs)


def test_make_vec_env_rejects_unknown_vectorization():
    with pytest.raises(ValueError, match="vectorization='threads'"):
        make_vec_env("CartPole-v1", 2, vectorization="threads")


def test_as_vector_env_wraps_plain_env_with_same_step_autoreset():
    plain = gym.make("CartPole-v1", max_episode_steps=2)
    env = as_vector_env(plain)
    try:
        assert isinstance(env, gym.vector.SyncVectorEnv)
        assert env.num_envs == 1
        assert env.metadata["autoreset_mode"] == SAME_STEP
        assert env.envs[0] is plain
        env.reset(seed=0)
        env.step(np.zeros(1, np.int64))
        _, _, _, truncated, infos = env.step(np.zeros(1, np.int64))
        assert truncated[0] and infos["_final_obs"][0]
    finally:
        env.close()


def test_as_vector_env_returns_same_step_vector_env_unchanged():
    env = make_vec_env("CartPole-v1", 2)
    try:
        assert as_vector_env(env) is env
    finally:
        env.close()


def test_as_vector_env_rejects_next_step_autoreset_vector_env():
    env = gym.make_vec("CartPole-v1", 2)  # gymnasium's default is NEXT_STEP
    try:
        with pytest.raises(ValueError, match="SAME_STEP"):
            as_vector_env(env)
    finally:
        env.close()


def test_as_vector_env_rejects_non_env():
    with pytest.raises(TypeError, match="list"):
        as_vector_env([1, 2])


def test_true_next_observation_replaces_only_ended_envs():
    next_obs = np.arange(6, dtype=np.float32).reshape(3, 2)
    original = next_obs.copy()
    final_obs = np.array([None, np.array([-1.0, -2.0], np.float32), None], dtype=object)
    infos = {"final_obs": final_obs, "_final_obs": np.array([False, True, False])}
    ended = np.array([False, True, False])

    real = true_next_observation(next_obs, infos, ended)

    np.testing.assert_array_equal(real, [[0.0, 1.0], [-1.0, -2.0], [4.0, 5.0]])
    np.testing.assert_array_equal(next_obs, original)  # the env's array is not modified
    assert real.dtype == np.float32


def test_true_next_observation_without_ended_env_returns_input():
    next_obs = np.ones((2, 3))
    assert true_next_observation(next_obs, {}, np.zeros(2, bool)) is next_obs


def test_true_next_observation_on_real_env_gives_final_observation():
    env = make_vec_env("CartPole-v1", 2, wrappers=[time_limit(2)])
    try:
        env.reset(seed=0)
        obs, *_ = env.step(np.array([1, 1]))
        next_obs, _, terminated, truncated, infos = env.step(np.array([1, 1]))
        ended = terminated | truncated
        assert ended.all()
        real = true_next_observation(next_obs, infos, ended)
        for i in range(2):
            np.testing.assert_array_equal(real[i], infos["final_obs"][i])
            # the final observation continues the episode: the cart kept moving right
            assert real[i][1] > obs[i][1]
    finally:
        env.close()


def test_episode_tracker_records_returns_and_lengths_per_env_and_resets():
    tracker = EpisodeTracker(3, window=2)

    assert tracker.step(np.array([1.0, 2.0, 3.0]), np.array([False, False, False])) == []
    done = tracker.step(np.array([1.0, 2.0, 3.0]), np.array([False, True, False]))
    assert done == [(4.0, 2)]
    np.testing.assert_array_equal(tracker.returns, [2.0, 0.0, 6.0])
    np.testing.assert_array_equal(tracker.lengths, [2, 0, 2])

    done = tracker.step(np.array([0.5, 10.0, 1.0]), np.array([True, False, True]))
    assert done == [(2.5, 3), (7.0, 3)]
    np.testing.assert_array_equal(tracker.returns, [0.0, 10.0, 0.0])
    np.testing.assert_array_equal(tracker.lengths, [0, 1, 0])

    assert tracker.finished == [(4.0, 2), (2.5, 3), (7.0, 3)]
    assert list(tracker.recent_returns) == [2.5, 7.0]  # window of 2
    assert tracker.recent_mean == pytest.approx(4.75)


def test_episode_tracker_recent_mean_is_nan_before_any_episode():
    tracker = EpisodeTracker(2)
    tracker.step(np.ones(2), np.zeros(2, bool))
    assert np.isnan(tracker.recent_mean)
    assert tracker.finished == []
