"""Tests for observation normalisation and reward scaling (:mod:`kitae.normalization`) and their
use by PPO on both training paths: running statistics and reward scaling against hand-computed
numbers, clipping, checkpoints, evaluation, and training on an env with a large offset."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import Counting, corridor, make_vec
from helpers import assert_trees_equal, small_config

import kitae.normalization as normalization
from kitae.algos import PPO, PPOParams
from kitae.buffer import Experience
from kitae.envs.jax_env import JaxEnv
from kitae.normalization import (
    INITIAL_COUNT,
    NormalizationState,
    NormalizedTrainState,
    RunningStatistics,
    init_statistics,
)

OFFSET, SCALE = 1_000.0, 100.0
"""Observations of the offset target: ``OFFSET + SCALE * x``, ``x ~ U[-1, 1]`` (mean 1000,
variance ``100^2 / 3``)."""


class OffsetTarget(gym.Env):
    """One-step episodes: observe ``OFFSET + SCALE * x`` for a target ``x ~ U[-1, 1]``, act
    ``a`` in ``[-2, 2]``, get ``-(a - x)^2`` and terminate."""

    metadata = {"render_modes": []}

    def __init__(self, offset: float = OFFSET, scale: float = SCALE):
        self.offset, self.scale = offset, scale
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.x = np.zeros(1, np.float32)

    def _obs(self) -> np.ndarray:
        return (self.offset + self.scale * self.x).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        error = float(np.asarray(action, np.float64).reshape(-1)[0] - self.x[0])
        return self._obs(), -(error**2), True, False, {}


class JaxOffsetTarget:
    """The gymnax-style twin of :class:`OffsetTarget` (state: the target ``x``)."""

    @property
    def default_params(self):
        return None

    def observation_space(self, params):
        return gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def action_space(self, params):
        return gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def is_truncated(self, state, params):
        return jnp.zeros((), bool)

    def reset_env(self, key, params):
        x = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return OFFSET + SCALE * x, x

    def step_env(self, key, state, action, params):
        reward = -jnp.sum(jnp.square(action - state))
        return OFFSET + SCALE * state, state, reward, jnp.ones((), bool), {}


gym.register("kitae-tests/OffsetTarget-v0", entry_point=OffsetTarget)


def norm_config(env, *, n_env_steps=64, **params):
    """A small PPO config with both normalisations on: rollouts of 32 transitions, minibatches
    of 8, 2 epochs."""
    algo_params = {
        "hidden_sizes": (16,),
        "normalize_observations": True,
        "normalize_rewards": True,
        **params,
    }
    update = {"learning_rate": 1e-3, "max_buffer_size": 32, "batch_size": 8, "n_epochs": 2}
    return small_config(PPOParams, env, params=algo_params, update=update, n_env_steps=n_env_steps)


def pooled(values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and population variance of the initial statistics (count 1e-4, mean 0, var 1)
    pooled with ``values [B, ...]``, in float64."""
    values = np.asarray(values, np.float64)
    count = INITIAL_COUNT + len(values)
    mean = values.sum(0) / count
    second_moment = (INITIAL_COUNT * 1.0 + np.square(values).sum(0)) / count
    return count, mean, second_moment - mean**2


# ---- running statistics ----------------------------------------------------------------------


def test_initial_statistics_are_count_1e_4_mean_0_var_1():
    stats = init_statistics((2, 3))
    assert stats.mean.shape == stats.var.shape == (2, 3) and stats.mean.dtype == jnp.float32
    np.testing.assert_allclose(float(stats.count), 1e-4, rtol=1e-6)
    np.testing.assert_array_equal(stats.mean, 0.0)
    np.testing.assert_array_equal(stats.var, 1.0)


def test_merging_batches_gives_the_statistics_of_their_concatenation():
    rng = np.random.default_rng(0)
    a = (50.0 + 3.0 * rng.standard_normal((5, 3))).astype(np.float32)
    b = (-20.0 + 0.5 * rng.standard_normal((7, 3))).astype(np.float32)
    stats = normalization.update_statistics(
        normalization.update_statistics(init_statistics((3,)), a), b
    )
    count, mean, var = pooled(np.concatenate([a, b]))
    np.testing.assert_allclose(float(stats.count), count, rtol=1e-6)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(stats.var, var, rtol=1e-4)
    # the prior's weight is negligible: numpy's statistics of the data
    np.testing.assert_allclose(stats.mean, np.concatenate([a, b]).mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, np.concatenate([a, b]).var(0), rtol=1e-3)
    at_once = normalization.update_statistics(init_statistics((3,)), np.concatenate([a, b]))
    np.testing.assert_allclose(at_once.var, stats.var, rtol=1e-4)
    np.testing.assert_allclose(at_once.mean, stats.mean, rtol=1e-6)


def test_update_statistics_by_hand_and_under_jit():
    # prior (1e-4, 0, 1) with [1, 3]: mean 4 / 2.0001, E[x^2] = (1e-4 + 10) / 2.0001
    stats = jax.jit(normalization.update_statistics)(init_statistics(()), jnp.array([1.0, 3.0]))
    count = 2.0001
    np.testing.assert_allclose(float(stats.count), count, rtol=1e-6)
    np.testing.assert_allclose(float(stats.mean), 4.0 / count, rtol=1e-6)
    np.testing.assert_allclose(float(stats.var), 10.0001 / count - (4.0 / count) ** 2, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, \*shape\]"):
        normalization.update_statistics(init_statistics((2,)), jnp.zeros((4, 3)))


def test_normalize_centres_scales_and_clips():
    stats = RunningStatistics(
        count=jnp.float32(10.0), mean=jnp.array([1.0, -2.0]), var=jnp.array([4.0, 0.25])
    )
    x = jnp.array([[3.0, -2.0], [100.0, -100.0], [-1.0, -1.5]])
    z = normalization.normalize(stats, x, clip=5.0, epsilon=0.0)
    np.testing.assert_allclose(z, [[1.0, 0.0], [5.0, -5.0], [-1.0, 1.0]], rtol=1e-6)
    assert z.dtype == jnp.float32
    # epsilon is added to the variance
    z = normalization.normalize(stats, jnp.array([[3.0, -2.0]]), clip=10.0, epsilon=5.0)
    np.testing.assert_allclose(z, [[2.0 / 3.0, 0.0]], rtol=1e-6)


# ---- reward scaling ---------------------------------------------------------------------------


def test_reward_scaling_by_hand_with_an_episode_end_in_the_middle():
    gamma = 0.5
    rewards = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    ended = jnp.array([[False], [True], [False], [False]])
    stats, accumulator, scaled = normalization.scale_rewards(
        init_statistics(()), jnp.zeros((1,)), rewards, ended, gamma, clip=10.0
    )
    # R: 1, 0.5 * 1 + 2 = 2.5, reset, 3, 0.5 * 3 + 4 = 5.5
    returns = np.array([1.0, 2.5, 3.0, 5.5])
    expected = [
        min(r / math.sqrt(pooled(returns[: t + 1])[2] + 1e-8), 10.0)
        for t, r in enumerate([1.0, 2.0, 3.0, 4.0])
    ]
    assert expected[0] == 10.0  # one sample: the variance is tiny, the clip is active
    np.testing.assert_allclose(np.asarray(scaled)[:, 0], expected, rtol=1e-4)
    np.testing.assert_allclose(accumulator, [5.5])
    count, mean, var = pooled(returns)
    np.testing.assert_allclose(float(stats.count), count, rtol=1e-6)
    np.testing.assert_allclose(float(stats.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(float(stats.var), var, rtol=1e-4)
    assert scaled.shape == (4, 1) and scaled.dtype == jnp.float32


def test_reward_scaling_merges_every_env_of_a_step_and_clips():
    # two envs, one step, accumulators [1, -1]: R = [1 + 2, -1 + 0] = [3, -1] with gamma 1
    stats, accumulator, scaled = normalization.scale_rewards(
        init_statistics(()),
        jnp.array([1.0, -1.0]),
        jnp.array([[2.0, 0.0]]),
        jnp.array([[True, False]]),
        gamma=1.0,
        clip=0.5,
    )
    count, mean, var = pooled(np.array([3.0, -1.0]))
    np.testing.assert_allclose(float(stats.var), var, rtol=1e-5)
    np.testing.assert_allclose(accumulator, [0.0, -1.0])
    np.testing.assert_allclose(scaled, [[min(2.0 / math.sqrt(var), 0.5), 0.0]], rtol=1e-5)
    assert 2.0 / math.sqrt(var) > 0.5  # the clip was active


def test_normalize_rollout_uses_the_acting_statistics_then_merges_the_rollout():
    obs_stats = RunningStatistics(jnp.float32(4.0), jnp.array([10.0]), jnp.array([4.0]))
    state = NormalizedTrainState.create(apply_fn=None, params={}, tx=optax.identity())
    state = state.replace(
        normalization=NormalizationState(
            observation=obs_stats, returns=None, discounted_return=None, clip_observations=100.0
        )
    )
    obs = jnp.array([[[12.0], [14.0]], [[8.0], [10.0]]])  # [T=2, N=2, 1]
    rollout = Experience(
        observation=obs,
        action=jnp.zeros((2, 2)),
        reward=jnp.ones((2, 2)),
        done=jnp.zeros((2, 2), bool),
        next_observation=obs + 2.0,
        log_prob=jnp.zeros((2, 2)),
        truncated=jnp.zeros((2, 2), bool),
    )
    new_state, out = jax.jit(normalization.normalize_rollout)(state, rollout)
    np.testing.assert_allclose(out.observation[..., 0], [[1.0, 2.0], [-1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out.next_observation[..., 0], [[2.0, 3.0], [0.0, 1.0]], rtol=1e-6)
    np.testing.assert_array_equal(out.reward, rollout.reward)  # no reward scaling asked
    # merged: 4 samples of mean 10, var 4 with [12, 14, 8, 10] (mean 11, var 5)
    stats = new_state.normalization.observation
    np.testing.assert_allclose(float(stats.count), 8.0)
    np.testing.assert_allclose(stats.mean, [10.5])
    np.testing.assert_allclose(stats.var, [(4 * 4 + 4 * 5 + 1.0 * 4 * 4 / 8) / 8], rtol=1e-6)


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"clip_observations": 0.0}, "algo_params.clip_observations"),
        ({"clip_rewards": -1.0}, "algo_params.clip_rewards"),
        ({"normalize_rewards": 1}, "algo_params.normalize_rewards"),
    ],
    ids=["clip-observations-zero", "clip-rewards-negative", "normalize-rewards-not-bool"],
)
def test_invalid_normalization_fields_raise(params, match):
    with pytest.raises(ValueError, match=match):
        PPO("bad", norm_config(make_vec(OffsetTarget, 2), **params))


def test_normalizing_discrete_observations_raises():
    env = make_vec(lambda: corridor(), 2)
    config = norm_config(env)
    config.env_cfg.observation_space = gym.spaces.Discrete(5)
    with pytest.raises(ValueError, match="algo_params.normalize_observations=True needs a float"):
        PPO("bad", config)


def test_normalization_is_off_by_default_and_the_state_is_a_plain_train_state():
    env = make_vec(OffsetTarget, 2)
    config = norm_config(env, normalize_observations=False, normalize_rewards=False)
    agent = PPO("plain", config)
    assert not isinstance(agent.state, NormalizedTrainState)


# ---- PPO on both paths ------------------------------------------------------------------------


def assert_statistics_fit_the_offset_target(agent, n_samples):
    norm = jax.device_get(agent.state.normalization)
    np.testing.assert_allclose(norm.observation.count, n_samples + INITIAL_COUNT, rtol=1e-6)
    # n_samples of U[OFFSET - SCALE, OFFSET + SCALE]: std of the mean 57.7 / sqrt(n)
    assert abs(float(norm.observation.mean[0]) - OFFSET) < 4 * 57.8 / math.sqrt(n_samples)
    assert 0.6 * SCALE**2 / 3 < float(norm.observation.var[0]) < 1.4 * SCALE**2 / 3
    # returns are the one-step rewards -(a - x)^2 < 0
    assert norm.returns.count > n_samples and norm.returns.mean < 0 and norm.returns.var > 0
    np.testing.assert_array_equal(norm.discounted_return, 0.0)  # every step ends an episode


def test_ppo_normalizes_observations_on_the_gymnasium_path():
    env = make_vec(OffsetTarget, 2)
    agent = PPO("gym", norm_config(env))
    agent.train(env, 64)
    assert agent.n_updates == 2
    assert_statistics_fit_the_offset_target(agent, 64)
    # acting reads the statistics: the same action as the plain network on (obs - mean) / std
    obs = np.array([[OFFSET - 50.0], [OFFSET + 80.0]], np.float32)
    stats = agent.state.normalization.observation
    z = (obs - np.asarray(stats.mean)) / np.sqrt(np.asarray(stats.var) + 1e-8)
    (mean, _), _ = agent.state.apply_fn(agent.state.params, z)
    np.testing.assert_allclose(agent.select_action(obs)[0], mean, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(agent.last_info["loss"]))


def test_ppo_normalizes_observations_on_the_compiled_path():
    env = JaxEnv(JaxOffsetTarget(), name="JaxOffsetTarget")
    agent = PPO("compiled", norm_config(make_vec(OffsetTarget, 2)))
    agent.train(env, 64)
    assert agent.n_updates == 2
    assert_statistics_fit_the_offset_target(agent, 64)


def test_reward_accumulator_carries_across_rollouts_and_resets_at_episode_ends():
    # Counting: episodes of 4 steps with rewards 1, 2, 3, 4; one env and rollouts of 6 steps,
    # so the first rollout ends mid-episode.
    env = make_vec(lambda: Counting(length=4), 1)
    config = small_config(
        PPOParams,
        env,
        params={"hidden_sizes": (8,), "normalize_rewards": True, "gamma": 0.5},
        update={"learning_rate": 1e-3, "max_buffer_size": 6, "batch_size": 6, "n_epochs": 1},
        n_env_steps=12,
    )
    agent = PPO("counting", config)
    agent.train(env, 6)
    # steps 1..4 end an episode, then 1, 2: R = 0.5 * 1 + 2
    np.testing.assert_allclose(agent.state.normalization.discounted_return, [2.5])
    agent.train(env, 6)  # 3, 4 | 1, 2, 3, 4: R = 0 at the end
    np.testing.assert_allclose(agent.state.normalization.discounted_return, [0.0])
    returns = [1, 2.5, 4.25, 6.125, 1, 2.5, 4.25, 6.125, 1, 2.5, 4.25, 6.125]
    count, mean, var = pooled(np.array(returns))
    np.testing.assert_allclose(float(agent.state.normalization.returns.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(float(agent.state.normalization.returns.var), var, rtol=1e-4)


# ---- checkpoints and evaluation ---------------------------------------------------------------


def test_statistics_are_saved_and_restored(tmp_path):
    env = make_vec(OffsetTarget, 2)
    agent = PPO("saved", norm_config(env), run_dir=tmp_path)
    agent.train(env, 32)
    agent.save()
    norm = jax.device_get(agent.state.normalization)
    assert float(norm.observation.count) > 1.0
    restored = PPO("saved", norm_config(env))
    restored.restore(tmp_path / "saved")
    assert_trees_equal(restored.state.normalization, norm)
    resumed = PPO.resume(tmp_path / "saved")
    assert_trees_equal(resumed.state.normalization, norm)
    inference = PPO.load_for_inference(tmp_path / "saved")
    assert_trees_equal(inference.state.normalization, norm)
    obs = np.array([[OFFSET + 10.0], [OFFSET - 30.0]], np.float32)
    np.testing.assert_array_equal(inference.select_action(obs)[0], agent.select_action(obs)[0])


@pytest.mark.slow
def test_a_resumed_compiled_run_continues_with_the_saved_statistics(tmp_path):
    env = JaxEnv(JaxOffsetTarget(), name="JaxOffsetTarget")
    config = norm_config(make_vec(OffsetTarget, 2), n_env_steps=64)
    agent = PPO("compiled", config, run_dir=tmp_path)
    agent.train(env, 32)
    agent.save()
    saved = jax.device_get(agent.state.normalization)
    agent.train(env, 32)
    resumed = PPO.resume(tmp_path / "compiled")
    assert_trees_equal(resumed.state.normalization, saved)
    resumed.train(env, 32)
    assert float(resumed.state.normalization.observation.count) > float(saved.observation.count)
    assert_trees_equal(resumed.state.normalization, agent.state.normalization)


def test_evaluation_does_not_change_the_statistics():
    from kitae.evaluation import evaluate, evaluate_jax

    env = make_vec(OffsetTarget, 2)
    agent = PPO("eval", norm_config(env))
    agent.train(env, 32)
    before = jax.device_get(agent.state.normalization)
    returns = evaluate(agent, "kitae-tests/OffsetTarget-v0", n_episodes=4)
    assert returns.shape == (4,) and np.all(returns <= 0)
    evaluate_jax(agent, JaxEnv(JaxOffsetTarget(), name="JaxOffsetTarget"), n_episodes=4)
    agent.select_action(np.full((3, 1), OFFSET + 500.0, np.float32))
    assert_trees_equal(agent.state.normalization, before)
    assert_trees_equal(agent.acting_state.normalization, before)


# ---- learning ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_learns_a_target_with_a_large_offset_only_with_normalized_observations():
    # observations in [900, 1100]: unnormalised, every tanh unit saturates the same way
    targets = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]

    def final_mse(normalize_observations):
        env = make_vec(OffsetTarget, 2)
        config = norm_config(
            env,
            n_env_steps=2_048,
            hidden_sizes=(32, 32),
            normalize_observations=normalize_observations,
            normalize_rewards=False,
            log_std_init=math.log(0.5),
        )
        agent = PPO("offset", config)
        agent.train(env)
        observations = OFFSET + SCALE * targets
        actions = agent.to_env_action(np.asarray(agent.select_action(observations)[0]))
        return float(np.mean((actions - targets) ** 2))

    with_norm, without = final_mse(True), final_mse(False)
    assert with_norm < 0.05, (with_norm, without)
    assert without > 0.2, (with_norm, without)  # about the variance of the targets, 1/3
