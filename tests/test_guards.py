"""Guards of the training loops (:mod:`kitae.guards`): divergence, non-finite env data, env
shapes and interruption by SIGINT / SIGTERM.

Runs are tiny: a one-dimensional env whose data the tests control, a DQN with a 16-unit layer,
CartPole on gymnax for the compiled path. The subprocess tests of the command line are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import make_vec
from helpers import small_config

from kitae import guards
from kitae.algos import DQN, DQNParams
from kitae.checkpoint import find_checkpoint, load_params, read_meta
from kitae.config import validate_config
from kitae.modules.train_state import TrainState

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"hidden_sizes": (16,), "start_step": -1, "skip_steps": 4, "target_update_period": 2}
UPDATE = {"learning_rate": 1e-3, "max_buffer_size": 8, "batch_size": 8, "n_epochs": 2}


class Scripted(gym.Env):
    """Observation ``[t / 10]`` and reward 0 at step ``t`` of a 10-step episode, except the
    scripted values: ``observations[t]`` / ``rewards[t]`` replace them from the ``t``-th
    transition of the env's life on (counted over episodes, from 1)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, observations: dict | None = None, rewards: dict | None = None):
        self.observations, self.rewards = observations or {}, rewards or {}
        self.t = self.life = 0

    def _value(self, table: dict, default):
        starts = [t for t in table if t <= self.life]
        return table[max(starts)] if starts else default

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        self.life += 1
        obs = self._value(self.observations, np.array([self.t / 10], np.float32))
        return obs, self._value(self.rewards, 0.0), self.t >= 10, False, {}


def scripted_agent(tmp_path=None, n_envs: int = 1, n_env_steps: int = 64, **scripted):
    """A small DQN on ``n_envs`` :class:`Scripted` envs; returns ``(agent, env)``."""
    env = make_vec(lambda: Scripted(**scripted), n_envs)
    config = small_config(DQNParams, env, params=PARAMS, update=UPDATE, n_env_steps=n_env_steps)
    config.env_cfg.task_name = "Scripted-v0"
    return DQN("guards", config, run_dir=tmp_path), env


def finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


# ---- divergence ------------------------------------------------------------------------------
def test_update_flags_name_each_non_finite_quantity_by_hand():
    tx = optax.adam(1.0)
    params = {"w": jnp.array([1.0, 2.0])}
    state = TrainState.create(apply_fn=None, params=params, tx=tx, target_params=params)
    info = {"q": jnp.array([1.0, 2.0]), "loss": jnp.float32(0.5)}
    assert guards.flag_names(info) == ["loss", "q", "params", "optimizer_state"]
    flags = guards.nonfinite_flags({"critic": state, "count": jnp.int32(3)}, info)
    np.testing.assert_array_equal(flags, [0, 0, 0, 0])

    bad_info = {"q": jnp.array([1.0, jnp.nan]), "loss": jnp.float32(jnp.inf)}
    bad_target = state.replace(target_params={"w": jnp.array([1.0, jnp.nan])})
    flags = jax.jit(guards.nonfinite_flags)({"critic": bad_target}, bad_info)
    np.testing.assert_array_equal(flags, [1, 1, 1, 0])

    mu = state.opt_state[0].mu  # a NaN gradient reaches the optimizer's moments
    bad_moments = state.replace(
        opt_state=(state.opt_state[0]._replace(mu=jax.tree.map(lambda m: m * jnp.nan, mu)),)
        + tuple(state.opt_state[1:])
    )
    np.testing.assert_array_equal(guards.nonfinite_flags(bad_moments, info), [0, 0, 0, 1])


def test_first_divergence_keeps_the_first_flagged_step_of_a_chunk():
    info = {"loss": jnp.float32(0.0), guards.NONFINITE_KEY: jnp.zeros(3)}
    record = guards.no_divergence(info)
    record = guards.first_divergence(record, info, jnp.int32(8))
    assert int(record.env_steps) == -1
    bad = {guards.NONFINITE_KEY: jnp.array([1.0, 0.0, 0.0])}
    record = guards.first_divergence(record, bad, jnp.int32(12))
    record = guards.first_divergence(record, {guards.NONFINITE_KEY: jnp.ones(3)}, jnp.int32(16))
    assert int(record.env_steps) == 12
    np.testing.assert_array_equal(record.flags, [1, 0, 0])


def test_gymnasium_divergence_stops_at_the_first_non_finite_update_and_keeps_the_last_checkpoint(
    tmp_path,
):
    # Rewards of 3e38 (finite, the float32 maximum) from the 20th transition on: the squared TD
    # error overflows as soon as a sampled batch holds one (the 8-slot buffer holds only them
    # by transition 28), then the parameters become NaN.
    agent, env = scripted_agent(tmp_path, n_env_steps=64, rewards={20: 3e38})
    agent.config.train_cfg.save_frequency = 16
    with pytest.raises(guards.DivergenceError, match="training diverged: non-finite") as error:
        agent.train(env)
    message = str(error.value)
    step = int(message.split("at env step ")[1].split(";")[0])
    assert 20 <= step <= 28 and step % 4 == 0  # an update step: every 4 transitions
    assert "loss" in message and "\n" not in message
    latest = find_checkpoint(tmp_path / "guards")
    assert read_meta(latest)["env_steps"] == 16  # the last periodic one, not a NaN one
    assert str(latest) in message
    assert finite(load_params(latest))
    with pytest.raises(guards.DivergenceError, match="non-finite state"):
        agent.save()  # what is left in memory is refused too


@pytest.mark.slow
def test_compiled_loop_stops_on_request_and_at_the_first_non_finite_update(tmp_path):
    pytest.importorskip("gymnax")
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    env = make_jax_env("CartPole-v1")
    update = {**UPDATE, "learning_rate": 1e30}
    config = small_config(DQNParams, gym.make("CartPole-v1"), params=PARAMS, update=update)
    agent = DQN("guards", config_for_jax_env(config, env, n_envs=2), run_dir=tmp_path)
    guards.request_stop(signal.SIGTERM)
    try:
        summary = agent.train(env, 64)  # chunks of 2 transitions (1% of the run, one step)
    finally:
        guards.request_stop(0)
    assert summary["env_steps"] == agent.env_steps == 2
    with pytest.raises(guards.DivergenceError, match="after the update at env step 8;"):
        agent.train(env, 62)  # the first update (8 transitions) makes every Q-value infinite
    assert agent.env_steps == 2 and finite(agent.state)


# ---- non-finite env data -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "scripted, quantity",
    [
        ({"rewards": {5: float("nan")}}, "reward (nan for env 0)"),
        ({"rewards": {5: None}}, "reward (nan for env 0)"),
        ({"observations": {5: np.array([np.inf], np.float32)}}, "observation (inf for env 0)"),
    ],
    ids=["nan-reward", "none-reward", "inf-observation"],
)
def test_non_finite_env_data_is_an_error_naming_the_env_step_and_quantity(scripted, quantity):
    agent, env = scripted_agent(**scripted)
    with pytest.raises(guards.NonFiniteEnvDataError) as error:
        agent.train(env, 16)
    assert str(error.value).startswith(
        f"env 'Scripted-v0' returned a non-finite {quantity} at env step 5;"
    )
    assert "train_cfg.non_finite='skip'" in str(error.value)


def test_skip_drops_the_steps_holding_non_finite_data():
    # env 1 returns NaN observations from its 6th transition to its 8th: vector steps 6-8 hold
    # one as next observation, step 9 as observation (its next observation is finite again).
    nan = np.array([np.nan], np.float32)
    fine = np.array([0.5], np.float32)
    env = make_vec([Scripted, lambda: Scripted(observations={6: nan, 9: fine})])
    config = small_config(DQNParams, env, params=PARAMS, update=UPDATE, n_env_steps=40)
    config.train_cfg.non_finite = "skip"
    agent = DQN("guards", config)
    with pytest.warns(UserWarning, match="non-finite observation"):
        agent.train(env)
    assert agent.env_steps == 2 * (20 - 4)  # 20 vector steps, 4 skipped
    assert finite(agent.buffer_state.data) and finite(agent.state)


@pytest.mark.parametrize("value", ["ignore", None, 1])
def test_non_finite_mode_is_validated(value):
    env = make_vec(Scripted, 1)
    config = small_config(DQNParams, env, params=PARAMS, update=UPDATE)
    config.train_cfg.non_finite = value
    with pytest.raises(ValueError, match=r"train_cfg.non_finite=.* is invalid"):
        validate_config(config)


# ---- env shapes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "transition, found",
    [
        (10, "observation of shape (7,) (batch (1, 7)) at env step 10 (final observation), but"),
        (3, "an observation that does not fit its observation space (shape (1,)), at env step 3"),
    ],
    ids=["final-observation", "observation"],
)
def test_an_observation_of_another_shape_mid_run_names_the_env_step_and_shapes(transition, found):
    env = make_vec(lambda: Scripted(observations={transition: np.zeros(7, np.float32)}), 1)
    agent, _ = scripted_agent()
    with pytest.raises(guards.EnvShapeError) as error:
        agent.train(env, 16)
    assert str(error.value).startswith(f"env 'Scripted-v0' returned {found}")


class Empty(gym.vector.VectorWrapper):
    """Cuts the observations to shape ``(0,)`` but forgets to declare its observation space."""

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        return obs[:, :0], infos

    def step(self, actions):
        obs, *rest = self.env.step(actions)
        return obs[:, :0], *rest


def test_observations_are_checked_against_the_space_at_reset_and_on_the_first_step():
    agent, _ = scripted_agent(n_envs=2)
    space = agent.config.env_cfg.observation_space
    cut = Empty(make_vec(Scripted, 2))
    with pytest.raises(guards.EnvShapeError, match=r"of shape \(0,\) \(batch \(2, 0\)\) at reset"):
        agent.train(cut, 16)  # a wrapper that forgot to declare its observation space
    wide = np.zeros((2, 1), np.float64)
    guards.check_observations(agent, wide, space, 2, "at reset")  # float64 casts to float32
    with pytest.raises(guards.EnvShapeError, match="of dtype complex128 at env step 2"):
        guards.check_observations(agent, wide + 1j, space, 2, "at env step 2")


# ---- interruption ------------------------------------------------------------------------------
def test_a_stop_request_ends_the_gymnasium_loop_after_the_current_step():
    agent, env = scripted_agent(n_envs=2)
    try:
        summary = agent.train(
            env, 64, callback=lambda a: guards.request_stop(signal.SIGINT), callback_every=20
        )
    finally:
        guards.request_stop(0)
    assert summary["env_steps"] == agent.env_steps == 20


def test_signals_set_the_stop_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with guards.stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not guards.stop_requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert guards.stop_requested() == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second one aborts
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert guards.stop_requested() == 0


def test_exit_if_stopped_prints_how_to_resume_and_exits_128_plus_the_signal(capsys):
    agent, _ = scripted_agent()
    guards.exit_if_stopped(agent, "runs/x")  # no request: nothing happens
    guards.request_stop(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as error:
            guards.exit_if_stopped(agent, "runs/x")
    finally:
        guards.request_stop(0)
    assert error.value.code == 130
    assert "continue with: kitae resume runs/x" in capsys.readouterr().err


def kitae_process(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kitae", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_train_saves_a_checkpoint_that_resume_continues(tmp_path, signum):
    train = kitae_process(
        "train", "dqn", "--env", "CartPole-v1", "--quiet", "--run-name", "run",
        "--train-cfg.n-env-steps", "10000000", "--train-cfg.save-frequency", "2000",
        "--train-cfg.keep-checkpoints", "2", "--eval-episodes", "0",
        cwd=tmp_path,
    )  # fmt: skip
    latest = tmp_path / "runs" / "run" / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while not latest.exists() and train.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert latest.exists(), train.communicate(timeout=60)
    train.send_signal(signum)
    _, err = train.communicate(timeout=120)
    assert train.returncode == 128 + signum, err
    assert f"continue with: kitae resume {Path('runs') / 'run'}" in err
    assert "Traceback" not in err
    checkpoint = find_checkpoint(tmp_path / "runs" / "run")
    saved = read_meta(checkpoint)["env_steps"]
    assert saved >= 2000 and saved % 2000 != 0  # the stop's own checkpoint
    if signum == signal.SIGTERM:
        return
    resume = kitae_process(
        "resume", "runs/run", "--steps", "64", "--eval-episodes", "0", "--quiet", cwd=tmp_path
    )
    out, err = resume.communicate(timeout=240)
    assert resume.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["env_steps"] == saved + 64
