"""Brax and MuJoCo Playground envs on the compiled path (kitae.envs.brax): spaces, the time limit
as truncation apart from termination, automatic reset, ids, and a few compiled PPO and SAC steps.

MuJoCo (which compiles the Brax and Playground models) writes ``MUJOCO_LOG.TXT`` into the working
directory on any warning, so this module runs in a temporary working directory."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from kitae.cli.runs import gymnax_id  # noqa: E402
from kitae.envs.brax import BraxEnv, make_brax_env  # noqa: E402
from kitae.envs.jax_env import make_jax_env  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _in_tmp_cwd(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("brax_cwd"))
        yield


LIMIT = 8
"""Agent steps before the time limit of the test envs."""
FALL_ANGLE = 0.2
"""Brax's inverted pendulum terminates when the pole angle (observation 1) exceeds this."""


@pytest.fixture(scope="module")
def pendulum() -> BraxEnv:
    return make_brax_env("brax:inverted_pendulum", episode_length=LIMIT)


@pytest.fixture(scope="module")
def run_pendulum(pendulum):
    """A jitted ``run(actions [T, A]) -> (reset observation, JaxStep [T])`` from one reset."""

    @jax.jit
    def run(actions):
        obs, state = pendulum.reset(jax.random.PRNGKey(0))

        def body(state, inputs):
            key, action = inputs
            step = pendulum.step(key, state, action)
            return step.state, step

        keys = jax.random.split(jax.random.PRNGKey(1), len(actions))
        _, steps = jax.lax.scan(body, state, (keys, actions))
        return obs, steps

    return run


def test_spaces_and_reset(pendulum):
    assert pendulum.observation_space == gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    # Brax's inverted pendulum motor takes controls in [-3, 3]
    assert pendulum.action_space == gym.spaces.Box(-3.0, 3.0, (1,), np.float32)
    assert pendulum.params.max_steps_in_episode == LIMIT
    assert pendulum.name == "brax:inverted_pendulum"
    obs, state = pendulum.reset(jax.random.PRNGKey(0))
    assert obs.shape == (4,) and obs.dtype == jnp.float32
    assert float(state.info["steps"]) == 0.0


def test_time_limit_is_truncation_and_the_episode_restarts(run_pendulum):
    first, steps = run_pendulum(jnp.zeros((12, 1)))
    assert steps.observation.shape == steps.next_observation.shape == (12, 4)
    assert steps.reward.shape == (12,) and steps.reward.dtype == jnp.float32
    assert not steps.terminated.any()  # the pole stays up without a push
    np.testing.assert_array_equal(np.flatnonzero(steps.truncated), [LIMIT - 1])
    np.testing.assert_array_equal(steps.reward, 1.0)  # 1 per step up
    # within the episode the next observation is the observation acted on next ...
    np.testing.assert_array_equal(
        steps.observation[: LIMIT - 1], steps.next_observation[: LIMIT - 1]
    )
    # ... at the limit the true last observation is kept and a new episode begins
    assert not np.allclose(steps.observation[LIMIT - 1], steps.next_observation[LIMIT - 1])
    assert float(steps.state.info["steps"][LIMIT - 1]) == 0.0
    assert float(steps.state.info["steps"][LIMIT]) == 1.0
    assert np.abs(steps.observation[LIMIT - 1, 1]) < np.abs(steps.next_observation[LIMIT - 1, 1])
    assert np.abs(first[1]) < 0.05


def test_a_fall_is_termination_not_truncation(run_pendulum):
    _, steps = run_pendulum(jnp.full((12, 1), 3.0))
    ends = np.flatnonzero(steps.terminated)
    assert len(ends) >= 1 and ends[0] < LIMIT - 1
    k = ends[0]
    assert not steps.truncated[: k + 1].any()
    angles = np.abs(np.asarray(steps.next_observation[:, 1]))
    assert angles[k] > FALL_ANGLE and (angles[:k] <= FALL_ANGLE).all()
    # the next episode starts upright, its step counter from 0
    assert np.abs(steps.observation[k, 1]) < 0.05
    assert float(steps.state.info["steps"][k]) == 0.0


def test_ids_name_brax_envs_and_bad_ones_are_refused():
    assert gymnax_id("brax:halfcheetah") == "brax:halfcheetah"
    assert gymnax_id("playground:CartpoleBalance") == "playground:CartpoleBalance"
    env = make_jax_env("brax:inverted_pendulum:generalized")
    assert isinstance(env, BraxEnv) and env.params.max_steps_in_episode == 1000
    with pytest.raises(ValueError, match="unknown Brax env 'cheetah'"):
        make_brax_env("brax:cheetah")
    with pytest.raises(ValueError, match="unknown Brax backend 'fast'"):
        make_brax_env("brax:hopper:fast")
    with pytest.raises(ValueError, match="episode_length"):
        make_brax_env("brax:hopper", episode_length=0)
    with pytest.raises(ValueError, match="neither a Brax"):
        make_brax_env("gymnax:CartPole-v1")


def test_action_repeat_counts_agent_steps_against_the_limit():
    env = make_brax_env("brax:inverted_pendulum", episode_length=7, action_repeat=2)
    assert env.params.max_steps_in_episode == 4  # ceil(7 / 2)


@pytest.mark.slow
def test_compiled_ppo_trains_and_evaluates_on_a_brax_env(pendulum):
    from kitae.algos.ppo import PPO, PPOParams
    from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig
    from kitae.evaluation import evaluate_jax

    config = AlgoConfig(
        seed=0,
        algo_params=PPOParams(hidden_sizes=(16,)),
        update_cfg=UpdateConfig(max_buffer_size=32, batch_size=16, n_epochs=1),
        train_cfg=TrainConfig(n_env_steps=64, progress_bar=False),
        env_cfg=EnvConfig(
            pendulum.name, pendulum.observation_space, pendulum.action_space, n_envs=2
        ),
    )
    agent = PPO("brax", config)
    before = jax.tree.leaves(agent.state.params)
    summary = agent.train(pendulum, 64)
    assert summary["env_steps"] == agent.env_steps == 64
    assert summary["n_updates"] == 2 and summary["episodes"] >= 2 * (64 // 2 // LIMIT) - 2
    after = jax.tree.leaves(agent.state.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    returns = evaluate_jax(agent, pendulum, n_episodes=2)
    # 1 per step up, the episode cut at LIMIT steps (the compiled step cap)
    assert returns.shape == (2,) and np.all((returns >= 1) & (returns <= LIMIT))
    np.testing.assert_array_equal(returns, np.round(returns))


@pytest.mark.slow
def test_playground_env_through_the_same_adapter():
    pytest.importorskip("mujoco_playground")
    env = make_brax_env("playground:CartpoleBalance", episode_length=4)
    assert env.observation_space.shape == (5,) and env.action_space.shape == (1,)
    assert env.params.max_steps_in_episode == 4

    @jax.jit
    def run(key):
        _, state = env.reset(key)

        def body(state, key):
            step = env.step(key, state, jnp.zeros(1))
            return step.state, (step.terminated, step.truncated)

        return jax.lax.scan(body, state, jax.random.split(key, 6))[1]

    terminated, truncated = run(jax.random.PRNGKey(0))
    assert not terminated.any()
    np.testing.assert_array_equal(np.flatnonzero(truncated), [3])


@pytest.mark.slow
def test_compiled_sac_trains_on_a_brax_env(pendulum):
    from kitae.algos.sac import SAC, SACParams
    from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig

    config = AlgoConfig(
        seed=0,
        algo_params=SACParams(hidden_sizes=(16,), start_step=32, skip_steps=16),
        update_cfg=UpdateConfig(max_buffer_size=128, batch_size=16, n_epochs=1),
        train_cfg=TrainConfig(n_env_steps=64, progress_bar=False),
        env_cfg=EnvConfig(
            pendulum.name, pendulum.observation_space, pendulum.action_space, n_envs=2
        ),
    )
    agent = SAC("brax-sac", config)
    before = jax.device_get(agent.state.actor.params)
    summary = agent.train(pendulum, 64)
    assert summary["env_steps"] == agent.env_steps == 64
    assert summary["n_updates"] == 3  # at 32, 48 and 64 transitions
    after = jax.device_get(agent.state.actor.params)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )
