"""Agent-level tests: the gymnasium loop, DQN and PPO end to end on tiny deterministic envs.

Compilation dominates the cost of these tests, so most of them share a few configurations (the
``dqn_config`` / ``ppo_config`` defaults): identical configurations lower to identical programs,
which the persistent compilation cache enabled in ``conftest.py`` compiles once per session.
"""

from __future__ import annotations

import json
import math
import os

import gymnasium as gym
import jax
import numpy as np
import pytest
from envs import Counting, Target, corridor, corridor_observations, make_vec
from helpers import TRACE_EVENT, assert_trees_equal, leaves, small_config, trees_all_differ

from kitae.algos import ppo as ppo_module
from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.config import AlgoConfig
from kitae.schedules import off_policy_gradient_steps, off_policy_update_count

# ---- helpers -----------------------------------------------------------------------------------


def dqn_config(
    env, *, seed: int = 0, n_env_steps: int = 1_000, update=None, **params
) -> AlgoConfig:
    """A small DQN config for ``env``; ``params`` override :class:`DQNParams` fields and
    ``update`` (a dict) overrides :class:`UpdateConfig` fields."""
    algo_params = {
        "hidden_sizes": (32, 32),
        "gamma": 0.9,
        "start_step": -1,
        "skip_steps": 2,
        "target_update_period": 3,
        "tau": 1.0,
        "loss": "huber",
        "double_q": True,
        "dueling": False,
        "exploration_start": 1.0,
        "exploration_end": 0.05,
        "exploration_fraction": 0.5,
        **params,
    }
    update_params = {  # every field explicit: the tests do not depend on the defaults
        "learning_rate": 1e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": None,
        "max_buffer_size": 256,
        "batch_size": 8,
        "n_epochs": 1,
        **(update or {}),
    }
    return small_config(
        DQNParams, env, params=algo_params, update=update_params, seed=seed, n_env_steps=n_env_steps
    )


def ppo_config(env, *, seed: int = 0, n_env_steps: int = 96, update=None, **params) -> AlgoConfig:
    """A small PPO config for ``env``: rollouts of 32 transitions, minibatches of 8, 2 epochs."""
    algo_params = {"hidden_sizes": (32, 32), **params}
    update_params = {
        "learning_rate": 1e-3,
        "max_buffer_size": 32,
        "batch_size": 8,
        "n_epochs": 2,
        **(update or {}),
    }
    return small_config(
        PPOParams, env, params=algo_params, update=update_params, seed=seed, n_env_steps=n_env_steps
    )


COUNTING_LENGTHS = (3, 4, 5)
"""Episode lengths of the three envs of the counting vector env: resets fall out of step."""


def counting_env(lengths=COUNTING_LENGTHS) -> gym.vector.VectorEnv:
    return make_vec([lambda n=n: Counting(n) for n in lengths])


# ---- 1, 2: what the loop stores and records ---------------------------------------------------

COUNTING_VECTOR_STEPS = 20


@pytest.fixture(scope="module")
def counting_dqn():
    """A DQN trained for 20 vector steps on three Counting envs of lengths 3, 4, 5."""
    env = counting_env()
    n_env_steps = COUNTING_VECTOR_STEPS * env.num_envs
    agent = DQN("counting", dqn_config(env, n_env_steps=n_env_steps))
    summary = agent.train(env, n_env_steps)
    agent.flush()
    return agent, summary


def expected_counting_column(length: int, n_steps: int) -> dict[str, np.ndarray]:
    """What one Counting env of episode ``length`` yields over ``n_steps`` steps from a seeded
    reset: episode ``k`` step ``t`` is the ``k * length + t``-th transition."""
    k = np.arange(n_steps)
    episode, t = k // length, k % length
    ended = t + 1 == length
    return {
        "observation": np.stack([episode, t], -1).astype(np.float32),
        "next_observation": np.stack([episode, t + 1], -1).astype(np.float32),
        "reward": (t + 1).astype(np.float32),
        "done": ended & (episode % 2 == 0),
        "truncated": ended & (episode % 2 == 1),
    }


def test_loop_stores_every_transition_within_its_episode(counting_dqn):
    agent, summary = counting_dqn
    n_envs = len(COUNTING_LENGTHS)
    assert summary["env_steps"] == agent.env_steps == COUNTING_VECTOR_STEPS * n_envs
    state = agent.buffer_state
    # The buffer is large enough: every transition of every env is there, in order.
    np.testing.assert_array_equal(np.asarray(state.size), [COUNTING_VECTOR_STEPS] * n_envs)
    assert int(np.asarray(state.size).sum()) == agent.env_steps
    data = jax.tree.map(np.asarray, state.data)
    for env_index, length in enumerate(COUNTING_LENGTHS):
        expected = expected_counting_column(length, COUNTING_VECTOR_STEPS)
        for field, want in expected.items():
            got = getattr(data, field)[:COUNTING_VECTOR_STEPS, env_index]
            np.testing.assert_array_equal(got, want, err_msg=f"env {env_index}, field {field}")


def test_loop_stored_transitions_never_cross_a_reset(counting_dqn):
    """Checks the invariant directly, independently of the exact expected layout."""
    agent, _ = counting_dqn
    data = jax.tree.map(np.asarray, agent.buffer_state.data)
    obs = data.observation[:COUNTING_VECTOR_STEPS]
    nxt = data.next_observation[:COUNTING_VECTOR_STEPS]
    # Same episode, next step.
    np.testing.assert_array_equal(nxt[..., 0], obs[..., 0])
    np.testing.assert_array_equal(nxt[..., 1], obs[..., 1] + 1)
    ended = data.done[:COUNTING_VECTOR_STEPS] | data.truncated[:COUNTING_VECTOR_STEPS]
    assert not (data.done & data.truncated).any()
    lengths = np.array(COUNTING_LENGTHS, np.float32)
    # An episode ends exactly when the final observation reaches the episode length ...
    np.testing.assert_array_equal(ended, nxt[..., 1] == lengths)
    # ... and the next stored observation then is the reset observation of the next episode.
    following = obs[1:]
    np.testing.assert_array_equal(
        following,
        np.where(
            ended[:-1, :, None], np.stack([nxt[:-1, :, 0] + 1, 0 * nxt[:-1, :, 1]], -1), nxt[:-1]
        ),
    )
    assert ended.sum() > 0 and data.truncated.sum() > 0 and data.done.sum() > 0
    # Actions and their log-probabilities were stored for every transition.
    assert set(np.unique(data.action[:COUNTING_VECTOR_STEPS])) <= {0, 1}
    assert np.isfinite(data.log_prob[:COUNTING_VECTOR_STEPS]).all()


def expected_finished_episodes(lengths, n_vector_steps) -> list[tuple[float, int]]:
    out = []
    for step in range(1, n_vector_steps + 1):
        for length in lengths:
            if step % length == 0:
                out.append((Counting.episode_return(length), length))
    return out


def test_episode_statistics_record_every_finished_episode(counting_dqn):
    agent, summary = counting_dqn
    expected = expected_finished_episodes(COUNTING_LENGTHS, COUNTING_VECTOR_STEPS)
    assert len(expected) == 6 + 5 + 4
    assert agent.tracker.finished == expected
    assert agent.episode_returns == [r for r, _ in expected]
    assert summary["episodes"] == len(expected)
    # The in-memory log has one row per episode, stamped with the env step it ended at.
    n_envs = len(COUNTING_LENGTHS)
    rows = agent.logger.history["episodes"]
    want_steps = [
        step * n_envs
        for step in range(1, COUNTING_VECTOR_STEPS + 1)
        for length in COUNTING_LENGTHS
        if step % length == 0
    ]
    assert [row["step"] for row in rows] == want_steps
    assert [(row["return"], row["length"]) for row in rows] == expected


def test_single_env_is_wrapped_and_stored_like_a_vector_env():
    env = Counting(3)
    agent = DQN("single", dqn_config(env, n_env_steps=12))
    assert agent.config.env_cfg.n_envs == 1
    summary = agent.train(env, 12)
    agent.flush()
    assert summary["env_steps"] == 12
    assert summary["n_updates"] == off_policy_update_count(12, 1, 2, -1, 8)
    data = jax.tree.map(np.asarray, agent.buffer_state.data)
    for field, want in expected_counting_column(3, 12).items():
        np.testing.assert_array_equal(getattr(data, field)[:12, 0], want, err_msg=field)
    assert agent.tracker.finished == [(6.0, 3)] * 4


def test_train_calls_on_the_same_single_env_continue_its_episodes():
    env = Counting(3)
    agent = DQN("single", dqn_config(env, n_env_steps=20))
    agent.train(env, 10)
    agent.train(env, 10)
    agent.flush()
    data = jax.tree.map(np.asarray, agent.buffer_state.data)
    for field, want in expected_counting_column(3, 20).items():
        np.testing.assert_array_equal(getattr(data, field)[:20, 0], want, err_msg=field)


def test_train_calls_on_the_same_env_continue_its_episodes():
    env = counting_env()
    agent = DQN("continued", dqn_config(env, n_env_steps=60))
    for _ in range(2):
        agent.train(env, 30)  # 10 vector steps each: every env is mid-episode in between
    agent.flush()
    # Exactly what one call of 60 transitions stores and records.
    data = jax.tree.map(np.asarray, agent.buffer_state.data)
    for env_index, length in enumerate(COUNTING_LENGTHS):
        for field, want in expected_counting_column(length, 20).items():
            got = getattr(data, field)[:20, env_index]
            np.testing.assert_array_equal(got, want, err_msg=f"env {env_index}, field {field}")
    assert agent.tracker.finished == expected_finished_episodes(COUNTING_LENGTHS, 20)


def test_train_on_another_env_resets_it_and_the_running_episode_statistics():
    first, second = counting_env((3,)), counting_env((3,))
    agent = DQN("another-env", dqn_config(first, n_env_steps=20))
    agent.train(first, 10)  # 3 episodes, then 1 step of a 4th that is abandoned
    assert agent.tracker.finished == [(6.0, 3)] * 3
    agent.train(second, 10)
    agent.flush()
    # The abandoned step is not merged into the next episode: every episode is a real one.
    assert agent.tracker.finished == [(6.0, 3)] * 6
    data = jax.tree.map(np.asarray, agent.buffer_state.data)
    column = expected_counting_column(3, 10)
    cut = {**column, "truncated": column["truncated"] | (np.arange(10) == 9)}
    for field, want in column.items():
        # Both envs start from their first episode; each transition is stored once, and the
        # abandoned step is marked truncated (no n-step window runs on into the second env).
        np.testing.assert_array_equal(getattr(data, field)[:10, 0], cut[field], err_msg=field)
        np.testing.assert_array_equal(getattr(data, field)[10:20, 0], want, err_msg=field)


class RecordingPPO(PPO):
    """PPO that keeps a copy of every rollout it updates on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollouts = []

    def run_update(self, data):
        self.rollouts.append(jax.tree.map(np.array, data))  # the loop reuses its storage
        super().run_update(data)


def assert_rollout_is_contiguous(rollout, *, same_env: bool = True) -> None:
    """Within each env's ``[T]`` trajectory of a Counting rollout: every transition stays in its
    episode, and the next row continues it, or, after an ending, starts a new episode (the next
    one of the same env when ``same_env``)."""
    obs, nxt = rollout.observation, rollout.next_observation
    np.testing.assert_array_equal(nxt[..., 0], obs[..., 0])
    np.testing.assert_array_equal(nxt[..., 1], obs[..., 1] + 1)
    ended = (rollout.done | rollout.truncated)[:-1]
    continued = obs[1:]
    np.testing.assert_array_equal(continued[~ended], nxt[:-1][~ended])
    np.testing.assert_array_equal(continued[ended][:, 1], 0)
    if same_env:
        np.testing.assert_array_equal(continued[ended][:, 0], nxt[:-1][ended][:, 0] + 1)


PPO_COUNTING_LENGTHS = (3, 5)


def assert_rollouts_are_the_counting_run(rollouts, n_vector_steps: int) -> None:
    whole = jax.tree.map(lambda *xs: np.concatenate(xs), *rollouts)
    assert_rollout_is_contiguous(whole)
    for env_index, length in enumerate(PPO_COUNTING_LENGTHS):
        for field, want in expected_counting_column(length, n_vector_steps).items():
            got = getattr(whole, field)[:, env_index]
            np.testing.assert_array_equal(got, want, err_msg=f"env {env_index}, field {field}")


def test_on_policy_rollouts_are_contiguous_trajectories():
    env = counting_env(PPO_COUNTING_LENGTHS)
    agent = RecordingPPO("rollouts", ppo_config(env, n_env_steps=96))
    summary = agent.train(env, 96)
    assert summary["n_updates"] == len(agent.rollouts) == 3
    for rollout in agent.rollouts:
        assert rollout.observation.shape == (16, 2, 2)
        assert rollout.log_prob.shape == rollout.reward.shape == (16, 2)
        assert_rollout_is_contiguous(rollout)
    # Consecutive rollouts continue each other, and together they are the whole run.
    assert_rollouts_are_the_counting_run(agent.rollouts, 48)


def test_on_policy_rollouts_continue_across_train_calls_on_the_same_env():
    env = counting_env(PPO_COUNTING_LENGTHS)
    agent = RecordingPPO("rollouts", ppo_config(env, n_env_steps=96))
    agent.train(env, 48)  # one and a half rollouts
    agent.train(env, 48)
    assert agent.n_updates == len(agent.rollouts) == 3
    assert_rollouts_are_the_counting_run(agent.rollouts, 48)


def test_on_policy_expected_updates_count_the_partial_rollout():
    env = counting_env(PPO_COUNTING_LENGTHS)
    agent = RecordingPPO("rollouts", ppo_config(env, n_env_steps=96))
    agent.train(env, 48)  # one and a half rollouts
    expected = agent.expected_updates(48)
    assert agent.train(env, 48)["n_updates"] == expected == 2


def test_on_policy_rollouts_do_not_span_an_env_change():
    agent = RecordingPPO("rollouts", ppo_config(counting_env(PPO_COUNTING_LENGTHS)))
    agent.train(counting_env(PPO_COUNTING_LENGTHS), 48)
    agent.train(counting_env(PPO_COUNTING_LENGTHS), 48)
    assert agent.rollouts
    for rollout in agent.rollouts:
        assert_rollout_is_contiguous(rollout, same_env=False)


# ---- 3: greedy and exploratory actions ----------------------------------------------------------


def test_dqn_select_action_is_greedy_and_deterministic(counting_dqn):
    agent, _ = counting_dqn
    obs = np.array([[0, 0], [3, 2], [7, 1]], np.float32)
    q = np.asarray(agent.state.apply_fn(agent.state.params, obs))
    actions, log_probs = agent.select_action(obs)
    np.testing.assert_array_equal(np.asarray(actions), q.argmax(-1))
    assert np.asarray(log_probs).shape == (3,)
    np.testing.assert_allclose(np.asarray(log_probs), 0.0, atol=1e-6)
    for _ in range(5):
        again, _ = agent.select_action(obs)
        np.testing.assert_array_equal(np.asarray(again), np.asarray(actions))


def test_dqn_explore_with_full_exploration_is_uniform():
    env = counting_env()
    agent = DQN("explore", dqn_config(env, exploration_start=1.0, exploration_end=1.0))
    obs = np.array([[0, 0], [3, 2], [7, 1]], np.float32)
    greedy = np.asarray(agent.select_action(obs)[0])
    draws, logps = zip(*(agent.explore(obs) for _ in range(100)), strict=True)
    draws, logps = np.stack([np.asarray(a) for a in draws]), np.stack(logps)
    assert draws.shape == logps.shape == (100, 3)
    # Both actions, in every row, with frequency near 1/2 (6 sigma band).
    assert set(np.unique(draws)) == {0, 1}
    assert (draws != greedy).any(axis=0).all()
    assert abs(draws.mean() - 0.5) < 6 * math.sqrt(0.25 / draws.size)
    np.testing.assert_allclose(logps, np.log(0.5), rtol=1e-5)


def test_ppo_discrete_select_action_is_argmax_of_logits():
    env = make_vec(corridor, 2)
    agent = PPO("ppo-discrete", ppo_config(env))
    obs = np.stack([np.eye(5, dtype=np.float32)[0], np.eye(5, dtype=np.float32)[3]])
    logits, _ = agent.state.apply_fn(agent.state.params, obs)
    logits = np.asarray(logits)
    actions, log_probs = agent.select_action(obs)
    np.testing.assert_array_equal(np.asarray(actions), logits.argmax(-1))
    log_softmax = np.asarray(jax.nn.log_softmax(logits))
    np.testing.assert_allclose(
        np.asarray(log_probs), log_softmax[np.arange(2), logits.argmax(-1)], rtol=1e-5
    )
    assert np.asarray(log_probs).shape == (2,)
    np.testing.assert_array_equal(np.asarray(agent.select_action(obs)[0]), np.asarray(actions))
    # Exploration samples the (near uniform at init) policy: both actions appear.
    samples = [agent.explore(obs) for _ in range(50)]
    sampled = np.stack([np.asarray(a) for a, _ in samples])
    assert set(np.unique(sampled)) == {0, 1}
    for a, lp in samples[:5]:
        assert np.asarray(lp).shape == (2,)
        np.testing.assert_allclose(
            np.asarray(lp), log_softmax[np.arange(2), np.asarray(a)], rtol=1e-5
        )


def gaussian_log_prob(x, mean, log_std):
    z = (x - mean) / np.exp(log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def test_ppo_continuous_select_action_is_the_mean():
    env = make_vec(Target, 2)
    agent = PPO("ppo-continuous", ppo_config(env))
    obs = np.array([[0.5], [-0.25]], np.float32)
    (mean, log_std), _ = agent.state.apply_fn(agent.state.params, obs)
    mean, log_std = np.asarray(mean), np.asarray(log_std)
    actions, log_probs = agent.select_action(obs)
    assert np.asarray(actions).shape == (2, 1)
    assert np.asarray(log_probs).shape == (2,)
    np.testing.assert_allclose(np.asarray(actions), mean, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(log_probs), gaussian_log_prob(mean, mean, log_std), rtol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(agent.select_action(obs)[0]), np.asarray(actions))
    a1, lp1 = agent.explore(obs)
    a2, _ = agent.explore(obs)
    a1, a2 = np.asarray(a1), np.asarray(a2)
    assert a1.shape == (2, 1) and np.asarray(lp1).shape == (2,)
    assert not np.allclose(a1, a2) and not np.allclose(a1, mean)
    np.testing.assert_allclose(
        np.asarray(lp1), gaussian_log_prob(a1, mean, log_std), rtol=1e-4, atol=1e-5
    )


# ---- 4: seeding ----------------------------------------------------------------------------


def train_short(algo: str, seed: int):
    if algo == "dqn":
        env = make_vec(corridor, 2)
        agent = DQN("seeded", dqn_config(env, seed=seed, n_env_steps=40))
        agent.train(env, 40)
    else:
        env = make_vec(corridor, 2)
        agent = PPO("seeded", ppo_config(env, seed=seed))
        agent.train(env, 96)
    return agent


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_same_seed_gives_bit_identical_training(algo):
    a, b, c = train_short(algo, 3), train_short(algo, 3), train_short(algo, 4)
    assert a.n_updates > 0
    assert_trees_equal(a.state.params, b.state.params)
    if algo == "dqn":
        assert_trees_equal(a.state.target_params, b.state.target_params)
        a.flush(), b.flush()
        assert_trees_equal(a.buffer_state, b.buffer_state)
    assert a.tracker.finished == b.tracker.finished
    assert trees_all_differ(a.state.params, c.state.params)


def test_evaluating_during_training_does_not_change_training():
    from kitae.envs.make import make_vec_env
    from kitae.evaluation import evaluate

    def run(with_evaluations: bool) -> DQN:
        env = make_vec_env("CartPole-v1", 2)
        agent = DQN("eval", dqn_config(env, n_env_steps=200))
        callback = (lambda a: evaluate(a, "CartPole-v1", 2)) if with_evaluations else None
        agent.train(env, 200, callback=callback, callback_every=50)
        return agent

    plain, evaluated = run(False), run(True)
    assert plain.n_updates > 0
    assert_trees_equal(plain.state.params, evaluated.state.params)


# ---- 5: jit once -----------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_second_train_call_compiles_nothing(algo, trace_counter):
    env = make_vec(corridor, 2)
    if algo == "dqn":
        agent, n = DQN("jit", dqn_config(env, n_env_steps=40)), 40
    else:
        agent, n = PPO("jit", ppo_config(env)), 96
    agent.train(env, n)
    agent.select_action(np.asarray(env.reset()[0]))
    assert trace_counter[TRACE_EVENT] > 0  # the listener does see compilations
    sizes = (agent.explore_fn._cache_size(), agent.update_fn._cache_size())
    updates = agent.n_updates
    trace_counter.clear()
    agent.train(env, n)
    agent.select_action(np.asarray(env.reset()[0]))
    assert agent.n_updates > updates
    assert trace_counter[TRACE_EVENT] == 0, dict(trace_counter)
    assert (agent.explore_fn._cache_size(), agent.update_fn._cache_size()) == sizes


# ---- 6: configuration checks -------------------------------------------------------------------


def test_batch_larger_than_replay_buffer_is_rejected():
    env = counting_env()
    with pytest.raises(ValueError, match="batch_size"):
        DQN("bad", dqn_config(env, update={"max_buffer_size": 16, "batch_size": 32}))


def test_zero_skip_steps_is_rejected():
    env = counting_env()
    with pytest.raises(ValueError, match="skip_steps"):
        DQN("bad", dqn_config(env, skip_steps=0))


def test_dqn_rejects_continuous_actions():
    env = make_vec(Target, 2)
    with pytest.raises(ValueError, match="action_space"):
        DQN("bad", dqn_config(env))


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ({"max_buffer_size": 30, "batch_size": 8}, "batch_size"),
        ({"max_buffer_size": 32, "batch_size": 64}, "batch_size"),
        ({"max_buffer_size": 33, "batch_size": 3}, "n_envs"),
    ],
    ids=["batch-does-not-divide-rollout", "batch-larger-than-rollout", "rollout-not-per-env"],
)
def test_ppo_rejects_rollouts_that_do_not_split(update, match):
    env = make_vec(corridor, 2)
    with pytest.raises(ValueError, match=match):
        PPO("bad", ppo_config(env, update=update))


def test_train_rejects_an_env_with_other_observations():
    agent = DQN("mismatch", dqn_config(make_vec(corridor, 2)))
    other = make_vec(lambda: corridor(length=6), 2)
    with pytest.raises(ValueError, match="observation_space"):
        agent.train(other, 40)
    assert agent.env_steps == 0


def test_train_rejects_an_env_with_other_actions():
    env = counting_env()
    config = dqn_config(env)
    config.env_cfg.action_space = gym.spaces.Discrete(3)
    agent = DQN("mismatch", config)
    with pytest.raises(ValueError, match="action_space"):
        agent.train(env, 30)


def test_train_rejects_an_env_with_another_number_of_envs():
    agent = DQN("mismatch", dqn_config(make_vec(corridor, 2)))
    with pytest.raises(ValueError, match="n_envs"):
        agent.train(make_vec(corridor, 3), 30)
    assert agent.env_steps == 0


def test_train_rejects_a_run_without_updates():
    env = counting_env()
    agent = DQN("too-short", dqn_config(env, start_step=100))
    with pytest.raises(ValueError, match="zero updates"):
        agent.train(env, 60)
    assert agent.env_steps == 0
    ppo = PPO("too-short", ppo_config(make_vec(corridor, 2)))
    with pytest.raises(ValueError, match="zero updates"):
        ppo.train(make_vec(corridor, 2), 30)
    assert ppo.env_steps == 0


@pytest.mark.parametrize("n_env_steps", [0, -5, 2.5, True])
def test_train_rejects_invalid_step_counts(n_env_steps):
    env = counting_env()
    agent = DQN("bad-steps", dqn_config(env))
    with pytest.raises(ValueError, match="n_env_steps"):
        agent.train(env, n_env_steps)


def test_train_rejects_next_step_autoreset():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    try:
        agent = DQN("next-step", dqn_config(env))
        with pytest.raises(ValueError, match="SAME_STEP"):
            agent.train(env, 100)
        assert agent.env_steps == 0
    finally:
        env.close()


# ---- 7: update schedule and target networks -----------------------------------------------------


@pytest.mark.parametrize(
    ("n_envs", "skip_steps", "start_step", "batch_size", "n_epochs", "n_env_steps", "expected"),
    [
        # updates at 12, 18, ..., 60 transitions: the first one as soon as start_step is reached
        (3, 6, 12, 8, 1, 60, 9),
        # first update once 8 transitions are stored (at 9); the tick passed at 6 is not owed
        (3, 5, -1, 8, 2, 45, 8),
        # skip_steps < n_envs: two updates, then one, alternately, from 9 transitions on
        (3, 2, 6, 8, 1, 30, 12),
    ],
    ids=["skip-multiple-of-envs", "skip-not-multiple", "several-per-vector-step"],
)
def test_off_policy_update_schedule(
    n_envs, skip_steps, start_step, batch_size, n_epochs, n_env_steps, expected
):
    env = counting_env(COUNTING_LENGTHS[:n_envs])
    config = dqn_config(
        env,
        n_env_steps=n_env_steps,
        skip_steps=skip_steps,
        start_step=start_step,
        update={"batch_size": batch_size, "n_epochs": n_epochs},
    )
    agent = DQN("schedule", config)
    summary = agent.train(env, n_env_steps)
    count = off_policy_update_count(n_env_steps, n_envs, skip_steps, start_step, batch_size)
    assert count == expected
    assert summary["n_updates"] == agent.n_updates == expected
    assert int(agent.state.step) == expected * n_epochs == off_policy_gradient_steps(config)
    # A second call continues the same schedule.
    summary = agent.train(env, n_env_steps)
    total = off_policy_update_count(2 * n_env_steps, n_envs, skip_steps, start_step, batch_size)
    assert summary["n_updates"] == total - expected
    assert agent.n_updates == total
    assert int(agent.state.step) == total * n_epochs


def train_corridor_dqn(n_env_steps: int, **params) -> DQN:
    env = make_vec(corridor, 2)
    # skip_steps=2, start_step=-1, batch 8: one update per vector step from the 4th on.
    agent = DQN("target", dqn_config(env, n_env_steps=100, **params))
    agent.train(env, n_env_steps)
    return agent


def test_hard_target_update_copies_params_every_period():
    # target_update_period=3; 18 transitions -> 6 gradient steps, 20 -> 7.
    at_6, at_7 = train_corridor_dqn(18), train_corridor_dqn(20)
    assert int(at_6.state.step) == 6 and int(at_7.state.step) == 7
    assert_trees_equal(at_6.state.target_params, at_6.state.params)
    assert trees_all_differ(at_7.state.target_params, at_7.state.params)
    # Runs are deterministic, so the 7-step run's target is the 6-step run's params.
    assert_trees_equal(at_7.state.target_params, at_6.state.params)


def test_polyak_target_update():
    env = make_vec(corridor, 2)
    agent = DQN("polyak", dqn_config(env, n_env_steps=100, tau=0.25, target_update_period=1))
    initial = agent.state.params
    assert_trees_equal(agent.state.target_params, initial)
    agent.train(env, 8)  # exactly one gradient step
    assert int(agent.state.step) == 1
    expected = jax.tree.map(lambda p, p0: 0.25 * p + 0.75 * p0, agent.state.params, initial)
    for got, want in zip(leaves(agent.state.target_params), leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    agent.train(env, 40)
    assert int(agent.state.step) > 10
    assert trees_all_differ(agent.state.target_params, initial)
    assert trees_all_differ(agent.state.target_params, agent.state.params)


# ---- 8: PPO learning-rate annealing -------------------------------------------------------------


def max_abs_change(before, after) -> float:
    pairs = zip(leaves(before), leaves(after), strict=True)
    return max(float(np.abs(a - b).max()) for a, b in pairs)


@pytest.mark.parametrize("annealing", [True, False])
def test_ppo_learning_rate_reaches_zero_at_the_end_of_the_run(annealing):
    env = make_vec(corridor, 2)
    config = ppo_config(env, n_env_steps=96, update={"learning_rate_annealing": annealing})
    agent = PPO("annealing", config)
    initial = agent.state.params
    summary = agent.train(env, 96)
    # 3 rollouts of 32 transitions, each 2 epochs of 4 minibatches.
    assert summary["n_updates"] == 3
    assert int(agent.state.step) == ppo_module.total_gradient_steps(config) == 24
    assert max_abs_change(initial, agent.state.params) > 1e-3
    # Training past the run: with annealing the learning rate is now 0 and the params stay put
    # (up to one rounding of the schedule under jit); without, they keep moving.
    before = agent.state.params
    if annealing:
        with pytest.warns(UserWarning, match="annealed"):
            agent.train(env, 32)
    else:
        agent.train(env, 32)
    assert int(agent.state.step) == 32
    change = max_abs_change(before, agent.state.params)
    if annealing:
        assert change < 1e-8
    else:
        assert change > 1e-4


# ---- 9: learning ---------------------------------------------------------------------------------


def greedy_corridor_actions(agent, length: int = 5) -> np.ndarray:
    return np.asarray(agent.select_action(corridor_observations(length))[0])


def greedy_corridor_return(agent, length: int = 5) -> float:
    """Return of one greedy episode from cell 0 (at most 20 steps)."""
    env = corridor(length, random_start=False)
    obs, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(20):
        action = int(np.asarray(agent.select_action(obs[None])[0])[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return total


def test_dqn_solves_the_corridor():
    env = make_vec(corridor, 2)
    config = dqn_config(env, n_env_steps=1_000, start_step=100, exploration_end=0.05)
    agent = DQN("dqn-corridor", config)
    agent.train(env)
    np.testing.assert_array_equal(greedy_corridor_actions(agent), [1, 1, 1, 1])
    assert greedy_corridor_return(agent) == pytest.approx(1.0 - 3 * 0.01)


def test_ppo_solves_the_corridor():
    env = make_vec(corridor, 2)
    agent = PPO("ppo-corridor", ppo_config(env, n_env_steps=1_024))
    agent.train(env)
    np.testing.assert_array_equal(greedy_corridor_actions(agent), [1, 1, 1, 1])
    assert greedy_corridor_return(agent) == pytest.approx(1.0 - 3 * 0.01)


def test_ppo_learns_a_continuous_target():
    env = make_vec(Target, 2)
    agent = PPO("ppo-target", ppo_config(env, n_env_steps=2_048))
    targets = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]

    def mse():
        return float(np.mean((np.asarray(agent.select_action(targets)[0]) - targets) ** 2))

    initial = mse()
    agent.train(env)
    final = mse()
    assert initial > 0.2
    assert final < 0.05, (initial, final)


# ---- 10: files ----------------------------------------------------------------------------------


def test_no_files_without_run_dir(tmp_cwd):
    env = counting_env()
    agent = DQN("quiet", dqn_config(env, n_env_steps=30))
    agent.train(env, 30)
    assert os.listdir(tmp_cwd) == []


def test_run_dir_gets_config_and_episodes(tmp_cwd, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    env = counting_env()
    agent = DQN("logged", dqn_config(env, n_env_steps=30, seed=7), run_dir=run_dir)
    agent.train(env, 30)
    assert os.listdir(tmp_cwd) == []
    folder = run_dir / "logged"
    config = json.loads((folder / "config.json").read_text())
    assert config["seed"] == 7
    assert config["algo_params"]["_type"] == "DQNParams"
    assert config["update_cfg"]["batch_size"] == 8
    assert config["train_cfg"]["n_env_steps"] == 30
    rows = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    assert [(row["return"], row["length"]) for row in rows] == expected_finished_episodes(
        COUNTING_LENGTHS, 10
    )
    assert rows == agent.logger.history["episodes"]
