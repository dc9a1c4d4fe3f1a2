"""Tests for MultiDiscrete actions: PPO's product of independent categoricals (log-probabilities
and entropies summed over sub-actions, greedy = argmax of each), trained on both paths, and the
clear error of every other agent."""

from __future__ import annotations

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import (
    TWO_SWITCHES_NVEC,
    TwoSwitches,
    make_vec,
    two_switches_cases,
    two_switches_observation,
    two_switches_reward,
)
from flax import struct
from gymnax.environments import environment
from gymnax.environments import spaces as gymnax_spaces
from helpers import small_config

import kitae.modules.policy as policy
from kitae.algos.c51 import C51
from kitae.algos.dqn import DQN
from kitae.algos.iqn import IQN
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.qrdqn import QRDQN
from kitae.algos.r2d2 import R2D2
from kitae.algos.sac import SAC
from kitae.algos.td3 import TD3
from kitae.compiled import config_for_jax_env
from kitae.envs.jax_env import make_jax_env
from kitae.masking import MASKED_VALUE
from kitae.modules.policy import action_distribution, actor_critic_factory

PPO_PARAMS = {"hidden_sizes": (32,), "entropy_coef": 0.0}
PPO_UPDATE = {"learning_rate": 3e-2, "max_buffer_size": 64, "batch_size": 32, "n_epochs": 4}
BAR = 0.95
"""Mean reward over every context that only a policy setting both sub-actions right reaches
(a uniformly random one earns 5/12)."""


def test_log_prob_entropy_and_mode_are_summed_over_sub_actions_by_hand():
    # Sub-action 0: probabilities (1/4, 3/4); sub-action 1: (1/4, 1/4, 1/2).
    flat = jnp.array([[0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)]])
    logits = policy.multi_discrete_logits(flat, (2, 3))
    assert logits.shape == (1, 2, 3)
    assert float(logits[0, 0, 2]) == MASKED_VALUE
    dist = action_distribution(logits, True)
    log_prob = dist.log_prob(jnp.array([[1, 2]]))
    np.testing.assert_allclose(log_prob, [math.log(3 / 4) + math.log(1 / 2)], rtol=1e-6)
    np.testing.assert_allclose(
        dist.log_prob(jnp.array([[0, 0]])), [math.log(1 / 4) + math.log(1 / 4)], rtol=1e-6
    )
    h0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    h1 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))
    np.testing.assert_allclose(dist.entropy(), [h0 + h1], rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), [[1, 2]])
    samples = dist.sample(seed=jax.random.PRNGKey(0), sample_shape=4000)
    assert samples.shape == (4000, 1, 2) and jnp.issubdtype(samples.dtype, jnp.integer)
    freq0 = np.bincount(np.asarray(samples[:, 0, 0]), minlength=3) / 4000
    freq1 = np.bincount(np.asarray(samples[:, 0, 1]), minlength=3) / 4000
    np.testing.assert_allclose(freq0, [0.25, 0.75, 0.0], atol=0.03)
    np.testing.assert_allclose(freq1, [0.25, 0.25, 0.5], atol=0.03)


def test_actor_critic_has_one_head_per_sub_action():
    network = actor_critic_factory(
        gymnasium.spaces.Box(0.0, 1.0, (5,), np.float32),
        gymnasium.spaces.MultiDiscrete(TWO_SWITCHES_NVEC),
        hidden_sizes=(8,),
    )
    obs = jnp.zeros((3, 5))
    params = network.init(jax.random.PRNGKey(0), obs)
    logits, value = network.apply(params, obs)
    assert logits.shape == (3, 2, 3) and value.shape == (3,)
    np.testing.assert_array_equal(logits[:, 0, 2], MASKED_VALUE)


def ppo_agent(n_env_steps: int = 768) -> tuple[PPO, gymnasium.vector.VectorEnv]:
    env = make_vec(TwoSwitches, 4)
    cfg = small_config(
        PPOParams, env, params=PPO_PARAMS, update=PPO_UPDATE, n_env_steps=n_env_steps
    )
    return PPO("md", cfg), env


def mean_reward(agent, greedy: bool) -> float:
    obs, cases = two_switches_cases()
    actions, _ = agent.select_action(obs) if greedy else agent.explore(obs)
    actions = np.asarray(actions)
    return float(np.mean([two_switches_reward(a, *c) for a, c in zip(actions, cases, strict=True)]))


def test_ppo_acts_with_integer_action_vectors_and_greedy_is_the_argmax_of_each():
    agent, _ = ppo_agent()
    obs, _ = two_switches_cases()
    actions, log_probs = agent.explore(obs)
    assert actions.shape == (6, 2) and jnp.issubdtype(actions.dtype, jnp.integer)
    assert log_probs.shape == (6,)
    assert np.all(np.asarray(actions) < np.array(TWO_SWITCHES_NVEC))
    logits, _ = agent.state.apply_fn(agent.state.params, obs)
    greedy, greedy_log_probs = agent.select_action(obs)
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(logits), axis=-1))
    # log pi(a) = log_softmax(logits_0)[a_0] + log_softmax(logits_1)[a_1]
    log_softmax = np.asarray(jax.nn.log_softmax(logits, axis=-1), np.float64)
    rows = np.arange(6)
    expected = (
        log_softmax[rows, 0, np.asarray(actions)[:, 0]]
        + log_softmax[rows, 1, np.asarray(actions)[:, 1]]
    )
    np.testing.assert_allclose(log_probs, expected, atol=1e-5)


@pytest.mark.slow
def test_ppo_learns_both_sub_actions_on_the_gymnasium_loop():
    agent, env = ppo_agent()
    untrained = np.mean([mean_reward(agent, greedy=False) for _ in range(10)])
    assert untrained < 0.6
    agent.train(env, 768)
    assert mean_reward(agent, greedy=True) >= BAR


@struct.dataclass
class SwitchState(environment.EnvState):
    c0: jax.Array
    c1: jax.Array


@struct.dataclass
class SwitchParams(environment.EnvParams):
    max_steps_in_episode: int = 1


@struct.dataclass
class MultiDiscreteSpace:
    """A gymnax-style space with ``nvec`` (converted to ``gymnasium.spaces.MultiDiscrete``)."""

    nvec: tuple[int, ...]


class JaxTwoSwitches(environment.Environment):
    """:class:`envs.TwoSwitches` in JAX."""

    @property
    def default_params(self) -> SwitchParams:
        return SwitchParams()

    def get_obs(self, state, params=None, key=None):
        return jnp.concatenate([jax.nn.one_hot(state.c0, 2), jax.nn.one_hot(state.c1, 3)])

    def reset_env(self, key, params):
        k0, k1 = jax.random.split(key)
        state = SwitchState(
            time=jnp.int32(0),
            c0=jax.random.randint(k0, (), 0, 2),
            c1=jax.random.randint(k1, (), 0, 3),
        )
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = 0.5 * (action[0] == state.c0) + 0.5 * (action[1] == (state.c1 + 1) % 3)
        return self.get_obs(state), state, reward.astype(jnp.float32), jnp.bool_(True), {}

    def observation_space(self, params):
        return gymnax_spaces.Box(0.0, 1.0, (5,), jnp.float32)

    def action_space(self, params=None):
        return MultiDiscreteSpace(TWO_SWITCHES_NVEC)


@pytest.mark.slow
def test_ppo_learns_both_sub_actions_on_the_compiled_path():
    env = make_jax_env(JaxTwoSwitches())
    assert env.action_space == gymnasium.spaces.MultiDiscrete(TWO_SWITCHES_NVEC)
    agent, _ = ppo_agent()
    agent.config = config_for_jax_env(agent.config, env)
    untrained = np.mean([mean_reward(agent, greedy=False) for _ in range(10)])
    assert untrained < 0.6
    agent.train(env, 768)
    assert mean_reward(agent, greedy=True) >= BAR


@pytest.mark.parametrize(
    "agent_type", [DQN, C51, QRDQN, IQN, R2D2, SAC, TD3], ids=lambda t: t.__name__
)
def test_other_agents_reject_multi_discrete_actions_up_front(agent_type):
    env = make_vec(TwoSwitches, 1)
    cfg = agent_type.default_config(env, tuned=False)
    with pytest.raises(ValueError, match=r"action_space=MultiDiscrete\(\[2 3\]\).*\['PPO'\]"):
        agent_type("md", cfg)


def test_ppo_rejects_multi_discrete_actions_not_starting_at_zero():
    env = make_vec(
        lambda: gymnasium.wrappers.TransformAction(
            TwoSwitches(),
            lambda a: a - 1,
            gymnasium.spaces.MultiDiscrete(TWO_SWITCHES_NVEC, start=[1, 1]),
        ),
        1,
    )
    cfg = small_config(PPOParams, env, params=PPO_PARAMS, update=PPO_UPDATE)
    with pytest.raises(ValueError, match="sub-actions start at 0"):
        PPO("md", cfg)


def test_two_switches_rewards_by_hand():
    np.testing.assert_array_equal(two_switches_observation(1, 2), [0, 1, 0, 0, 1])
    assert two_switches_reward(np.array([1, 0]), 1, 2) == 1.0
    assert two_switches_reward(np.array([0, 0]), 1, 2) == 0.5
    assert two_switches_reward(np.array([0, 2]), 1, 2) == 0.0
