"""Tests for kitae.envs.jax_env: the pure reset/step adapter over gymnax environments."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces as gymnax_spaces

from kitae.envs.jax_env import JaxEnv, JaxStep, is_jax_env, make_jax_env

# ---- tiny gymnax-style envs ---------------------------------------------------------------------


@struct.dataclass
class CounterState:
    time: jax.Array


@struct.dataclass
class CounterParams:
    max_steps_in_episode: int = 3


class _CounterBase:
    """Observation ``[t]`` (steps since the reset), reward 1 per step, two actions.

    ``action == 1`` terminates the episode. Subclasses add the time limit in either gymnax API.
    """

    @property
    def default_params(self) -> CounterParams:
        return CounterParams()

    def reset_env(self, key, params):
        del key
        state = CounterState(time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return state.time.astype(jnp.float32)[None]

    def observation_space(self, params):
        return gymnax_spaces.Box(0.0, float(params.max_steps_in_episode), (1,), jnp.float32)

    def action_space(self, params):
        return gymnax_spaces.Discrete(2)


class CounterEnv(_CounterBase):
    """gymnax >= 1.0 API: ``step_env``'s done is termination only; ``is_truncated`` is the clock."""

    def step_env(self, key, state, action, params):
        del key
        state = CounterState(time=state.time + 1)
        terminated = jnp.asarray(action) == 1
        return self.get_obs(state), state, jnp.float32(1.0), terminated, {}

    def is_truncated(self, state, params):
        return state.time >= params.max_steps_in_episode


class LegacyCounterEnv(_CounterBase):
    """Older 5-tuple API: no ``is_truncated``; ``step_env``'s done includes the time limit."""

    def step_env(self, key, state, action, params):
        del key
        state = CounterState(time=state.time + 1)
        done = (jnp.asarray(action) == 1) | (state.time >= params.max_steps_in_episode)
        return self.get_obs(state), state, jnp.float32(1.0), done, {}


@struct.dataclass
class GoalState:
    position: jax.Array
    time: jax.Array


@struct.dataclass
class GoalParams:
    goal: int = 3
    max_steps_in_episode: int = 3


class LegacyGoalEnv:
    """Older gymnax style, like its CartPole: ``step_env`` returns ``is_terminal``, which ORs the
    env's own terminal condition (``position >= goal``; action 1 moves right) with the clock."""

    @property
    def default_params(self) -> GoalParams:
        return GoalParams()

    def reset_env(self, key, params):
        del key
        state = GoalState(position=jnp.zeros((), jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return state.position.astype(jnp.float32)[None]

    def step_env(self, key, state, action, params):
        del key
        state = GoalState(position=state.position + jnp.asarray(action), time=state.time + 1)
        return self.get_obs(state), state, jnp.float32(-1.0), self.is_terminal(state, params), {}

    def is_terminal(self, state, params):
        done_goal = state.position >= params.goal
        done_steps = state.time >= params.max_steps_in_episode
        return jnp.logical_or(done_goal, done_steps)

    def observation_space(self, params):
        return gymnax_spaces.Box(0.0, float(params.goal), (1,), jnp.float32)

    def action_space(self, params):
        return gymnax_spaces.Discrete(2)


def run_actions(env: JaxEnv, actions) -> JaxStep:
    """Steps one env through ``actions`` (compiled scan); returns the stacked JaxSteps."""

    def body(state, inputs):
        key, action = inputs
        step = env.step(key, state, action)
        return step.state, step

    _, state = env.reset(jax.random.PRNGKey(0))
    actions = jnp.asarray(actions, jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(1), len(actions))
    _, steps = jax.jit(lambda s, k, a: jax.lax.scan(body, s, (k, a)))(state, keys, actions)
    return jax.device_get(steps)


# ---- gymnax CartPole ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole():
    return make_jax_env("CartPole-v1")


def test_cartpole_reset_and_step_shapes(cartpole):
    obs, state = jax.jit(cartpole.reset)(jax.random.PRNGKey(0))
    assert obs.shape == (4,)
    assert np.all(np.abs(np.asarray(obs)) <= 0.05)  # CartPole resets uniformly in [-0.05, 0.05]
    step = jax.jit(cartpole.step)(jax.random.PRNGKey(1), state, jnp.int32(1))
    assert isinstance(step, JaxStep)
    assert step.observation.shape == (4,) and step.next_observation.shape == (4,)
    assert step.reward.shape == () and step.reward.dtype == jnp.float32
    assert step.terminated.shape == () and step.terminated.dtype == jnp.bool_
    assert step.truncated.shape == () and step.truncated.dtype == jnp.bool_
    assert float(step.reward) == 1.0
    # no episode end: the next observation is the observation to act on
    np.testing.assert_array_equal(step.observation, step.next_observation)
    assert int(step.state.time) == 1

    # vmapped over envs
    keys = jax.random.split(jax.random.PRNGKey(2), 5)
    obs_n, state_n = jax.vmap(cartpole.reset)(keys)
    assert obs_n.shape == (5, 4)
    step_n = jax.vmap(cartpole.step)(keys, state_n, jnp.ones(5, jnp.int32))
    assert step_n.observation.shape == (5, 4) and step_n.reward.shape == (5,)


def test_cartpole_episode_end_keeps_final_observation_and_resets(cartpole):
    # Pushing right forever makes the pole fall within a few dozen steps.
    steps = run_actions(cartpole, np.ones(60, np.int32))
    ended = np.flatnonzero(steps.terminated)
    assert len(ended) >= 1
    t = ended[0]
    assert not steps.truncated[t]
    final = steps.next_observation[t]
    # the final observation is out of bounds (x or theta), the reset one is a fresh start
    assert abs(final[0]) > 2.4 or abs(final[2]) > 12 * 2 * np.pi / 360
    assert np.all(np.abs(steps.observation[t]) <= 0.05)
    assert int(steps.state.time[t]) == 0
    assert not np.allclose(steps.observation[t], final)
    # before the end the two observations agree and the clock runs
    np.testing.assert_array_equal(steps.observation[:t], steps.next_observation[:t])
    np.testing.assert_array_equal(steps.state.time[:t], np.arange(1, t + 1))


def test_cartpole_time_limit_is_truncation(cartpole):
    short = make_jax_env("CartPole-v1", cartpole.params.replace(max_steps_in_episode=5))
    steps = run_actions(short, np.tile([0, 1], 6))  # balanced: the pole does not fall
    np.testing.assert_array_equal(steps.terminated, np.zeros(12, bool))
    expected = np.zeros(12, bool)
    expected[[4, 9]] = True
    np.testing.assert_array_equal(steps.truncated, expected)
    assert int(steps.state.time[4]) == 0  # reset after the limit


# ---- termination vs truncation ------------------------------------------------------------------


@pytest.mark.parametrize("env_cls", [CounterEnv, LegacyCounterEnv], ids=["gymnax-1.0", "legacy"])
def test_termination_and_truncation_are_kept_apart(env_cls):
    env = JaxEnv(env_cls())
    assert env.legacy_api == (env_cls is LegacyCounterEnv)
    # 0,0,0 -> time limit at t=3; then 0,1 -> terminated at t=2; then 1 -> terminated at t=1
    steps = run_actions(env, [0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(steps.terminated, [0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(steps.truncated, [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(steps.reward, np.ones(7, np.float32))
    # next_observation is the true final observation, observation the reset one after an end
    np.testing.assert_array_equal(steps.next_observation[:, 0], [1, 2, 3, 1, 2, 1, 1])
    np.testing.assert_array_equal(steps.observation[:, 0], [1, 2, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(steps.state.time, [1, 2, 0, 1, 0, 0, 1])


@pytest.mark.parametrize("env_cls", [CounterEnv, LegacyCounterEnv], ids=["gymnax-1.0", "legacy"])
def test_termination_on_the_last_step_is_not_truncation(env_cls):
    # the episode terminates (action 1) on its time-limit step: that is a termination only
    steps = run_actions(JaxEnv(env_cls()), [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(steps.terminated, [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(steps.truncated, [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(steps.state.time, [1, 2, 0, 1, 2, 0])


def test_legacy_terminal_condition_on_the_time_limit_step_is_termination():
    """A legacy env whose own terminal condition (reaching the goal) holds exactly when the clock
    runs out: terminated, so the agent does not bootstrap; the clock alone is truncation."""
    env = JaxEnv(LegacyGoalEnv())
    assert env.legacy_api
    # 1, 1, 1 reaches the goal (3) on step 3, the limit; 0, 0, 0 only meets the limit; 1, 0, 1
    # is still one short of the goal at the limit
    steps = run_actions(env, [1, 1, 1, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(steps.terminated, [0, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(steps.truncated, [0, 0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(steps.next_observation[:, 0], [1, 2, 3, 0, 0, 0, 1, 1, 2])
    # an earlier goal is a termination too
    early = JaxEnv(LegacyGoalEnv(), GoalParams(goal=2, max_steps_in_episode=3))
    steps = run_actions(early, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(steps.terminated, [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(steps.truncated, [0, 0, 0, 0, 1])


class LegacyGoalWithoutClock(LegacyGoalEnv):
    """A legacy env whose params have no time limit."""

    def is_terminal(self, state, params):
        return state.position >= params.goal


def test_legacy_env_without_a_time_limit_only_terminates():
    @struct.dataclass
    class NoLimit:
        goal: int = 2

    steps = run_actions(JaxEnv(LegacyGoalWithoutClock(), NoLimit()), [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(steps.terminated, [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(steps.truncated, np.zeros(5, bool))


def test_legacy_env_params_that_cannot_lift_the_time_limit_are_rejected():
    class Params:
        max_steps_in_episode = 3
        goal = 3

    with pytest.raises(ValueError, match="max_steps_in_episode.*dataclass"):
        JaxEnv(LegacyGoalEnv(), Params())


def test_legacy_truncation_comes_from_the_episode_clock():
    params = CounterParams(max_steps_in_episode=2)
    env = JaxEnv(LegacyCounterEnv(), params)
    steps = run_actions(env, [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(steps.truncated, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(steps.terminated, np.zeros(5, bool))


# ---- spaces and construction --------------------------------------------------------------------


def test_spaces_are_gymnasium_spaces(cartpole):
    obs_space, act_space = cartpole.observation_space, cartpole.action_space
    assert isinstance(obs_space, gym.spaces.Box)
    assert obs_space.shape == (4,) and obs_space.dtype == np.float32
    assert obs_space.high[0] == pytest.approx(4.8)
    assert isinstance(act_space, gym.spaces.Discrete) and act_space.n == 2

    counter = JaxEnv(CounterEnv(), CounterParams(max_steps_in_episode=7))
    assert counter.observation_space == gym.spaces.Box(0.0, 7.0, (1,), np.float32)
    assert counter.action_space == gym.spaces.Discrete(2)
    obs, _ = counter.reset(jax.random.PRNGKey(0))
    assert counter.observation_space.contains(np.asarray(obs))


def test_unsupported_space_raises():
    class TupleSpaceEnv(CounterEnv):
        def observation_space(self, params):
            return gymnax_spaces.Tuple([gymnax_spaces.Discrete(2)])

    with pytest.raises(ValueError, match="unsupported"):
        _ = JaxEnv(TupleSpaceEnv()).observation_space


def test_dict_spaces_convert_key_by_key():
    class DictSpaceEnv(CounterEnv):
        def observation_space(self, params):
            return gymnax_spaces.Dict(
                {"n": gymnax_spaces.Discrete(2), "x": gymnax_spaces.Box(0.0, 1.0, (3,))}
            )

    space = JaxEnv(DictSpaceEnv()).observation_space
    assert space == gym.spaces.Dict(
        {"n": gym.spaces.Discrete(2), "x": gym.spaces.Box(0.0, 1.0, (3,), np.float32)}
    )


def test_is_jax_env(cartpole):
    import gymnax

    gymnax_env, _ = gymnax.make("CartPole-v1")
    assert is_jax_env(cartpole)
    assert is_jax_env(gymnax_env)
    assert is_jax_env(CounterEnv())
    gym_env = gym.make("CartPole-v1")
    try:
        assert not is_jax_env(gym_env)
    finally:
        gym_env.close()
    assert not is_jax_env(object())
    assert not is_jax_env("CartPole-v1")


def test_make_jax_env_accepts_ids_envs_and_jax_envs(cartpole):
    import gymnax

    assert cartpole.name == "CartPole-v1"
    assert make_jax_env(cartpole) is cartpole
    gymnax_env, params = gymnax.make("CartPole-v1")
    wrapped = make_jax_env(gymnax_env)
    assert isinstance(wrapped, JaxEnv) and wrapped.env is gymnax_env
    assert wrapped.params == params
    custom = make_jax_env(CounterEnv(), CounterParams(max_steps_in_episode=9))
    assert custom.params.max_steps_in_episode == 9
    assert make_jax_env(CounterEnv()).params == CounterParams()


def test_make_jax_env_rejects_non_gymnax_objects():
    gym_env = gym.make("CartPole-v1")
    try:
        with pytest.raises(TypeError, match="not a gymnax environment"):
            make_jax_env(gym_env)
    finally:
        gym_env.close()
    with pytest.raises(TypeError, match="not a gymnax environment"):
        make_jax_env(object())


# ---- MinAtar (gymnax) ---------------------------------------------------------------------------

MINATAR = [
    ("Breakout-MinAtar", 4, 3),
    ("Asterix-MinAtar", 4, 5),
    ("SpaceInvaders-MinAtar", 6, 4),
    ("Freeway-MinAtar", 7, 3),
]
"""MinAtar games: id, channels of the 10x10 grid, actions."""


@pytest.mark.parametrize(("env_id", "channels", "n_actions"), MINATAR, ids=[m[0] for m in MINATAR])
def test_minatar_ids_name_gymnax_envs_with_10x10_grids_and_the_minatar_cnn(
    env_id, channels, n_actions
):
    from kitae.cli.runs import gymnax_id
    from kitae.modules.encoders import EncoderSpec, encoder_spec

    assert gymnax_id(f"gymnax:{env_id}") == gymnax_id(env_id) == env_id
    env = make_jax_env(env_id)
    assert env.name == env_id and not env.legacy_api
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (10, 10, channels), np.float32)
    assert env.action_space == gym.spaces.Discrete(n_actions)
    assert encoder_spec(env.observation_space) == EncoderSpec("minatar_cnn", "hwc")


def test_the_command_line_builds_dqn_on_minatar_with_the_minatar_cnn():
    from kitae.algos.dqn import DQN
    from kitae.cli.runs import build_config, default_spec, make_env

    spec = default_spec("dqn", "gymnax:Breakout-MinAtar")
    # MinAtar's own DQN settings (kitae.zoo), for every game, with or without the prefix
    assert spec.update_cfg.learning_rate == 2.5e-4 and spec.algo_params.start_step == 5000
    assert spec.algo_params.target_update_period == 1000 and spec.n_envs == 1
    assert default_spec("dqn", "Freeway-MinAtar").algo_params.hidden_sizes == (128,)
    env = make_env(spec.env, 2)
    assert isinstance(env, JaxEnv) and env.name == "Breakout-MinAtar"
    agent = DQN("minatar", build_config(spec, env))
    flat = jax.tree_util.tree_flatten_with_path(agent.state.params)[0]
    kernels = [x.shape for p, x in flat if "minatar_cnn" in str(p) and "kernel" in str(p)]
    assert kernels == [(3, 3, 4, 16)]  # 16 3x3 filters over the 4 channels
    torso = [x.shape for p, x in flat if "MLP_0" in str(p) and "kernel" in str(p)]
    assert torso == [(8 * 8 * 16, 128)]  # the 8x8x16 features into 128 units


def test_ppo_on_minatar_starts_from_purejaxqls_settings():
    from kitae.cli.runs import build_config, default_spec, make_env
    from kitae.config import validate_config

    spec = default_spec("ppo", "gymnax:SpaceInvaders-MinAtar")
    assert spec.n_envs == 64 and spec.update_cfg.max_buffer_size == 64 * 128
    assert spec.update_cfg.batch_size == 1024 and spec.update_cfg.learning_rate == 5e-3
    assert spec.algo_params.entropy_coef == 1e-4 and spec.algo_params.encoder == "minatar_cnn"
    validate_config(build_config(spec, make_env(spec.env, spec.n_envs)))
    assert default_spec("ppo", "CartPole-v1").n_envs == 8  # other envs keep their own


@pytest.mark.slow
def test_cli_trains_dqn_on_minatar_on_the_compiled_path(tmp_cwd, capsys):
    import json

    from kitae.cli import main

    args = ["train", "dqn", "--env", "gymnax:Breakout-MinAtar", "--n-envs", "2"]
    args += ["--train-cfg.n-env-steps", "256", "--update-cfg.max-buffer-size", "256"]
    args += ["--update-cfg.batch-size", "32", "--update-cfg.n-epochs", "1"]
    args += ["--algo-params.start-step", "128", "--algo-params.skip-steps", "128"]
    args += ["--algo-params.hidden-sizes", "16", "--eval-episodes", "0", "--quiet"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["env_steps"] == 256 and report["n_updates"] == 2
