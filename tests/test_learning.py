"""Learning tests on tiny envs where the tested detail decides the optimal policy.

Each env of ``tests/envs.py`` used here (:class:`~envs.NearFar`, :class:`~envs.TreasureChain`,
:class:`~envs.TwoGoals`) computes in its docstring the optimal values and those that a broken
target (bootstrapping through terminations, not bootstrapping at truncations, another discount)
converges to, with the opposite greedy choice. A last Q-learning test freezes the target network
for the whole run: values must then propagate by one step only, which bootstrapping from the
online network would not do. Every test first checks that the untrained agent (same seed) fails
the bar, then trains it and checks that it passes: the right greedy choice and values within a
tolerance of the hand-computed ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from envs import NearFar, TreasureChain, TwoGoals, make_vec, treasure_chain, two_goals
from helpers import small_config

from kitae.algos import (
    C51,
    DQN,
    IQN,
    PPO,
    QRDQN,
    SAC,
    TD3,
    C51Params,
    DQNParams,
    IQNParams,
    PPOParams,
    QRDQNParams,
    SACParams,
)
from kitae.base import BaseAgent

pytestmark = pytest.mark.slow

EnvFn = Callable[[], gym.Env]
Bar = Callable[[Any], tuple[bool, str]]
"""``bar(agent) -> (passes, report)``: whether the agent meets a test's bar, and its numbers."""

Q_AGENTS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "dqn": (DQN, DQNParams, {"loss": "mse"}),
    "c51": (C51, C51Params, {"n_atoms": 21, "v_min": -1.0, "v_max": 9.0}),
    "qrdqn": (QRDQN, QRDQNParams, {"n_quantiles": 8, "kappa": 1.0}),
    "iqn": (
        IQN,
        IQNParams,
        {
            "n_tau_samples": 8,
            "n_tau_prime_samples": 8,
            "n_quantile_samples": 8,
            "n_cosines": 16,
            "head_hidden_sizes": (32,),
            "kappa": 1.0,
        },
    ),
}
Q_NAMES = list(Q_AGENTS)
Q_TOLERANCE = 0.05
"""Largest error allowed on a learned Q-value (the envs are deterministic: they converge)."""


def q_agent(
    name: str, env_fn: EnvFn, gamma: float, *, seed: int = 0, **params: Any
) -> tuple[DQN, gym.vector.VectorEnv]:
    """A small Q-learning agent (32-unit torso, hard target updates every 10 gradient steps,
    single-Q bootstrap) on 4 copies of ``env_fn``, and its env."""
    env = make_vec(env_fn, 4)
    agent_cls, params_cls, extra = Q_AGENTS[name]
    algo_params = {
        "gamma": gamma,
        "hidden_sizes": (32,),
        "activation": "relu",
        "double_q": False,
        "dueling": False,
        "n_step": 1,
        "prioritized": False,
        "tau": 1.0,
        "target_update_period": 10,
        "skip_steps": 2,
        "start_step": -1,
        "exploration_start": 1.0,
        "exploration_end": 0.1,
        "exploration_fraction": 0.5,
        **extra,
        **params,
    }
    update = {
        "learning_rate": 3e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": None,
        "max_buffer_size": 1_000,
        "batch_size": 32,
        "n_epochs": 1,
    }
    config = small_config(
        params_cls, env, params=algo_params, update=update, seed=seed, n_env_steps=1_000
    )
    return agent_cls(name, config), env


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def q_table(agent: DQN, n_states: int) -> np.ndarray:
    """``float64[n_states, A]``: the agent's Q-values of the one-hot observations, read from its
    network's output (C51: mean of the categorical distribution; QR-DQN: mean of the quantiles;
    IQN: mean of the quantiles at 64 evenly spaced levels)."""
    observations = np.eye(n_states, dtype=np.float32)
    state, p = agent.state, agent.config.algo_params
    if isinstance(agent, IQN):
        taus = np.broadcast_to((np.arange(64, dtype=np.float32) + 0.5) / 64, (n_states, 64))
        return np.asarray(state.apply_fn(state.params, observations, taus), np.float64).mean(-1)
    out = np.asarray(state.apply_fn(state.params, observations), np.float64)
    if isinstance(agent, C51):
        return softmax(out) @ np.linspace(p.v_min, p.v_max, p.n_atoms)
    if isinstance(agent, QRDQN):
        return out.mean(-1)
    return out


def q_bar(agent: DQN, expected: np.ndarray, decisions: list[int]) -> tuple[bool, str]:
    """Whether the agent's greedy action at each state of ``decisions`` is the argmax of
    ``expected`` (``[S, A]``) and every Q-value is within :data:`Q_TOLERANCE` of it."""
    q = q_table(agent, expected.shape[0])
    greedy = [int(a) for a in np.asarray(agent.select_action(np.eye(len(q), dtype=np.float32))[0])]
    ok_actions = all(greedy[s] == int(np.argmax(expected[s])) for s in decisions)
    ok_values = bool(np.abs(q - expected).max() <= Q_TOLERANCE)
    report = f"greedy {greedy}, Q {np.round(q, 3).tolist()}, expected {expected.tolist()}"
    return ok_actions and ok_values, report


def assert_learns(agent: BaseAgent, env: gym.vector.VectorEnv, bar: Bar) -> None:
    """The untrained agent fails ``bar(agent) -> (ok, report)``; once trained it passes."""
    ok, report = bar(agent)
    assert not ok, f"the untrained agent already passes the bar: {report}"
    agent.train(env)
    ok, report = bar(agent)
    assert ok, report


# ---- Q-learning ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", Q_NAMES)
def test_q_learning_does_not_bootstrap_through_terminations(name):
    # NearFar(0.7, 2), gamma 0.9: Q(start) = [0.7, 0.9] (far), Q(cell) = 1. Bootstrapping
    # through terminations gives [7.0, 6.57] (near) and 7.3.
    agent, env = q_agent(name, lambda: NearFar(0.7, 2), 0.9)
    expected = np.array([[0.7, 0.9], [1.0, 1.0]])
    assert_learns(agent, env, lambda a: q_bar(a, expected, decisions=[0]))


def test_dqn_bootstraps_at_truncations():
    # TreasureChain(3), gamma 0.9: go everywhere, Q(i, go) = 0.9^(3 - i). Cutting the bootstrap
    # at truncations gives Q(2, go) = 0 and quit (0.5 > 0.45) everywhere.
    agent, env = q_agent("dqn", treasure_chain, 0.9)
    expected = np.array([[0.5, 0.729], [0.5, 0.81], [0.5, 0.9], [1.0, 1.0]])
    np.testing.assert_allclose(TreasureChain().optimal_q_values(0.9), expected)
    assert_learns(agent, env, lambda a: q_bar(a, expected, decisions=[0, 1, 2]))


def test_dqn_choice_flips_with_the_discount():
    # NearFar(0.5, 3): Q(start) = [0.5, gamma^2]: far with gamma 0.99, near with gamma 0.5.
    expected = {
        0.99: np.array([[0.5, 0.9801], [0.99, 0.99], [1.0, 1.0]]),
        0.5: np.array([[0.5, 0.25], [0.5, 0.5], [1.0, 1.0]]),
    }
    choices = {}
    for gamma, q_star in expected.items():
        np.testing.assert_allclose(NearFar(0.5, 3).optimal_q_values(gamma), q_star)
        agent, env = q_agent("dqn", lambda: NearFar(0.5, 3), gamma)
        assert_learns(agent, env, lambda a, q_star=q_star: q_bar(a, q_star, decisions=[0]))
        choices[gamma] = int(np.asarray(agent.select_action(np.eye(3, dtype=np.float32))[0])[0])
    assert choices == {0.99: 1, 0.5: 0}


@pytest.mark.parametrize("name", Q_NAMES)
def test_q_learning_bootstraps_from_the_target_network(name):
    # NearFar(0.5, 3, far_reward=2), gamma 0.99, with a target network that is never updated
    # during the run: each bootstrap reads the initial network, so values propagate by one step
    # only. The last cell learns its reward, Q(c2) = 2; the cell before it Q(c1) = gamma *
    # max_a Q_init(c2, a); the start Q(far) = gamma * max_a Q_init(c1, a), Q(near) = 0.5.
    # Bootstrapping from the online network instead propagates the reward: Q(c1) = 1.98,
    # Q(far) = 1.9602.
    agent, env = q_agent(
        name, lambda: NearFar(0.5, 3, far_reward=2.0), 0.99, target_update_period=10**6
    )
    q_init = q_table(agent, 3)
    expected = np.array([[0.5, 0.99 * q_init[1].max()], [0.99 * q_init[2].max()] * 2, [2.0, 2.0]])
    propagated = NearFar(0.5, 3, far_reward=2.0).optimal_q_values(0.99)
    assert np.abs(expected - propagated).max() > 0.3  # the two are told apart

    def bar(a: DQN) -> tuple[bool, str]:
        q = q_table(a, 3)
        ok = np.abs(q - expected).max() <= 2 * Q_TOLERANCE
        return bool(ok), f"Q {np.round(q, 3).tolist()}, expected {np.round(expected, 3).tolist()}"

    assert_learns(agent, env, bar)


# ---- PPO -----------------------------------------------------------------------------------


def ppo_agent(
    env_fn: EnvFn, gamma: float, *, rollout: int = 16, seed: int = 0
) -> tuple[PPO, gym.vector.VectorEnv]:
    """A small PPO agent on 8 copies of ``env_fn``: rollouts of ``rollout`` steps per env,
    minibatches of ``min(32, 8 * rollout)``, 4 epochs, no entropy bonus; 2,048 env steps."""
    env = make_vec(env_fn, 8)
    params = {
        "gamma": gamma,
        "gae_lambda": 0.95,
        "clip_eps": 0.2,
        "clip_eps_annealing": False,
        "entropy_coef": 0.0,
        "value_coef": 0.5,
        "value_clip_eps": None,
        "normalize_advantages": True,
        "hidden_sizes": (32,),
        "activation": "tanh",
    }
    update = {
        "learning_rate": 3e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": 0.5,
        "max_buffer_size": 8 * rollout,
        "batch_size": min(32, 8 * rollout),
        "n_epochs": 4,
    }
    config = small_config(
        PPOParams, env, params=params, update=update, seed=seed, n_env_steps=2_048
    )
    return PPO("ppo", config), env


def ppo_bar(values: np.ndarray, good_actions: dict[int, int]) -> Bar:
    """The bar of a PPO agent: probability >= 0.9 of ``good_actions[s]`` at each decision state
    ``s`` and every state value within 0.1 of ``values``."""

    def bar(agent: PPO) -> tuple[bool, str]:
        observations = np.eye(len(values), dtype=np.float32)
        logits, v = agent.state.apply_fn(agent.state.params, observations)
        probs = softmax(np.asarray(logits, np.float64))
        good = [float(probs[s, a]) for s, a in good_actions.items()]
        ok = min(good) >= 0.9 and np.abs(np.asarray(v) - values).max() <= 0.1
        return bool(ok), f"P(good action) {np.round(good, 3)}, V {np.round(v, 3)}, V* {values}"

    return bar


def test_ppo_does_not_bootstrap_through_terminations():
    # NearFar(0.7, 2), gamma 0.9: far, V* = [0.9, 1]. GAE through terminations values the start
    # at 7 by near and 4.74 by far.
    agent, env = ppo_agent(lambda: NearFar(0.7, 2), 0.9)
    assert_learns(agent, env, ppo_bar(np.array([0.9, 1.0]), {0: 1}))


def test_ppo_bootstraps_at_truncations():
    # TreasureChain(3), gamma 0.9: go everywhere, V* = [0.729, 0.81, 0.9, 1]. Without the
    # bootstrap at truncations, quit (0.5) beats go (0.45) everywhere.
    agent, env = ppo_agent(treasure_chain, 0.9)
    values = TreasureChain().optimal_q_values(0.9).max(axis=1)
    assert_learns(agent, env, ppo_bar(values, {0: 1, 1: 1, 2: 1}))


def test_ppo_bootstraps_where_rollouts_cut_episodes():
    # NearFar(0.5, 3), gamma 0.99, rollouts of 2 steps per env: the far reward (3 steps after
    # the choice) never lies in the rollout of the choice, only the bootstrap from the value at
    # the rollout's cut carries it back. With it: far, V* = [0.9801, 0.99, 1]. Without it, the
    # advantage of far is at most gamma (1 - lambda) V(c1) - V(start) against 0.5 - V(start)
    # for near: near.
    agent, env = ppo_agent(lambda: NearFar(0.5, 3), 0.99, rollout=2)
    assert_learns(agent, env, ppo_bar(np.array([0.9801, 0.99, 1.0]), {0: 1}))


# ---- SAC and TD3 -----------------------------------------------------------------------------


def greedy_goal_episode(agent: SAC | TD3, max_steps: int = 10) -> tuple[float, int]:
    """``(reward, steps)`` of the greedy episode of :class:`TwoGoals` from ``x = 0``; reward 0
    when no goal is reached in ``max_steps``."""
    env = TwoGoals(random_start=False)
    obs, _ = env.reset()
    for step in range(1, max_steps + 1):
        action = np.asarray(agent.select_action(obs[None])[0])[0]
        obs, reward, terminated, _, _ = env.step(action)
        if terminated:
            return reward, step
    return 0.0, max_steps


def far_goal_bar(agent: SAC | TD3, gamma: float) -> tuple[bool, str]:
    """The greedy episode from ``x = 0`` reaches the far goal within 4 steps (worth ``gamma^3``
    at least, the near goal ``0.5``), and the critics' value of its first action is within 0.1
    of that episode's discounted return ``gamma^(steps - 1)``."""
    reward, steps = greedy_goal_episode(agent)
    obs = np.zeros((1, 1), np.float32)
    action = agent.select_action(obs)[0]
    critic = agent.state.critic
    q = float(np.asarray(critic.apply_fn(critic.params, obs, action)).min())
    discounted = reward * gamma ** (steps - 1)
    ok = reward == 1.0 and steps <= 4 and abs(q - discounted) <= 0.1
    return ok, f"reward {reward} after {steps} steps (discounted {discounted:.3f}), Q {q:.3f}"


@pytest.mark.parametrize("agent_cls", [SAC, TD3], ids=["sac", "td3"])
def test_continuous_agents_drive_to_the_far_goal(agent_cls: type[SAC | TD3]):
    # TwoGoals, gamma 0.9: three steps at full speed to the far goal (0.81) beat one step to the
    # near one (0.5); bootstrapping through terminations prefers the near goal (5 against 2.99).
    env = make_vec(two_goals, 2)
    params = {
        "gamma": 0.9,
        "tau": 0.05,
        "hidden_sizes": (32, 32),
        "activation": "relu",
        "n_critics": 2,
        "skip_steps": 1,
        "start_step": 300,
        "random_warmup": True,
    }
    if agent_cls is SAC:
        params |= {"init_alpha": 0.05, "learn_alpha": False, "target_update_period": 1}
    else:
        params |= {
            "policy_delay": 2,
            "exploration_noise": 0.1,
            "target_policy_noise": 0.2,
            "target_noise_clip": 0.5,
        }
    update = {
        "learning_rate": 1e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": None,
        "max_buffer_size": 5_000,
        "batch_size": 32,
        "n_epochs": 1,
    }
    config = small_config(
        agent_cls.params_type, env, params=params, update=update, seed=0, n_env_steps=1_500
    )
    agent = agent_cls("two-goals", config)
    assert_learns(agent, env, lambda a: far_goal_bar(a, 0.9))


def test_discrete_sac_does_not_bootstrap_through_terminations():
    # NearFar(0.7, 2), gamma 0.9, fixed temperature alpha = 0.05. Soft values: Q(c1, .) = 1 (a
    # terminal step), so the policy there is uniform and V(c1) = 1 + alpha log 2; Q(start) =
    # [0.7, 0.9 (1 + alpha log 2)] = [0.7, 0.9312] and P(far) = sigmoid((0.9312 - 0.7) / alpha)
    # = 0.990. Bootstrapping through terminations gives Q(start) about 7 by near.
    alpha = 0.05
    env = make_vec(lambda: NearFar(0.7, 2), 4)
    params = {
        "gamma": 0.9,
        "tau": 0.05,
        "target_update_period": 1,
        "init_alpha": alpha,
        "learn_alpha": False,
        "n_critics": 2,
        "skip_steps": 1,
        "start_step": 100,
        "random_warmup": True,
        "hidden_sizes": (32,),
        "activation": "relu",
    }
    update = {
        "learning_rate": 3e-3,
        "learning_rate_annealing": False,
        "max_grad_norm": None,
        "max_buffer_size": 1_000,
        "batch_size": 32,
        "n_epochs": 1,
    }
    config = small_config(SACParams, env, params=params, update=update, seed=0, n_env_steps=1_000)
    agent = SAC("near-far", config)
    v_cell = 1.0 + alpha * math.log(2.0)
    expected_q = np.array([[0.7, 0.9 * v_cell], [1.0, 1.0]])
    expected_p_far = 1.0 / (1.0 + math.exp(-(0.9 * v_cell - 0.7) / alpha))

    def bar(a: SAC) -> tuple[bool, str]:
        observations = np.eye(2, dtype=np.float32)
        actor, critic = a.state.actor, a.state.critic
        p_far = float(softmax(np.asarray(actor.apply_fn(actor.params, observations)))[0, 1])
        q = np.asarray(critic.apply_fn(critic.params, observations)).min(axis=0)
        ok = abs(p_far - expected_p_far) <= 0.02 and np.abs(q - expected_q).max() <= Q_TOLERANCE
        return bool(ok), f"P(far) {p_far:.3f} (expected {expected_p_far:.3f}), Q {q.tolist()}"

    assert_learns(agent, env, bar)
