"""Tests for kitae.checkpoint: complete checkpoints, resuming, inference loading, atomic writes.

Runs are tiny (corridor and one-step envs, CartPole on gymnax for the compiled path) and share
their configurations so that the persistent compilation cache compiles each program once.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import JAX_CACHE_DIR
from envs import Target, corridor, make_vec
from helpers import (
    DQN_PARAMS,
    DQN_UPDATE,
    assert_trees_equal,
    rewrite_checkpoint_file,
    small_config,
)

from kitae import checkpoint
from kitae.algos import DQN, PPO, SAC, DQNParams, PPOParams, SACParams
from kitae.algos.sac import SACState
from kitae.buffer import PrioritizedReplayBufferState
from kitae.compiled import config_for_jax_env, make_agent_train, train_agent_compiled
from kitae.config import (
    AlgoConfig,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    config_differences,
    config_from_json,
    config_to_json,
)
from kitae.envs.jax_env import make_jax_env
from kitae.modules.optimizer import get_learning_rate

TESTS_DIR = Path(__file__).resolve().parent

# ---- configs -----------------------------------------------------------------------------------


def dqn_config(env, n_env_steps=200, **params) -> AlgoConfig:
    """Prioritized DQN with an annealed learning rate: every kind of state moves."""
    return small_config(
        DQNParams, env, params={**DQN_PARAMS, **params}, update=DQN_UPDATE, n_env_steps=n_env_steps
    )


def corridor_env(n_envs: int = 2) -> gym.vector.VectorEnv:
    return make_vec(lambda: corridor(), n_envs)


def assert_same_loop_state(a, b) -> None:
    """Keys, counters and episode statistics of two agents are identical."""
    np.testing.assert_array_equal(a._interact_key, b._interact_key)
    np.testing.assert_array_equal(a._update_key, b._update_key)
    np.testing.assert_array_equal(a._key_pool, b._key_pool)
    assert a._key_index == b._key_index
    assert (a.env_steps, a.n_updates) == (b.env_steps, b.n_updates)
    assert a.tracker.finished == b.tracker.finished
    assert list(a.tracker.recent_returns) == list(b.tracker.recent_returns)
    np.testing.assert_array_equal(a.tracker.returns, b.tracker.returns)
    np.testing.assert_array_equal(a.tracker.lengths, b.tracker.lengths)


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory):
    """A DQN trained for 60 transitions with a checkpoint in its run directory."""
    env = corridor_env()
    agent = DQN("dqn", dqn_config(env), run_dir=tmp_path_factory.mktemp("runs"))
    agent.train(env, 60)
    agent.save()
    return agent, agent.logger.run_dir


# ---- the config's JSON form ----------------------------------------------------------------------


def test_config_json_round_trip_keeps_classes_tuples_and_spaces():
    observation_space = gym.spaces.Dict(
        {
            "box": gym.spaces.Box(
                np.array([-1.0, -np.inf], np.float32), np.array([2.0, np.inf], np.float32)
            ),
            "rest": gym.spaces.Tuple(
                [
                    gym.spaces.Discrete(3, start=1),
                    gym.spaces.MultiDiscrete([2, 3]),
                    gym.spaces.MultiBinary(4),
                ]
            ),
        }
    )
    action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    config = AlgoConfig(
        seed=3,
        algo_params=SACParams(hidden_sizes=(8, 4), target_entropy=-1.5),
        update_cfg=UpdateConfig(learning_rate=2.3e-3, max_grad_norm=None),
        train_cfg=TrainConfig(n_env_steps=123, keep_checkpoints=2),
        env_cfg=EnvConfig("Custom-v0", observation_space, action_space, n_envs=2),
        extras={"pair": (1, 2), 7: np.float32(0.5), "table": np.arange(3)},
    )

    loaded = config_from_json(json.loads(json.dumps(config_to_json(config))))

    assert type(loaded.algo_params) is SACParams
    assert loaded.algo_params == config.algo_params
    assert loaded.algo_params.hidden_sizes == (8, 4)
    assert (loaded.update_cfg, loaded.train_cfg) == (config.update_cfg, config.train_cfg)
    assert loaded.env_cfg == config.env_cfg  # spaces compare bounds, shapes and dtypes
    assert loaded.extras["pair"] == (1, 2)
    assert loaded.extras[7] == np.float32(0.5) and loaded.extras[7].dtype == np.float32
    np.testing.assert_array_equal(loaded.extras["table"], np.arange(3))
    assert config_differences(config_to_json(config), config_to_json(loaded)) == []


def test_config_differences_name_the_fields():
    env = corridor_env()
    saved = config_to_json(dqn_config(env))
    other = config_to_json(dqn_config(env, hidden_sizes=(32,), n_step=2))
    names = [name for name, _, _ in config_differences(saved, other)]
    assert names == ["algo_params.n_step", "algo_params.hidden_sizes"]
    ppo = config_to_json(small_config(PPOParams, env, params={}, update={}))
    assert config_differences(saved, ppo)[0][0] == "algo_params"


# ---- every state field round-trips ---------------------------------------------------------------


def test_dqn_round_trip_restores_state_buffer_keys_and_counters(tmp_path):
    env = corridor_env()
    agent = DQN("dqn", dqn_config(env))
    agent.train(env, 46)  # 23 vector steps: the last one is staged, not yet in the buffer
    assert agent._staging.count == 1
    path = agent.save(tmp_path)
    assert agent._staging.count == 0  # saving flushed it into the buffer
    assert sorted(os.listdir(path)) == sorted(
        ["config.json", "meta.json", "params.msgpack", "state.msgpack", "loop.msgpack"]
        + ["buffer.msgpack"]
    )

    restored = DQN("dqn", dqn_config(corridor_env()))
    assert restored.restore(tmp_path) == path

    assert_trees_equal(restored.state, agent.state)  # params, targets, optimizer, step
    assert isinstance(restored.buffer_state, PrioritizedReplayBufferState)
    assert_trees_equal(restored.buffer_state, agent.buffer_state)
    assert int(restored.buffer_state.updates) == agent.n_updates * DQN_UPDATE["n_epochs"] > 0
    assert np.asarray(restored.buffer_state.size).tolist() == [23, 23]
    assert_same_loop_state(restored, agent)
    assert restored._key_index == 23 and restored._ticks == agent._ticks == 11
    assert restored.last_info == {k: float(v) for k, v in agent.last_info.items()}
    assert restored.exploration(restored.env_steps) == agent.exploration(agent.env_steps)
    assert float(get_learning_rate(restored.state.opt_state)) == pytest.approx(1e-3)


def test_save_without_the_buffer(tmp_path):
    env = corridor_env()
    agent = DQN("dqn", dqn_config(env))
    agent.train(env, 20)
    path = agent.save(tmp_path, include_buffer=False)
    assert not (path / "buffer.msgpack").exists()
    restored = DQN("dqn", dqn_config(env))
    restored.restore(path)
    assert restored.buffer_state is None
    assert_trees_equal(restored.state, agent.state)


def test_ppo_round_trip_in_the_middle_of_a_rollout(tmp_path):
    env = corridor_env()
    config = small_config(
        PPOParams,
        env,
        params={"hidden_sizes": (16,)},
        update={"max_buffer_size": 32, "batch_size": 8, "n_epochs": 2},
        n_env_steps=96,
    )
    agent = PPO("ppo", config)
    agent.train(env, 40)  # one rollout of 16 steps per env, then 4 steps of the next
    assert (agent.n_updates, agent.rollout.count) == (1, 4)
    agent.save(tmp_path)

    restored = PPO("ppo", config)
    restored.restore(tmp_path)

    assert_trees_equal(restored.state, agent.state)
    assert restored.rollout.count == 4
    rows = lambda a: jax.tree.map(lambda x: x[:4], a.rollout._storage)  # noqa: E731
    assert_trees_equal(rows(restored), rows(agent))
    assert_same_loop_state(restored, agent)


def test_sac_round_trip_restores_every_network(tmp_path):
    env = make_vec(Target, 2)
    config = small_config(
        SACParams,
        env,
        params={"hidden_sizes": (16,), "start_step": 32},
        update={"max_buffer_size": 128, "batch_size": 16},
        n_env_steps=400,
    )
    agent = SAC("sac", config)
    agent.train(env, 64)
    agent.save(tmp_path)

    restored = SAC("sac", config)
    restored.restore(tmp_path)

    assert isinstance(restored.state, SACState)
    for name in ("actor", "critic", "alpha"):
        assert_trees_equal(getattr(restored.state, name), getattr(agent.state, name))
    assert int(restored.state.critic.step) == agent.n_updates > 0
    assert_trees_equal(restored.buffer_state, agent.buffer_state)
    params = checkpoint.load_params(tmp_path)
    assert set(params) == {"actor", "critic", "alpha"}
    assert_trees_equal(params["alpha"], agent.state.alpha.params)


# ---- resuming ------------------------------------------------------------------------------------


def test_gymnasium_resume_continues_counters_schedules_keys_and_updates(tmp_path):
    env = corridor_env()
    agent = DQN("gym", dqn_config(env), run_dir=tmp_path)
    agent.train(env, 60)
    path = agent.save()
    saved_state = jax.device_get(agent.state)
    saved_buffer = jax.device_get(agent.buffer_state)
    epsilon = agent.exploration(agent.env_steps)
    # the next update of the uninterrupted agent (the buffer is donated: hand it a copy)
    expected = agent.update_fn(
        agent.state, jax.tree.map(jnp.copy, agent.buffer_state), agent._update_key
    )
    snapshot = {
        name: np.array(getattr(agent, name))
        for name in ("_interact_key", "_update_key", "_key_pool")
    }
    counters = (agent.env_steps, agent.n_updates, agent._ticks, agent._key_index)
    agent.train(env, 20)  # goes on past the checkpoint, writing more log rows

    resumed = DQN.resume(tmp_path / "gym")

    assert resumed.logger.run_dir == tmp_path / "gym"
    assert (resumed.env_steps, resumed.n_updates, resumed._ticks, resumed._key_index) == counters
    for name, value in snapshot.items():
        np.testing.assert_array_equal(getattr(resumed, name), value)
    assert_trees_equal(resumed.state, saved_state)
    assert_trees_equal(resumed.buffer_state, saved_buffer)
    assert resumed.exploration(resumed.env_steps) == epsilon
    state, buffer, key, info = resumed.update_fn(
        resumed.state, jax.tree.map(jnp.copy, resumed.buffer_state), resumed._update_key
    )
    assert_trees_equal((state, buffer, key, info), expected)
    # the rows written after the checkpoint are gone from the logs
    episodes = (tmp_path / "gym" / "episodes.jsonl").read_text().splitlines()
    assert episodes and max(json.loads(row)["step"] for row in episodes) <= 60

    # two resumes of one checkpoint continue identically, the schedules from where they were
    again = DQN.resume(path)
    for run in (resumed, again):
        run.train(corridor_env(), 40)
    assert_trees_equal(again.state, resumed.state)
    assert resumed.env_steps == 100
    assert resumed.n_updates == counters[1] + 40 // 4
    assert resumed.exploration(resumed.env_steps) == agent.exploration(100)
    assert int(resumed.state.opt_state[1].count) == resumed.n_updates * DQN_UPDATE["n_epochs"]
    rows = [json.loads(r) for r in (tmp_path / "gym" / "episodes.jsonl").read_text().splitlines()]
    assert max(row["step"] for row in rows) == 100


CARTPOLE = make_jax_env("CartPole-v1")
COMPILED_STEPS = 800
"""Transitions of each half of the compiled runs."""


def cartpole_config(agent_cls, algo_params, update_cfg, **train) -> AlgoConfig:
    gym_env = gym.make("CartPole-v1")
    config = agent_cls.default_config(
        gym_env,
        algo_params=algo_params,
        update_cfg=update_cfg,
        train_cfg=TrainConfig(n_env_steps=2 * COMPILED_STEPS, progress_bar=False, **train),
    )
    gym_env.close()
    return config_for_jax_env(config, CARTPOLE, n_envs=4)


COMPILED_DQN = (
    DQN,
    DQNParams(hidden_sizes=(16,), start_step=100, prioritized=True, exploration_fraction=0.2),
    UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=True,
        max_buffer_size=400,
        batch_size=16,
        n_epochs=2,
    ),
)
COMPILED_PPO = (
    PPO,
    PPOParams(hidden_sizes=(16,), clip_eps_annealing=True),
    UpdateConfig(
        learning_rate=1e-3, learning_rate_annealing=True, max_buffer_size=80, batch_size=20
    ),
)


@pytest.mark.parametrize("setting", [COMPILED_DQN, COMPILED_PPO], ids=["dqn-prioritized", "ppo"])
def test_compiled_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, setting):
    agent_cls, algo_params, update_cfg = setting
    config = cartpole_config(agent_cls, algo_params, update_cfg, save_frequency=400)
    interval = 80  # transitions per metrics row: the halves end on row boundaries

    whole = agent_cls("whole", config, run_dir=tmp_path)
    train_agent_compiled(whole, CARTPOLE, 2 * COMPILED_STEPS, log_interval=interval)

    first = agent_cls("split", config, run_dir=tmp_path)
    train_agent_compiled(first, CARTPOLE, COMPILED_STEPS, log_interval=interval)
    run = tmp_path / "split"
    assert sorted(os.listdir(run / "checkpoints")) == [
        "latest",
        "step_000000400",
        "step_000000800",
    ]
    second = agent_cls.resume(run)  # a new agent: only the checkpoint carries the run
    env = make_jax_env("CartPole-v1")  # a new env object of the same kind
    train_agent_compiled(second, env, COMPILED_STEPS, log_interval=interval)

    assert_trees_equal(second.state, whole.state)
    assert_trees_equal(second._compiled_cache["runner"], whole._compiled_cache["runner"])
    assert (second.env_steps, second.n_updates) == (whole.env_steps, whole.n_updates)
    rows = first.logger.history["train"] + second.logger.history["train"]
    assert rows == whole.logger.history["train"]

    if agent_cls is DQN:  # the checkpoint saved in the middle of the first call resumes too
        middle = agent_cls.resume(run / "checkpoints" / "step_000000400")
        assert middle.env_steps == 400
        train_agent_compiled(middle, env, 2 * COMPILED_STEPS - 400, log_interval=interval)
        assert_trees_equal(middle.state, whole.state)


def test_vmapped_seeds_are_saved_to_distinct_run_directories(tmp_path):
    agent_cls, algo_params, update_cfg = COMPILED_DQN
    agent = agent_cls("sweep", cartpole_config(agent_cls, algo_params, update_cfg))
    train = make_agent_train(agent, CARTPOLE, COMPILED_STEPS, log_interval=400)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    runners, _ = jax.jit(jax.vmap(train))(keys)

    paths = checkpoint.save_vmapped(tmp_path, runners, [3, 7], agent)

    assert paths == [tmp_path / f"seed_{s}" / "checkpoints" / "step_000000800" for s in (3, 7)]
    for k, seed in enumerate((3, 7)):
        loaded = agent_cls.resume(tmp_path / f"seed_{seed}")
        assert loaded.config.seed == seed
        assert loaded.env_steps == COMPILED_STEPS
        assert loaded.n_updates == agent.expected_updates(COMPILED_STEPS)
        assert_trees_equal(loaded.state, jax.tree.map(lambda x, k=k: x[k], runners.agent_state))
        assert_trees_equal(
            checkpoint.load_params(paths[k]),
            jax.tree.map(lambda x, k=k: x[k], runners.agent_state.params),
        )
    with pytest.raises(ValueError, match="one seed per run"):
        checkpoint.save_vmapped(tmp_path, runners, [1], agent)
    with pytest.raises(ValueError, match="distinct"):
        checkpoint.save_vmapped(tmp_path, runners, [1, 1], agent)
    # a seed's run continues where the vmapped program stopped
    loaded.train(CARTPOLE, 400)
    assert loaded.env_steps == COMPILED_STEPS + 400


# ---- atomic writes -------------------------------------------------------------------------------

KILLED_SAVE = """
import sys, time
from envs import corridor, make_vec
from helpers import small_config
from kitae.checkpoint import store
from kitae.algos import DQN, DQNParams

env = make_vec(lambda: corridor(), 2)
config = small_config(DQNParams, env, params={params}, update={update}, n_env_steps=200)
agent = DQN("killed", config, run_dir=sys.argv[1])
agent.train(env, 20)
agent.save()
agent.train(env, 20)

def stall(name):
    print("wrote", name, flush=True)
    time.sleep(120)

store.after_file_written = stall
agent.save()
"""


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The next line of ``process``'s stdout, waiting at most ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise AssertionError(f"no output within {timeout} s")
    return process.stdout.readline()


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    script = textwrap.dedent(KILLED_SAVE).format(params=DQN_PARAMS, update=DQN_UPDATE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "JAX_COMPILATION_CACHE_DIR": str(JAX_CACHE_DIR),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = read_line(process, timeout=120)  # the second save wrote its first file
        assert line.startswith("wrote"), (line, process.stderr.read())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    run = tmp_path / "killed"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000000020"
    assert [p.name for p in (run / "checkpoints").glob("step_000000040.tmp-*")]

    resumed = DQN.resume(run)
    assert (resumed.env_steps, resumed.n_updates) == (20, 4)
    assert checkpoint.find_checkpoint(run).name == "step_000000020"
    resumed.train(corridor_env(), 20)
    assert resumed.save().name == "step_000000040"
    assert sorted(os.listdir(run / "checkpoints")) == [
        "latest",
        "step_000000020",
        "step_000000040",
    ]


def test_a_missing_or_broken_latest_pointer_falls_back_to_the_newest_checkpoint(dqn_run, tmp_path):
    _, run = dqn_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    newest = copy / "checkpoints" / "step_000000060"
    shutil.copytree(newest, copy / "checkpoints" / "step_000000010")
    (copy / "checkpoints" / "latest").write_text("step_000000099\n")
    assert checkpoint.find_checkpoint(copy) == newest
    (copy / "checkpoints" / "latest").unlink()
    assert checkpoint.find_checkpoint(copy) == newest


# ---- save_frequency ------------------------------------------------------------------------------


def test_save_frequency_writes_checkpoints_at_its_multiples_and_at_the_end(tmp_path):
    env = corridor_env()
    config = dqn_config(env)
    config.train_cfg.save_frequency = 10
    agent = DQN("periodic", config, run_dir=tmp_path)
    agent.train(env, 25)  # 13 vector steps of 2 envs: 26 transitions
    root = tmp_path / "periodic" / "checkpoints"
    names = sorted(p.name for p in root.glob("step_*"))
    assert names == ["step_000000010", "step_000000020", "step_000000026"]
    assert [checkpoint.read_meta(root / n)["env_steps"] for n in names] == [10, 20, 26]
    assert (root / "latest").read_text().strip() == "step_000000026"

    agent.save(keep=1)  # the same step again: replaced; older ones removed
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000000026"]

    config.train_cfg.save_frequency = 10
    with pytest.raises(ValueError, match="run_dir"):
        DQN("nowhere", config).train(env, 10)


# ---- inference loading ---------------------------------------------------------------------------


def test_load_params_and_load_for_inference_skip_the_optimizer_and_buffer(dqn_run):
    agent, run = dqn_run
    params = checkpoint.load_params(run)
    assert set(params) == {"params"}
    assert_trees_equal(params, agent.state.params)

    acting = DQN.load_for_inference(run)
    assert acting.env_steps == agent.env_steps
    assert acting.buffer_state is None
    assert int(acting.state.opt_state[1].count) == 0  # a fresh optimizer
    observations = np.eye(5, dtype=np.float32)[:2]
    greedy = lambda a: np.asarray(a.select_action(observations)[0])  # noqa: E731
    np.testing.assert_array_equal(greedy(acting), greedy(agent))
    assert_trees_equal(acting.state.params, agent.state.params)


# ---- clear errors --------------------------------------------------------------------------------


def test_missing_directories_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DQN.resume(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.load_params(tmp_path)


def test_another_algorithm_or_network_is_refused_naming_the_difference(dqn_run, tmp_path):
    _, run = dqn_run
    with pytest.raises(ValueError, match=r"kitae\.algos\.dqn:DQN agent.*PPO"):
        PPO.resume(run)
    env = corridor_env()
    ppo = PPO("ppo", small_config(PPOParams, env, params={}, update={"batch_size": 8}))
    with pytest.raises(ValueError, match="DQN"):
        ppo.restore(run)
    wider = DQN("wider", dqn_config(env, hidden_sizes=(32,)))
    with pytest.raises(ValueError, match=r"algo_params\.hidden_sizes: checkpoint \(16,\)"):
        wider.restore(run)
    # a network that differs without a config difference is caught by the shape check
    other = DQN("other", dqn_config(env, hidden_sizes=(32,)))
    saved = other.save(tmp_path)
    config = (run / "checkpoints" / "step_000000060" / "config.json").read_bytes()
    rewrite_checkpoint_file(saved, "config.json", config)
    with pytest.raises(
        ValueError,
        match=r"state\.msgpack: .*agent state does not fit.*kernel.*\(5, 32\).*\(5, 16\)",
    ):
        DQN("dqn", dqn_config(env)).restore(saved)
