"""DQN with the LSTM torso (``DQNParams(torso="lstm")``): R2D2's sequence machinery behind DQN's
factories, the core state reset at episode starts, config validation and a memory task that the
feed-forward torso cannot solve."""

from __future__ import annotations

import numpy as np
import pytest
from envs import make_vec
from test_r2d2 import LEARN_UPDATE, Recall

from kitae.algos import DQN, DQNParams
from kitae.algos.r2d2 import recurrent_q_config
from kitae.buffer import Experience
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, validate_config
from kitae.evaluation import evaluate

UPDATE = LEARN_UPDATE  # R2D2's small learning config
SMALL = {
    "torso": "lstm",
    "lstm_size": 8,
    "sequence_length": 6,
    "burn_in": 2,
    "hidden_sizes": (16,),
    "start_step": 200,
    "skip_steps": 4,
    "exploration_fraction": 0.3,
}


def make_config(env, n_env_steps: int = 1_000, **params) -> AlgoConfig:
    return AlgoConfig(
        seed=0,
        algo_params=DQNParams(**{**SMALL, **params}),
        update_cfg=UPDATE,
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig.from_env(env),
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("torso", "gru", "algo_params.torso='gru' is invalid"),
        ("lstm_size", 0, "algo_params.lstm_size"),
        ("sequence_length", 1, "algo_params.sequence_length"),
        ("sequence_length", 10_000, "longer than the replay buffer"),
        ("burn_in", 6, "algo_params.burn_in=6 must be smaller"),
        ("burn_in", -1, "algo_params.burn_in"),
    ],
    ids=lambda v: str(v),
)
def test_invalid_lstm_params_raise_naming_the_field(field, value, message):
    env = make_vec(lambda: Recall(), 2)
    with pytest.raises(ValueError, match=message):
        validate_config(make_config(env, **{field: value}))


def test_sequence_length_belongs_to_the_lstm_torso():
    env = make_vec(lambda: Recall(), 2)
    with pytest.raises(ValueError, match="sequence_length=8 is only read with torso='lstm'"):
        validate_config(make_config(env, torso="mlp", sequence_length=8))
    assert DQNParams().sequence_length is None
    assert DQNParams(torso="lstm").sequence_length == 20


def test_lstm_dqn_runs_r2d2_factories_on_the_equivalent_config():
    env = make_vec(lambda: Recall(), 2)
    config = make_config(env)
    equivalent = recurrent_q_config(config).algo_params
    assert (equivalent.cell, equivalent.core_size) == ("lstm", 8)
    assert (equivalent.sequence_length, equivalent.burn_in, equivalent.n_step) == (6, 2, 1)
    assert (equivalent.target, equivalent.value_rescaling) == ("n_step", False)


def test_feed_forward_dqn_carries_no_acting_state():
    env = make_vec(lambda: Recall(), 2)
    agent = DQN("ff", make_config(env, torso="mlp", sequence_length=None))
    assert not agent.recurrent
    assert not hasattr(agent, "init_actor_state")
    assert getattr(agent, "init_actor_state", None) is None


def test_core_state_is_stored_and_reset_where_an_episode_ended():
    env = make_vec(lambda: Recall(), 2)
    agent = DQN("lstm", make_config(env))
    assert agent.recurrent
    np.testing.assert_array_equal(agent.init_actor_state(3), np.zeros((3, 16), np.float32))
    observation = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    agent.explore(observation)
    after = agent.core_state.copy()
    assert after.shape == (2, 16) and np.all(np.abs(after).sum(axis=1) > 0)
    step = Experience(
        observation=observation,
        action=np.zeros(2, np.int64),
        reward=np.zeros(2, np.float32),
        done=np.array([True, False]),
        next_observation=observation,
        truncated=np.array([False, False]),
    )
    stored = agent.with_actor_state(step)
    # The stored state is the one each env acted from: zeros at the first step.
    np.testing.assert_array_equal(stored.actor_state, np.zeros((2, 16), np.float32))
    # Env 0's episode ended: its core restarts from zeros; env 1 keeps its state.
    np.testing.assert_array_equal(agent.core_state[0], np.zeros(16, np.float32))
    np.testing.assert_array_equal(agent.core_state[1], after[1])
    # Acting again from the reset state reproduces the episode's first step for env 0.
    agent.explore(observation)
    np.testing.assert_allclose(agent.core_state[0], after[0], rtol=1e-6)


@pytest.mark.slow
def test_the_lstm_torso_solves_a_memory_task_the_mlp_torso_cannot():
    env = make_vec(lambda: Recall(), 4)
    lstm = DQN("lstm", make_config(env, 4_000, lstm_size=32, hidden_sizes=(32,), sequence_length=8))
    assert evaluate(lstm, "KitaeRecall-v0", 50).mean() < 0.5  # untrained: no better than chance
    lstm.train(env)
    assert evaluate(lstm, "KitaeRecall-v0", 50).mean() >= 0.9
    mlp = DQN("mlp", make_config(env, 4_000, torso="mlp", sequence_length=None, n_step=3))
    mlp.train(make_vec(lambda: Recall(), 4))
    assert evaluate(mlp, "KitaeRecall-v0", 50).mean() < 0.5
