"""Tests for AlphaZero (kitae.algos.alphazero) and the search over true dynamics
(kitae.planning.search).

The search tests use a hand-made 3-step corridor whose raw dynamics leak: stepping an ended
episode pays reward 1 again, and the ended state's value under the test network is a junk 5.0,
so any reward, discount or value that survives past a terminal state shows in the tree.
"""

from __future__ import annotations

import functools

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from flax import struct
from gymnax.environments import environment
from gymnax.environments import spaces as gymnax_spaces
from helpers import TRACE_EVENT

from kitae.algos.alphazero import (
    AlphaZero,
    AlphaZeroParams,
    decode_value,
    explore_factory,
    make_train,
    value_loss,
)
from kitae.compiled import evaluate_compiled
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, validate_config
from kitae.envs.jax_env import make_jax_env
from kitae.planning.search import (
    SearchEmbedding,
    SearchParams,
    make_recurrent_fn,
    planning_env,
    run_search,
)

GAMMA = 0.9
JUNK_VALUE = 5.0
LENGTH = 3


@struct.dataclass
class CorridorState(environment.EnvState):
    position: jax.Array
    ended: jax.Array


@struct.dataclass
class CorridorParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class Corridor(environment.Environment):
    """Positions 0..3: action 1 moves right (reward 1 on reaching 3, which terminates), action 0
    terminates with reward 0. Stepping an ended state pays 1 again (a leak to be absorbed)."""

    @property
    def default_params(self) -> CorridorParams:
        return CorridorParams()

    def step_env(self, key, state, action, params):
        del key
        position = jnp.where(action == 1, state.position + 1, state.position)
        terminated = (action == 0) | (position >= LENGTH)
        reward = jnp.where(state.ended, 1.0, jnp.where(position >= LENGTH, 1.0, 0.0))
        state = CorridorState(time=state.time + 1, position=position, ended=terminated)
        return self.get_obs(state), state, reward, terminated, {}

    def reset_env(self, key, params):
        del key
        state = CorridorState(time=jnp.int32(0), position=jnp.int32(0), ended=jnp.bool_(False))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        one_hot = jax.nn.one_hot(jnp.minimum(state.position, LENGTH + 1), LENGTH + 2)
        return jnp.concatenate([one_hot, state.ended[None].astype(jnp.float32)])

    def action_space(self, params=None):
        return gymnax_spaces.Discrete(2)

    def observation_space(self, params):
        return gymnax_spaces.Box(0.0, 1.0, (LENGTH + 3,), jnp.float32)


CORRIDOR = planning_env(Corridor())


def optimal_predict(logit_right: float):
    """A network that knows ``V*(p) = GAMMA ** (2 - p)`` and says ``JUNK_VALUE`` once ended."""

    def predict_fn(net_params, observations):
        del net_params
        position = jnp.argmax(observations[:, : LENGTH + 2], axis=-1)
        ended = observations[:, -1] > 0
        value = jnp.where(ended, JUNK_VALUE, GAMMA ** (LENGTH - 1 - position))
        logits = jnp.broadcast_to(jnp.array([-logit_right, logit_right]), (len(value), 2))
        return logits, value.astype(jnp.float32)

    return predict_fn


def roots(batch: int):
    observation, _ = jax.vmap(CORRIDOR.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
    return observation


# ---- search over the true dynamics ------------------------------------------------------------


def test_recurrent_fn_uses_the_transition_discount_and_absorbs_terminal_states():
    recurrent_fn = make_recurrent_fn(CORRIDOR, optimal_predict(0.0), GAMMA)
    start = roots(4).env_state
    at_two = start.replace(position=jnp.array([0, 2, 2, 2]))
    terminal = jnp.array([False, False, False, True])
    output, embedding = recurrent_fn(
        None, jax.random.PRNGKey(1), jnp.array([1, 1, 0, 1]), SearchEmbedding(at_two, terminal)
    )
    # right from 0: gamma, the net's value; right from 2: reward 1 then terminal; wrong: 0, 0;
    # from a terminal node: nothing leaks (the raw env would pay 1) and the state stays frozen.
    np.testing.assert_allclose(output.reward, [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(output.discount, [GAMMA, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(output.value, [GAMMA, 0.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(embedding.terminal, [False, True, True, True])
    np.testing.assert_array_equal(embedding.env_state.position, [1, 3, 2, 2])


def test_search_root_value_is_the_discounted_value_of_the_corridor():
    # A prior that always goes right and an exact value function: every backup through the
    # terminal state and the absorbing nodes beyond it must give exactly V*(0) = GAMMA ** 2.
    params = SearchParams(num_simulations=12, gamma=GAMMA, kind="puct")
    output = run_search(
        CORRIDOR, optimal_predict(30.0), params, None, jax.random.PRNGKey(0), roots(2), True
    )
    tree = output.search_tree
    np.testing.assert_allclose(tree.node_values[:, 0], GAMMA**2, rtol=1e-5)
    np.testing.assert_array_equal(output.action, [1, 1])
    # The path goes past the terminal state: the nodes there exist and are worth 0.
    assert bool(tree.embeddings.terminal[0].sum() >= 2)
    terminal_values = jnp.where(tree.embeddings.terminal, tree.node_values, 0.0)
    np.testing.assert_allclose(terminal_values, 0.0)


@pytest.mark.parametrize("kind", ["puct", "gumbel"])
def test_no_reward_discount_or_value_leaks_past_termination(kind):
    params = SearchParams(num_simulations=48, gamma=GAMMA, kind=kind)
    output = run_search(
        CORRIDOR, optimal_predict(0.0), params, None, jax.random.PRNGKey(3), roots(3)
    )
    tree = output.search_tree
    expanded = tree.children_index >= 0  # [B, nodes, A]
    terminal = tree.embeddings.terminal[..., None] & expanded
    assert bool(terminal.any()), "the search never expanded a terminal node"
    np.testing.assert_allclose(jnp.where(terminal, tree.children_rewards, 0.0), 0.0)
    np.testing.assert_allclose(jnp.where(terminal, tree.children_discounts, 0.0), 0.0)
    child = jnp.maximum(tree.children_index, 0)
    child_terminal = jnp.take_along_axis(
        tree.embeddings.terminal, child.reshape(child.shape[0], -1), axis=1
    ).reshape(child.shape)
    # The discount of each expanded transition is its own: GAMMA unless it ends the episode,
    # whatever the root's discount.
    expected = jnp.where(child_terminal, 0.0, GAMMA)
    np.testing.assert_allclose(
        jnp.where(expanded, tree.children_discounts, 0.0), jnp.where(expanded, expected, 0.0)
    )
    assert bool((expanded & (tree.children_discounts == GAMMA)).any())
    assert bool((expanded & (tree.children_rewards == 1.0)).any())  # the goal was reached
    # Values of terminal nodes are 0, never the net's junk value; the root prefers the goal.
    np.testing.assert_allclose(jnp.where(tree.embeddings.terminal, tree.node_values, 0.0), 0.0)
    root_q = tree.qvalues(jnp.zeros(3, jnp.int32))
    assert bool((root_q[:, 1] > root_q[:, 0]).all())


@pytest.mark.parametrize("rescaling", [False, True], ids=["plain", "signed-hyperbolic"])
def test_categorical_value_head_round_trips_two_hot(rescaling):
    p = AlphaZeroParams(
        value_head="categorical",
        value_support_size=21,
        value_min=-2.0,
        value_max=2.0,
        value_rescaling=rescaling,
    )
    targets = jnp.array([-1.0, 0.0, 0.37, 1.5])
    scaled = rlax.signed_hyperbolic(targets) if rescaling else targets
    logits = jnp.log(rlax.transform_to_2hot(scaled, -2.0, 2.0, 21) + 1e-12)
    np.testing.assert_allclose(decode_value(p, logits), targets, atol=1e-3)
    # the two-hot cross-entropy is smallest at the two-hot logits
    assert value_loss(p, logits, targets) < value_loss(p, jnp.zeros_like(logits), targets)


# ---- configuration ------------------------------------------------------------------------------


def corridor_config(n_envs: int = 4, n_env_steps: int = 256, **params) -> AlgoConfig:
    base = dict(num_simulations=4, gamma=GAMMA, hidden_sizes=(16,))
    return AlgoConfig(
        seed=0,
        algo_params=AlphaZeroParams(**{**base, **params}),
        update_cfg=UpdateConfig(learning_rate=1e-3, max_buffer_size=32, batch_size=16),
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig(
            task_name="corridor",
            observation_space=CORRIDOR.observation_space,
            action_space=CORRIDOR.action_space,
            n_envs=n_envs,
        ),
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_simulations", 0),
        ("search", "beam"),
        ("value_target", "td"),
        ("value_head", "mixture"),
        ("value_support_size", 1),
        ("value_max", -20.0),
        ("td_lambda", 1.5),
        ("dirichlet_fraction", 1.5),
        ("temperature", -1.0),
        ("max_depth", 0),
        ("gamma", 1.5),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"algo_params.{field}"):
        validate_config(corridor_config(**{field: value}))


def test_config_rejects_continuous_actions():
    config = corridor_config()
    config.env_cfg.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,))
    with pytest.raises(ValueError, match="env_cfg.action_space"):
        validate_config(config)


# ---- training ------------------------------------------------------------------------------------


def test_compiled_train_does_not_retrace_and_depends_on_the_seed(trace_counter):
    train = make_train(corridor_config(n_env_steps=512), CORRIDOR)
    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    runner, metrics = run(keys)
    assert trace_counter[TRACE_EVENT] > 0
    trace_counter.clear()
    again, _ = run(keys)
    other, _ = run(jax.random.split(jax.random.PRNGKey(1), 2))
    assert trace_counter[TRACE_EVENT] == 0, dict(trace_counter)
    assert run._cache_size() == 1
    params, repeated, reseeded = (
        jax.tree.leaves(r.agent_state.params) for r in (runner, again, other)
    )
    for a, b in zip(params, repeated, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, c) for a, c in zip(params, reseeded, strict=True))
    assert int(metrics.n_episodes.sum()) > 0
    assert np.isfinite(np.asarray(metrics.info["loss"])).all()


def catch_config(n_env_steps: int, **params) -> AlgoConfig:
    env = planning_env("Catch-bsuite")
    base = dict(num_simulations=16, gamma=0.99, td_lambda=0.95, hidden_sizes=(64, 64))
    return AlgoConfig(
        seed=0,
        algo_params=AlphaZeroParams(**{**base, **params}),
        update_cfg=UpdateConfig(
            learning_rate=1e-3,
            learning_rate_annealing=True,
            max_grad_norm=1.0,
            max_buffer_size=256,
            batch_size=64,
            n_epochs=8,
        ),
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig(
            task_name="Catch-bsuite",
            observation_space=env.observation_space,
            action_space=env.action_space,
            n_envs=16,
        ),
    )


@pytest.mark.slow
@pytest.mark.parametrize("value_head", ["scalar", "categorical"])
def test_catch_learns(value_head):
    # Random play scores about -0.6; the search alone, before training, about 0.2-0.5.
    extra = {}
    if value_head == "categorical":
        extra = dict(value_support_size=21, value_min=-1.0, value_max=1.0)
    config = catch_config(8192, value_head=value_head, **extra)
    env = planning_env("Catch-bsuite")
    runner, _ = jax.jit(jax.vmap(make_train(config, env)))(
        jax.random.split(jax.random.PRNGKey(0), 2)
    )
    search = explore_factory(config, env)

    def evaluate(state, key, greedy_policy):
        def act(s, k, observations):
            if greedy_policy:  # the policy head alone
                return jnp.argmax(s.apply_fn(s.params, observations.observation)[0], axis=-1)
            return search(s, k, observations, True)[0]

        return evaluate_compiled(act, state, env, key, 64, max_steps=10).mean()

    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    with_search = jax.jit(jax.vmap(functools.partial(evaluate, greedy_policy=False)))
    policy_only = jax.jit(jax.vmap(functools.partial(evaluate, greedy_policy=True)))
    assert np.asarray(with_search(runner.agent_state, keys)).min() >= 0.9
    # the policy head alone, distilled from the searches: well above random play (about -0.6);
    # its exact score varies with the library versions' numerics (0.19-1.0 seen per seed)
    assert np.asarray(policy_only(runner.agent_state, keys)).min() >= 0.0


def test_agent_trains_and_logs_through_its_logger():
    config = corridor_config(n_env_steps=128)
    agent = AlphaZero("alphazero", config, env=Corridor())
    summary = agent.train()
    assert summary["env_steps"] == 128
    rows = agent.logger.history["train"]
    assert rows and {"loss_policy", "loss_value", "episode_return"} <= set(rows[-1])
    observation = jax.vmap(agent.planning_env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))[0]
    actions, log_policy = agent.select_action(observation)
    assert actions.shape == (4,) and log_policy.shape == (4, 2)
    assert agent.as_jax_env(Corridor()) is agent.planning_env  # the same env, another instance
    with pytest.raises(ValueError, match="env must be the env"):
        agent.train(make_jax_env("CartPole-v1"))
