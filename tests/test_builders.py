"""neurorl-style builders for ``kitae.compiled.make_train`` (``kitae.builders``).

Each builder must be used: an optimizer with learning rate 0 or a loss that is always 0 leaves the
params where they started, an actor that always picks action 0 fills the replay buffer with 0s,
and the logger receives every metrics row. The default Q-learning builders learn CartPole.
"""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitae.algos import DQN, PPO, DQNParams
from kitae.builders import qlearning
from kitae.compiled import config_for_jax_env, evaluate_compiled, make_train
from kitae.envs.jax_env import make_jax_env
from kitae.logger import Logger

pytest.importorskip("gymnax")


def cartpole_config(n_env_steps: int, **params):
    """A tiny DQN config on gymnax CartPole-v1 with 2 envs."""
    env = make_jax_env("CartPole-v1")
    algo_params = DQNParams(**{"hidden_sizes": (16,), "start_step": 64, "skip_steps": 4, **params})
    config = DQN.default_config(
        gym.make("CartPole-v1"),
        seed=0,
        n_env_steps=n_env_steps,
        tuned=False,
        algo_params=algo_params,
        update_cfg=dataclasses.replace(
            DQN.default_update_cfg, batch_size=32, n_epochs=1, max_buffer_size=2_000
        ),
    )
    return config_for_jax_env(config, env, n_envs=2), env


def init_and_run(train, seed: int = 0):
    """``(initial runner, final runner, metrics)`` of ``train`` from ``PRNGKey(seed)``."""
    start = jax.jit(train.init)(jax.random.PRNGKey(seed))
    final, metrics = jax.jit(train.run)(start)
    return start, final, metrics


def same_params(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def stored_actions(runner) -> np.ndarray:
    """The actions of the filled replay slots, ``[T, N]``."""
    size = int(np.asarray(runner.buffer_state.size).min())
    return np.asarray(runner.buffer_state.data.action)[:size]


def test_readme_snippet_with_the_five_builders_trains_and_logs():
    config, env = cartpole_config(600)
    logger = Logger(backends=())
    make_train_preloaded = functools.partial(
        make_train,
        make_agent=qlearning.make_agent,
        make_optimizer=qlearning.make_optimizer,
        make_loss_fn_class=qlearning.make_loss_fn_class,
        make_actor=qlearning.make_actor,
        make_logger=functools.partial(qlearning.make_logger, logger=logger),
    )
    train = make_train_preloaded(config, env, log_interval=200)
    start, final, metrics = init_and_run(train)
    assert not same_params(start.agent_state.params, final.agent_state.params)
    assert int(final.env_steps) == 600
    rows = logger.history["train"]
    assert [r["step"] for r in rows] == [200, 400, 600]
    assert rows[-1]["n_updates"] > 0
    # Both actions are tried early on (epsilon starts at 1).
    assert set(np.unique(stored_actions(final))) == {0, 1}


def test_each_of_the_five_builders_is_used():
    """make_agent's params (all 0.5) stay put under make_optimizer's learning rate 0, make_actor
    always picks action 0, make_loss_fn_class's info reaches the metrics, make_logger gets every
    row."""
    config, env = cartpole_config(400)
    rows = []

    def make_agent(config, env, key):
        network, params = qlearning.make_agent(config, env, key)
        return network, jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)

    def make_loss_fn_class(config):
        dqn_losses = qlearning.make_loss_fn_class(config)

        def loss_fn(state, params, key, batch):
            losses, priorities, info = dqn_losses(state, params, key, batch)
            return losses, priorities, {**info, "custom_loss": jnp.ones(())}

        return loss_fn

    def make_actor(config):
        def explore_fn(state, key, observations, exploration):
            n = jax.tree.leaves(observations)[0].shape[0]
            return jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.float32)

        return explore_fn

    train = functools.partial(
        make_train,
        make_agent=make_agent,
        make_optimizer=lambda config: optax.sgd(0.0),
        make_loss_fn_class=make_loss_fn_class,
        make_actor=make_actor,
        make_logger=lambda config, env: rows.append,
    )(config, env, log_interval=200)
    start, final, metrics = init_and_run(train)
    jax.effects_barrier()
    leaves = jax.tree.leaves(start.agent_state.params)
    assert all(np.all(np.asarray(x) == 0.5) for x in leaves)
    assert same_params(start.agent_state.params, final.agent_state.params)
    assert int(np.asarray(metrics.n_updates).sum()) > 0
    actions = stored_actions(final)
    assert actions.size == 400 and np.all(actions == 0)
    np.testing.assert_array_equal(np.asarray(metrics.info["custom_loss"])[-1], 1.0)
    assert [int(row.env_steps) for row in rows] == [200, 400]


@pytest.mark.slow
def test_a_loss_builder_returning_zero_leaves_the_params_unchanged():
    config, env = cartpole_config(400)

    def make_loss_fn_class(config):
        def loss_fn(state, params, key, batch):
            zero = 0.0 * sum(x.sum() for x in jax.tree.leaves(params)) + jnp.zeros(
                batch.target.shape
            )
            return zero, zero, {}

        return loss_fn

    train = make_train(config, env, make_loss_fn_class=make_loss_fn_class)
    start, final, metrics = init_and_run(train)
    assert int(np.asarray(metrics.n_updates).sum()) > 0
    assert same_params(start.agent_state.params, final.agent_state.params)


@pytest.mark.slow
def test_factories_left_out_come_from_the_algorithm():
    config, env = cartpole_config(200)
    train = make_train(config, env)  # DQN's four factories, epsilon schedule
    assert train.algo_type == "off_policy"
    _, final, _ = init_and_run(train)
    assert set(np.unique(stored_actions(final))) == {0, 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"make_optimiser": optax.adam}, "unknown keyword"),
        ({"make_actor": 3}, "make_actor=3 is not callable"),
        ({"explore_factory": qlearning.make_actor, "make_actor": qlearning.make_actor},
         "both explore_factory and make_actor"),
    ],
    ids=["typo", "not-callable", "factory-and-builder"],
)  # fmt: skip
def test_bad_builders_are_clear_errors(kwargs, message):
    config, env = cartpole_config(200)
    with pytest.raises(ValueError, match=message):
        make_train(config, env, **kwargs)


def test_loss_builder_needs_q_learning_params():
    env = make_jax_env("CartPole-v1")
    config = config_for_jax_env(PPO.default_config(gym.make("CartPole-v1")), env, n_envs=2)
    with pytest.raises(ValueError, match="make_loss_fn_class needs Q-learning params"):
        make_train(config, env, make_loss_fn_class=qlearning.make_loss_fn_class)


@pytest.mark.slow
def test_default_qlearning_builders_learn_cartpole():
    config, env = cartpole_config(
        30_000, hidden_sizes=(64, 64), start_step=1_000, exploration_fraction=0.2
    )
    config = config_for_jax_env(
        DQN.default_config(
            gym.make("CartPole-v1"), seed=0, n_env_steps=30_000, algo_params=config.algo_params
        ),
        env,
        n_envs=4,
    )
    builders = {
        name: getattr(qlearning, name) for name in qlearning.__all__ if name != "make_logger"
    }
    train = functools.partial(make_train, **builders)(config, env)
    start, final, _ = init_and_run(train)
    greedy = lambda state, key, obs: qlearning.make_actor(config)(state, key, obs, 0.0)[0]  # noqa: E731
    key = jax.random.PRNGKey(1)
    before = evaluate_compiled(greedy, start.agent_state, env, key, n_episodes=16)
    after = evaluate_compiled(greedy, final.agent_state, env, key, n_episodes=16)
    assert float(before.mean()) < 100
    assert float(after.mean()) > 150
