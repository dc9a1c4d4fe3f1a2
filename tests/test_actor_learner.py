"""Tests for the actor-learner mode of the gymnasium loop (``train_cfg.actor_learner``).

The staleness bound is checked by instrumenting the agent: its ``explore`` (run by the actor, on
its copy of the agent) records the update count and the parameters it acts with, its ``_store``
(run by the learner) the learner's update count when it stores the step, and ``record_update``
the learner's parameters after every update. Updates are slowed down so that the actor does run
ahead. With ``max_staleness=0`` the mode must reproduce the sequential loop exactly.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from envs import corridor, make_vec
from helpers import DQN_PARAMS, DQN_UPDATE, assert_trees_equal, small_config

from kitae.actor_learner import actor_device, update_schedule
from kitae.algos import DQN, PPO, DQNParams, PPOParams
from kitae.config import AlgoConfig, validate_config
from kitae.envs.jax_env import make_jax_env
from kitae.envs.make import make_vec_env
from kitae.evaluation import evaluate

PPO_UPDATE = {"max_buffer_size": 32, "batch_size": 8, "n_epochs": 2}


def corridor_env(n_envs: int = 2) -> gym.vector.VectorEnv:
    return make_vec(lambda: corridor(), n_envs)


def with_train(config: AlgoConfig, **train: Any) -> AlgoConfig:
    """``config`` with some ``train_cfg`` fields replaced."""
    return dataclasses.replace(config, train_cfg=dataclasses.replace(config.train_cfg, **train))


def dqn_config(n_env_steps: int = 200, **train: Any) -> AlgoConfig:
    config = small_config(
        DQNParams, corridor_env(), params=DQN_PARAMS, update=DQN_UPDATE, n_env_steps=n_env_steps
    )
    return with_train(config, **train)


def ppo_config(n_env_steps: int = 192, **train: Any) -> AlgoConfig:
    config = small_config(
        PPOParams,
        corridor_env(),
        params={"hidden_sizes": (16,)},
        update=PPO_UPDATE,
        n_env_steps=n_env_steps,
    )
    return with_train(config, **train)


def actor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kitae-actor"]


def without_timing(row: dict[str, Any]) -> dict[str, Any]:
    """A log row without its wall-clock fields."""
    return {k: v for k, v in row.items() if k not in ("steps_per_second", "time", "wall_time")}


def assert_same_run(a, b) -> None:
    """Two agents went through the same training: state, data, keys, counters and episodes."""
    assert_trees_equal(a.state, b.state)
    if isinstance(a, DQN):
        assert_trees_equal(a.buffer_state, b.buffer_state)
    np.testing.assert_array_equal(a._interact_key, b._interact_key)
    np.testing.assert_array_equal(a._key_pool, b._key_pool)
    np.testing.assert_array_equal(a._update_key, b._update_key)
    assert (a._key_index, a.env_steps, a.n_updates) == (b._key_index, b.env_steps, b.n_updates)
    assert a.tracker.finished == b.tracker.finished


# ---- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("actor_learner", "yes"),
        ("actor_learner", 1),
        ("max_staleness", -1),
        ("max_staleness", 1.5),
        ("max_staleness", True),
        ("actor_queue_steps", 0),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"train_cfg\.{field}={value!r} is invalid"):
        validate_config(dqn_config(**{field: value}))


def test_the_defaults_keep_the_sequential_loop():
    train_cfg = dqn_config().train_cfg
    assert (train_cfg.actor_learner, train_cfg.max_staleness) == (False, 1)


def test_jax_envs_and_agents_with_an_acting_state_are_refused():
    agent = DQN("jax", dqn_config(actor_learner=True))
    with pytest.raises(ValueError, match=r"train_cfg\.actor_learner=True is for the gymnasium"):
        agent.train(make_jax_env("CartPole-v1"), 100)

    class WithActingState(DQN):
        def init_actor_state(self, n_envs: int) -> np.ndarray:
            return np.zeros((n_envs, 1), np.float32)

    agent = WithActingState("acting-state", dqn_config(actor_learner=True))
    with pytest.raises(ValueError, match=r"actor_learner=True is not supported by WithActing"):
        agent.train(corridor_env(), 100)
    assert not actor_threads()


# ---- same loop, other threads ----------------------------------------------------------------


@pytest.mark.parametrize("make_config, agent_cls", [(dqn_config, DQN), (ppo_config, PPO)])
def test_no_staleness_reproduces_the_sequential_run(tmp_path, make_config, agent_cls):
    sequential = agent_cls("run", make_config(log_frequency=20), run_dir=tmp_path / "sequential")
    sequential.train(corridor_env(), 160)
    overlapped = agent_cls(
        "run",
        make_config(log_frequency=20, actor_learner=True, max_staleness=0),
        run_dir=tmp_path / "overlapped",
    )
    summary = overlapped.train(corridor_env(), 160)

    assert summary["acting_lag_max"] == 0 and summary["n_updates"] == sequential.n_updates > 0
    assert_same_run(overlapped, sequential)
    for stream in ("episodes", "train"):
        rows = [
            [json.loads(line) for line in (tmp_path / d / "run" / f"{stream}.jsonl").open()]
            for d in ("sequential", "overlapped")
        ]
        assert rows[0] and [without_timing(r) for r in rows[0]] == [
            without_timing(r) for r in rows[1]
        ]
    assert not actor_threads()


# ---- the staleness bound ---------------------------------------------------------------------


class Recording:
    """Mixin recording what acted and what learned (see the module docstring).

    Attributes:
        acted: ``{env_steps before the step: (update count, acting state)}``, by the actor.
        acting_devices: the devices of the acting parameters.
        stored: ``{env_steps before the step: learner's update count when storing it}``.
        learned: ``{update count: the learner's acting state after that update}``.
    """

    UPDATE_DELAY_S = 0.02

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.acted: dict[int, tuple[int, Any]] = {}
        self.stored: dict[int, int] = {}
        self.learned = {self.n_updates: jax.device_get(self.acting_state)}
        self.acting_devices: set[Any] = set()

    def explore(self, observation):
        self.acted[self.env_steps] = (self.n_updates, jax.device_get(self.acting_state))
        self.acting_devices.update(x.device for x in jax.tree.leaves(self.acting_state))
        return super().explore(observation)

    def _store(self, experience) -> None:
        self.stored[self.env_steps - self.config.env_cfg.n_envs] = self.n_updates
        super()._store(experience)

    def run_update(self, data) -> None:
        time.sleep(self.UPDATE_DELAY_S)  # a slow learner: the actor runs ahead to the bound
        super().run_update(data)

    def record_update(self, info) -> None:
        super().record_update(info)
        self.learned[self.n_updates] = jax.device_get(self.acting_state)


@pytest.mark.parametrize(
    "agent_cls, make_config, max_staleness",
    [(DQN, dqn_config, 1), (DQN, dqn_config, 3), (PPO, ppo_config, 1)],
    ids=["dqn-1", "dqn-3", "ppo-1"],
)
def test_staleness_bound_holds_and_acting_params_are_the_published_ones(
    agent_cls, make_config, max_staleness
):
    recording = type(f"Recording{agent_cls.__name__}", (Recording, agent_cls), {})
    agent = recording("stale", make_config(actor_learner=True, max_staleness=max_staleness))
    summary = agent.train(corridor_env(), 200)

    assert sorted(agent.acted) == sorted(agent.stored) == list(range(0, 200, 2))
    lags = []
    for step, (version, acting_state) in sorted(agent.acted.items()):
        lags.append(agent.stored[step] - version)
        assert_trees_equal(acting_state, agent.learned[version])  # the params of that update
    assert agent.n_updates > 2 * max_staleness
    assert min(lags) >= 0 and max(lags) <= max_staleness
    # the actor did act ahead of the learner, as far as allowed
    assert max(lags) == max_staleness == summary["acting_lag_max"]
    assert summary["acting_lag_mean"] == pytest.approx(np.mean(lags))
    assert agent.acting_devices == {actor_device()} == {jax.devices("cpu")[0]}


def test_the_schedule_counts_the_updates_before_each_step():
    agent = DQN("schedule", dqn_config(actor_learner=True))
    schedule = update_schedule(agent, 100)
    # 2 envs, an update every 4 transitions once a batch of 8 is stored (after 4 vector steps)
    assert schedule[:8].tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert schedule[-1] == 48 and agent.expected_updates(200) == 49


class SlowSteps(gym.Wrapper):
    """Sleeps ``delay_s`` in every step."""

    def __init__(self, env: gym.Env, delay_s: float):
        super().__init__(env)
        self.delay_s = delay_s

    def step(self, action):
        time.sleep(self.delay_s)
        return self.env.step(action)


def test_updates_that_donate_the_train_state_never_delete_the_acting_params():
    """A slow actor acts with the previous parameters while the learner's next update (which
    donates the train state) runs and the learner has not published its result yet."""

    class Donating(DQN):
        update_donate_argnums = (0, 1)

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            # distinct buffers: the target params start as the params themselves
            self.state = jax.tree.map(jnp.copy, self.state)

        def run_update(self, data) -> None:
            super().run_update(data)
            time.sleep(Recording.UPDATE_DELAY_S)  # donated, not yet published

    agent = Donating("donating", dqn_config(actor_learner=True, max_staleness=2))
    summary = agent.train(make_vec(lambda: SlowSteps(corridor(), 0.002), 2), 200)
    assert summary["n_updates"] == 49 and summary["acting_lag_max"] >= 1
    assert not actor_threads()


# ---- errors ----------------------------------------------------------------------------------


class EnvBroke(RuntimeError):
    """The error of :class:`BreaksAfter`."""


class BreaksAfter(gym.Wrapper):
    """Raises :class:`EnvBroke` at its ``n + 1``-th step."""

    def __init__(self, env: gym.Env, n: int):
        super().__init__(env)
        self.n, self.count = n, 0

    def step(self, action):
        self.count += 1
        if self.count > self.n:
            raise EnvBroke("the env broke")
        return self.env.step(action)


def test_an_actor_error_reaches_the_learner_after_the_steps_before_it():
    env = make_vec(lambda: BreaksAfter(corridor(), 30), 2)
    agent = DQN("broken-env", dqn_config(actor_learner=True))
    with pytest.raises(EnvBroke, match="the env broke"):
        agent.train(env, 200)
    assert not actor_threads()
    assert agent.env_steps == 60  # the 30 vector steps acted before the error were stored


def test_a_learner_error_stops_the_actor():
    def callback(agent) -> None:
        raise KeyError("the callback broke")

    agent = DQN("broken-callback", dqn_config(actor_learner=True))
    with pytest.raises(KeyError, match="the callback broke"):
        agent.train(corridor_env(), 200, callback=callback, callback_every=40)
    assert not actor_threads()
    assert agent.env_steps == 40


# ---- checkpoints and the env stream ----------------------------------------------------------


def checkpoint_steps(run_dir) -> list[int]:
    return sorted(
        int(p.name[len("step_") :])
        for p in (run_dir / "checkpoints").iterdir()
        if p.name.startswith("step_") and p.name[len("step_") :].isdigit()
    )


def test_checkpoints_of_the_mode_resume_and_continue(tmp_path):
    config = dqn_config(actor_learner=True, max_staleness=1, save_frequency=40)
    agent = DQN("al", config, run_dir=tmp_path / "runs")
    agent.train(corridor_env(), 80)
    run = tmp_path / "runs" / "al"
    assert checkpoint_steps(run) == [40, 80]

    resumed = {}
    for name in ("no-staleness", "sequential", "stale"):
        shutil.copytree(run, tmp_path / name / "al")
        resumed[name] = DQN.resume(tmp_path / name / "al")
        assert_trees_equal(resumed[name].state, agent.state)
        assert_trees_equal(resumed[name].buffer_state, agent.buffer_state)
        np.testing.assert_array_equal(resumed[name]._interact_key, agent._interact_key)
        assert (resumed[name].env_steps, resumed[name].n_updates, resumed[name]._key_index) == (
            agent.env_steps,
            agent.n_updates,
            agent._key_index,
        )
        assert resumed[name].config.train_cfg.actor_learner
    resumed["no-staleness"].config.train_cfg.max_staleness = 0
    resumed["sequential"].config.train_cfg.actor_learner = False
    for run_agent in resumed.values():
        run_agent.train(corridor_env(), 40)

    assert_same_run(resumed["no-staleness"], resumed["sequential"])
    stale = resumed["stale"]
    assert (stale.env_steps, stale.n_updates) == (120, resumed["sequential"].n_updates)
    assert checkpoint_steps(tmp_path / "stale" / "al") == [40, 80, 120]
    assert not actor_threads()


def test_a_checkpoint_restores_into_an_agent_of_the_other_mode(tmp_path):
    sequential = DQN("seq", dqn_config(save_frequency=40), run_dir=tmp_path / "runs")
    sequential.train(corridor_env(), 40)
    other = DQN("al", dqn_config(actor_learner=True, max_staleness=2, actor_queue_steps=64))
    other.restore(tmp_path / "runs" / "seq")
    assert_trees_equal(other.state, sequential.state)
    assert other.env_steps == sequential.env_steps
    assert other.config.train_cfg.actor_learner and other.config.train_cfg.max_staleness == 2


def test_one_actor_steps_the_same_env_stream_in_every_run():
    """With uniformly random actions (epsilon 1) nothing the actor does depends on which
    parameters act: two runs, and the sequential one, see the same transitions."""

    def run(**train: Any) -> DQN:
        params = {**DQN_PARAMS, "exploration_start": 1.0, "exploration_end": 1.0}
        config = small_config(
            DQNParams, corridor_env(), params=params, update=DQN_UPDATE, n_env_steps=200
        )
        agent = DQN("stream", with_train(config, **train))
        agent.train(corridor_env(), 200)
        return agent

    first = run(actor_learner=True, max_staleness=3)
    for other in (run(actor_learner=True, max_staleness=3), run()):
        assert other.tracker.finished == first.tracker.finished
        assert_trees_equal(other.buffer_state.data, first.buffer_state.data)
        np.testing.assert_array_equal(other._interact_key, first._interact_key)
        assert other._key_index == first._key_index


# ---- learning ------------------------------------------------------------------------------


@pytest.mark.slow
def test_dqn_learns_cartpole_in_actor_learner_mode():
    env = make_vec_env("CartPole-v1", DQN.default_n_envs)
    config = DQN.default_config(env, seed=0, n_env_steps=50_000)
    config.train_cfg.progress_bar = False
    config.train_cfg.actor_learner = True
    config.train_cfg.max_staleness = 1
    agent = DQN("cartpole-actor-learner", config)
    untrained = evaluate(agent, "CartPole-v1", 10, seed=10_000)
    assert untrained.mean() < 200, untrained

    summary = agent.train(env)

    assert summary["acting_lag_max"] == 1
    returns = evaluate(agent, "CartPole-v1", 10, seed=10_000)
    # Which parameter version acts each step depends on the two threads' timing, so the run is
    # not reproducible: the bar is learning (untrained: ~10), with a margin for that variation;
    # benchmarks/actor_learner.py measures the 475 target over seeds.
    assert returns.mean() >= 200, returns
