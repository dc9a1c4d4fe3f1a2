"""The model interface: BaseModel defaults, the Q models (masked updates, jit once, learning),
AgentModel around kitae agents and FlaxModel."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import corridor
from helpers import TRACE_EVENT, small_config, trees_equal

from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.iqn import IQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.r2d2 import R2D2, R2D2Params
from kitae.models import (
    AgentModel,
    BaseModel,
    DDQNModel,
    FlaxModel,
    IQNModel,
    MemoryBatch,
    QModelParams,
    make_masked_update,
    masked_weights,
)
from kitae.models.agent_model import to_device_batch
from kitae.modules.qvalue import QValue

SMALL_DQN = DQNParams(hidden_sizes=(32,), tau=0.05, loss="huber", gamma=0.9)
SMALL_IQN = IQNParams(
    hidden_sizes=(32,),
    tau=0.05,
    target_update_period=1,
    gamma=0.9,
    n_tau_samples=8,
    n_tau_prime_samples=8,
    n_quantile_samples=8,
    n_cosines=16,
    head_hidden_sizes=(),
)


class FirstAction(BaseModel):
    def take_action(self, state) -> int:
        del state
        return 0


def play_episode(model: BaseModel, env, seed: int) -> float:
    """One episode through the model interface; returns the undiscounted return."""
    model.start_epoch_action()
    obs, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        action = model.take_action(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        model.memory.add(obs, action, reward, terminated)
        total += reward
        obs = next_obs
        if terminated or truncated:
            model.end_epoch_action()
            return total


# ---- BaseModel --------------------------------------------------------------------------
def test_base_model_defaults():
    model = FirstAction((3,), 2, memory_size=8, n_frames=2)
    assert float(model.train_step()) == 0.0
    assert model.take_action(np.zeros(3)) == 0
    model.set_epsilon(0.25)
    assert model.epsilon == 0.25
    with pytest.raises(ValueError, match="epsilon"):
        model.set_epsilon(1.5)
    assert model.stacked_size == 6 and model.memory.capacity == 8
    model.memory.add(np.ones(3), 0, 0.0, False)
    model.start_epoch_action()  # a new episode: the next stack is zero-padded
    np.testing.assert_array_equal(model.stacked_state(np.full(3, 2.0)), [0, 0, 0, 2, 2, 2])
    np.testing.assert_array_equal(model.stacked_state(np.arange(6)), np.arange(6))
    with pytest.raises(ValueError, match="values"):
        model.stacked_state(np.zeros(4))


def test_base_model_needs_take_action():
    with pytest.raises(TypeError):
        BaseModel((3,), 2)  # abstract


# ---- masking ------------------------------------------------------------------------------
def test_masked_weights_hand_computed():
    np.testing.assert_allclose(
        masked_weights(jnp.array([1.0, 0.0, 1.0, 1.0])), [4 / 3, 0, 4 / 3, 4 / 3]
    )
    np.testing.assert_array_equal(masked_weights(jnp.zeros(3)), [0.0, 0.0, 0.0])


def random_batch(key: int, batch_size: int, size: int, valid: np.ndarray) -> MemoryBatch:
    rng = np.random.default_rng(key)
    return MemoryBatch(
        rng.normal(size=(batch_size, size)).astype(np.float32),
        rng.integers(0, 2, batch_size),
        rng.normal(size=batch_size).astype(np.float32),
        rng.normal(size=(batch_size, size)).astype(np.float32),
        (rng.random(batch_size) < 0.3).astype(np.float32),
        valid.astype(np.float32),
    )


def dqn_agent(seed: int = 0) -> DQN:
    env = corridor(4)
    config = small_config(
        DQNParams,
        env,
        params={"hidden_sizes": (16,), "tau": 0.5, "double_q": True},
        update={"learning_rate": 1e-2, "batch_size": 8, "max_buffer_size": 64},
        seed=seed,
    )
    return DQN("masked", config)


def test_invalid_samples_do_not_change_the_update():
    """A masked step on a batch equals an unmasked step on its valid samples only."""
    agent = dqn_agent()
    valid = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    batch = random_batch(0, 8, 4, valid)
    update = jax.jit(make_masked_update(agent.process_experience_fn, agent.update_step_fn, (4,)))
    key = jax.random.PRNGKey(1)
    masked, _ = update(agent.state, key, to_device_batch(batch))
    keep = valid.astype(bool)
    subset = MemoryBatch(*(x[keep] for x in batch[:-1]), np.ones(keep.sum(), np.float32))
    expected, _ = update(agent.state, key, to_device_batch(subset))
    for a, b in zip(jax.tree.leaves(masked.params), jax.tree.leaves(expected.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # garbage in the invalid rows changes nothing
    noisy = batch._replace(states=np.where(keep[:, None], batch.states, 1e6).astype(np.float32))
    again, _ = update(agent.state, key, to_device_batch(noisy))
    assert trees_equal(again.params, masked.params)


# ---- Q models -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, field",
    [
        ({"memory_size": 2, "n_frames": 2}, "params.memory_size"),
        ({"batch_size": 0}, "params.batch_size"),
        ({"n_updates": 0}, "params.n_updates"),
        ({"learning_rate": 0.0}, "params.learning_rate"),
        ({"max_grad_norm": -1.0}, "params.max_grad_norm"),
        ({"epsilon": 2.0}, "params.epsilon"),
        ({"min_transitions": 0}, "params.min_transitions"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_q_model_params_are_validated(change, field):
    params = dataclasses.replace(QModelParams(), **change)
    with pytest.raises(ValueError, match=field):
        DDQNModel((3,), 2, params, SMALL_DQN)


@pytest.mark.parametrize(
    "algo_params, field",
    [
        (dataclasses.replace(SMALL_DQN, n_step=3), "algo_params.n_step"),
        (dataclasses.replace(SMALL_DQN, prioritized=True), "algo_params.prioritized"),
        (dataclasses.replace(SMALL_DQN, gamma=1.5), "algo_params.gamma"),
        (dataclasses.replace(SMALL_DQN, tau=0.0), "algo_params.tau"),
    ],
    ids=["n_step", "prioritized", "gamma", "tau"],
)
def test_q_model_algo_params_are_validated(algo_params, field):
    with pytest.raises(ValueError, match=field):
        DDQNModel((3,), 2, QModelParams(), algo_params)


def test_ddqn_model_is_double_dqn_on_the_stacked_input():
    model = DDQNModel((3,), 4, QModelParams(n_frames=2, memory_size=16), SMALL_DQN)
    assert isinstance(model.agent, DQN) and model.agent.config.algo_params.double_q
    assert model.agent.config.env_cfg.observation_space.shape == (6,)
    assert model.n_actions == 4


@pytest.mark.parametrize("cls, algo_params", [(DDQNModel, SMALL_DQN), (IQNModel, SMALL_IQN)])
def test_acting_and_training_compile_once(cls, algo_params, trace_counter):
    params = QModelParams(n_frames=2, memory_size=64, batch_size=8, n_updates=2, epsilon=0.0)
    model = cls((3,), 2, params, algo_params)
    rng = np.random.default_rng(0)
    assert float(model.train_step()) == 0.0  # nothing to sample yet: no update
    for step in range(12):
        obs = rng.normal(size=3)
        model.memory.add(obs, model.take_action(obs), 1.0, step % 5 == 4)
    before = jax.tree.map(np.asarray, model.agent.state.params)
    loss = model.train_step()
    assert np.isfinite(loss) and float(loss) > 0
    assert not trees_equal(before, model.agent.state.params)
    assert model.agent.n_updates == 2
    trace_counter.clear()
    for _ in range(3):
        obs = rng.normal(size=3)
        model.memory.add(obs, model.take_action(obs), 0.0, False)
        model.set_epsilon(0.3)  # a new epsilon is host-side: no retrace
        model.train_step()
    assert trace_counter[TRACE_EVENT] == 0


def test_target_network_follows_tau():
    hard = dataclasses.replace(SMALL_DQN, tau=1.0, target_update_period=2)
    model = DDQNModel((3,), 2, QModelParams(batch_size=4, memory_size=32), hard)
    for t in range(8):
        model.memory.add(np.full(3, t), t % 2, 1.0, False)
    model.train_step()  # step 1: target unchanged
    state = model.agent.state
    assert not trees_equal(state.params, state.target_params)
    model.train_step()  # step 2: hard copy
    state = model.agent.state
    assert trees_equal(state.params, state.target_params)


def test_epsilon_one_explores_uniformly():
    model = DDQNModel((3,), 4, QModelParams(epsilon=1.0, seed=3), SMALL_DQN)
    actions = [model.take_action(np.zeros(3)) for _ in range(400)]
    assert set(actions) == {0, 1, 2, 3}


class Fork(gym.Env):
    """A corridor of ``length`` cells entered in the middle, with a goal at one end and a trap at
    the other: which is which is a cue drawn at every reset (or fixed by ``cue``).

    Observation ``float32[length + 2]``: one-hot position, then one-hot cue. Actions ``0`` left,
    ``1`` right. Reaching the left end pays ``+1`` with cue 0 and ``-1`` with cue 1 (the right end
    the opposite) and terminates; any other step pays ``-0.05``. The best return, ``0.95``, needs
    opposite first actions for the two cues: a policy that ignores the cue cannot get it.
    """

    def __init__(self, cue: int | None = None, length: int = 5):
        self.fixed_cue, self.length = cue, length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.cue, self.position = 0, length // 2

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length + 2, np.float32)
        obs[self.position] = obs[self.length + self.cue] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(2)) if self.fixed_cue is None else self.fixed_cue
        self.position = self.length // 2
        return self._obs(), {}

    def step(self, action):
        self.position += 1 if int(action) == 1 else -1
        if self.position in (0, self.length - 1):
            goal = (self.position == 0) == (self.cue == 0)
            return self._obs(), 1.0 if goal else -1.0, True, False, {}
        return self._obs(), -0.05, False, False, {}


def fork(cue: int | None = None) -> gym.Env:
    return gym.wrappers.TimeLimit(Fork(cue), 10)


FORK_BEST = [0.95, 0.95]  # two steps to the goal, for either cue


def greedy_fork_returns(model: BaseModel) -> list[float]:
    """The greedy returns with cue 0 and with cue 1."""
    model.set_epsilon(0.0)
    return [play_episode(model, fork(cue), 0) for cue in (0, 1)]


def train_on_fork(model: BaseModel, seed: int, epochs: int = 60) -> None:
    """Epsilon-greedy episodes with random cues (epsilon 1 down to 0.05 over 30 episodes), one
    ``train_step`` after each."""
    env = fork()
    for epoch in range(epochs):
        model.set_epsilon(max(0.05, 1.0 - epoch / 30))
        play_episode(model, env, seed * 1000 + epoch)
        model.train_step()


@pytest.mark.slow
@pytest.mark.parametrize("cls, algo_params", [(DDQNModel, SMALL_DQN), (IQNModel, SMALL_IQN)])
def test_q_models_learn_a_tiny_task(cls, algo_params):
    """60 epsilon-greedy episodes of :class:`Fork`, one train_step (16 gradient steps) after each:
    the greedy policy then goes straight to the goal the cue points at, which it did not do
    untrained."""
    params = QModelParams(
        memory_size=1000,
        n_frames=2,
        batch_size=32,
        n_updates=16,
        learning_rate=3e-3,
        epsilon=1.0,
        seed=1,
    )
    model = cls((7,), 2, params, algo_params)
    assert greedy_fork_returns(model) != pytest.approx(FORK_BEST)
    train_on_fork(model, seed=1)
    assert greedy_fork_returns(model) == pytest.approx(FORK_BEST)


# ---- AgentModel ---------------------------------------------------------------------------
@pytest.mark.slow
def test_agent_model_wraps_and_trains_a_dqn_agent():
    env = fork()
    config = small_config(
        DQNParams,
        env,
        params={"hidden_sizes": (32,), "tau": 0.05, "double_q": True, "gamma": 0.9},
        update={"learning_rate": 3e-3, "batch_size": 32, "max_buffer_size": 64},
        seed=2,
    )
    model = AgentModel(DQN("fork", config), (7,), memory_size=1000, n_updates=16, seed=2)
    assert greedy_fork_returns(model) != pytest.approx(FORK_BEST)
    train_on_fork(model, seed=2)
    assert greedy_fork_returns(model) == pytest.approx(FORK_BEST)


def test_agent_model_with_the_agents_own_exploration():
    agent = dqn_agent()
    model = AgentModel(agent, (4,), memory_size=16, agent_exploration=True)
    model.take_action(np.eye(4)[0])
    assert agent.env_steps == 1


def test_agent_model_acts_with_an_on_policy_agent_without_training():
    env = corridor(4)
    config = small_config(
        PPOParams,
        env,
        params={},
        update={"batch_size": 8, "max_buffer_size": 16},
    )
    model = AgentModel(PPO("ppo", config), (4,), memory_size=16)
    for t in range(6):
        obs = np.eye(4, dtype=np.float32)[t % 3]
        model.memory.add(obs, model.take_action(obs), 0.0, False)
    assert model.take_action(np.eye(4)[0]) in (0, 1)
    assert float(model.train_step()) == 0.0


def test_agent_model_refuses_a_recurrent_agent_before_any_training():
    env = corridor(4)
    params = {"hidden_sizes": (8,), "core_size": 4, "sequence_length": 4, "burn_in": 1}
    config = small_config(R2D2Params, env, params=params, update={"max_buffer_size": 64})
    with pytest.raises(ValueError, match=r"R2D2.*recurrent.*core state.*agent\.train\(env\)"):
        AgentModel(R2D2("r2d2", config), (4,), memory_size=16)


@pytest.mark.parametrize(
    "params, match", [({"n_step": 3}, "n_step=3"), ({"prioritized": True}, "prioritized")]
)
def test_agent_model_refuses_replay_its_memory_cannot_provide(params, match):
    """The memory samples one-step transitions uniformly: an n-step or prioritized agent would
    silently train on one-step targets or without importance weights."""
    env = corridor(4)
    config = small_config(
        DQNParams, env, params={"hidden_sizes": (8,), **params}, update={"max_buffer_size": 64}
    )
    with pytest.raises(ValueError, match=match):
        AgentModel(DQN("dqn", config), (4,), memory_size=16)


def test_agent_model_checks_the_observation_size():
    with pytest.raises(ValueError, match="observation_space"):
        AgentModel(dqn_agent(), (4,), n_frames=2)


# ---- FlaxModel ----------------------------------------------------------------------------
def test_flax_model_acts_greedily_and_compiles_once(trace_counter):
    module = QValue(3, (8,))
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    model = FlaxModel(module, variables, (2,), 3, memory_size=8, n_frames=2)
    states = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = np.argmax(module.apply(variables, states), -1)
    assert [model.take_action(s) for s in states] == expected.tolist()
    trace_counter.clear()
    model.take_action(states[0])
    assert trace_counter[TRACE_EVENT] == 0


def test_flax_model_trains_with_its_train_fn():
    module = nn.Dense(2)
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))

    def train_fn(variables, batch: MemoryBatch):
        assert batch.states.shape == (4, 1)
        return jax.tree.map(lambda x: x + 1.0, variables), 0.5

    model = FlaxModel(module, variables, (1,), 2, memory_size=8, train_fn=train_fn, batch_size=4)
    assert float(model.train_step()) == 0.0  # no data yet
    model.memory.add(np.ones(1), 0, 0.0, True)
    assert model.train_step() == 0.5
    np.testing.assert_array_equal(model.variables["params"]["bias"], [1.0, 1.0])
