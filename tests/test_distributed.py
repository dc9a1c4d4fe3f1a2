"""Tests for kitae.distributed on 4 simulated CPU devices, and across 2 processes.

JAX fixes its device count when it initialises, so the multi-device checks run in a fresh
interpreter started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it prints its
measurements as JSON and the tests below assert on them. One subprocess serves every test.

The multi-process checks launch ``tests/distributed_worker.py`` three times side by side: two
processes of one distributed run (one CPU device each, joined through a coordinator on a free
local port, gloo collectives) and one process with 2 CPU devices that trains the same global
batch alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from distributed_launch import child_env, free_port, launch, python_command, report

from kitae.distributed import ProcessSettings, resolve_settings
from kitae.schedules import off_policy_update_count

REPO_ROOT = Path(__file__).resolve().parent.parent
N_DEVICES = 4
MARKER = "KITAE_DISTRIBUTED_RESULT="

SCRIPT = textwrap.dedent(
    """
    import functools
    import json

    import gymnasium
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import PartitionSpec as P

    from kitae.algos import dqn as dqn_module
    from kitae.algos import ppo as ppo_module
    from kitae.algos.dqn import DQN, DQNParams
    from kitae.algos.ppo import PPO, PPOParams
    from kitae.compiled import config_for_jax_env, make_train
    from kitae.config import TrainConfig, UpdateConfig
    from kitae.distributed import data_parallel, make_mesh, shard_seeds
    from kitae.envs.jax_env import make_jax_env
    from kitae.modules.train_state import averaged_gradients

    N = len(jax.devices())
    env = make_jax_env("CartPole-v1")
    gym_env = gymnasium.make("CartPole-v1")
    out = {"n_devices": N}


    def config(agent_cls, n_envs, n_env_steps, algo_params, update_cfg):
        cfg = agent_cls.default_config(
            gym_env, n_env_steps=n_env_steps, algo_params=algo_params, update_cfg=update_cfg,
            train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        )
        return config_for_jax_env(cfg, env, n_envs=n_envs)


    def max_diff(a, b):
        diffs = jax.tree.leaves(jax.tree.map(
            lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b))
        return max(diffs)


    # (a) seeds sharded over devices == unsharded jit(vmap(train)); short PPO run (2 updates)
    ppo_cfg = config(PPO, 4, 128, PPOParams(hidden_sizes=(32, 32)),
                     UpdateConfig(learning_rate=3e-3, max_buffer_size=64, batch_size=32,
                                  n_epochs=1))
    ppo_train = make_train(
        ppo_cfg, env, ppo_module.train_state_ppo_factory, ppo_module.explore_factory,
        ppo_module.process_experience_factory, ppo_module.update_step_factory,
        algo_type="on_policy",
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    sharded_runner, sharded_metrics = shard_seeds(ppo_train, keys)
    runner, metrics = jax.jit(jax.vmap(ppo_train))(keys, {})
    leaf = jax.tree.leaves(sharded_runner.agent_state.params)[0]
    out["seeds"] = {
        "params_max_diff": max_diff(sharded_runner.agent_state.params, runner.agent_state.params),
        "params_max_abs": max_diff(runner.agent_state.params,
                                   jax.tree.map(jnp.zeros_like, runner.agent_state.params)),
        "n_updates": np.asarray(sharded_metrics.n_updates).sum(axis=1).tolist(),
        "returns_equal": bool(np.array_equal(np.asarray(sharded_metrics.episode_return),
                                             np.asarray(metrics.episode_return),
                                             equal_nan=True)),
        "seeds_differ": bool(not np.array_equal(np.asarray(leaf)[0], np.asarray(leaf)[1])),
        "n_output_devices": len(leaf.sharding.device_set),
        "shard_shapes": [list(s.data.shape) for s in leaf.addressable_shards],
        "leaf_shape": list(leaf.shape),
    }

    # (c) seeds must divide over the devices
    try:
        shard_seeds(ppo_train, jax.random.split(jax.random.PRNGKey(0), N - 1))
        out["indivisible_error"] = None
    except ValueError as err:
        out["indivisible_error"] = str(err)

    # (b) data parallel DQN: 2 envs per device, gradients averaged over devices
    dqn_cfg = config(
        DQN, 2, 400,
        DQNParams(hidden_sizes=(32, 32), start_step=64, skip_steps=4, target_update_period=10),
        UpdateConfig(learning_rate=1e-3, max_grad_norm=10.0, max_buffer_size=200,
                     batch_size=16),
    )
    dqn_train = make_train(
        dqn_cfg, env, functools.partial(dqn_module.train_state_dqn_factory, tabulate=False),
        dqn_module.explore_factory, dqn_module.process_experience_factory,
        dqn_module.update_step_factory, algo_type="off_policy",
        explore_hyperparams=lambda t, hp: {"exploration": 0.2},
    )
    mesh = make_mesh("data")
    dp_runner, dp_metrics = data_parallel(dqn_train, mesh)(jax.random.PRNGKey(1))
    params = jax.device_get(dp_runner.agent_state.params)
    obs = np.asarray(dp_runner.observation)
    data_obs = np.asarray(dp_runner.buffer_state.data.observation)
    out["data_parallel"] = {
        "params_shapes": [list(x.shape) for x in jax.tree.leaves(params)],
        "replicas_identical": all(
            bool(np.array_equal(x[0], x[i])) for x in jax.tree.leaves(params) for i in range(N)
        ),
        "observation_shape": list(obs.shape),
        "observations_differ": all(
            not np.array_equal(obs[i], obs[j]) for i in range(N) for j in range(i + 1, N)
        ),
        "buffers_differ": all(
            not np.array_equal(data_obs[i], data_obs[j])
            for i in range(N) for j in range(i + 1, N)
        ),
        "n_updates": np.asarray(dp_metrics.n_updates).sum(axis=1).tolist(),
        "step": np.asarray(dp_runner.agent_state.step).tolist(),
    }

    # (b') one data-parallel gradient step == the single-device step on the whole batch
    update_step = dqn_module.update_step_factory(dqn_cfg)
    state = dqn_module.train_state_dqn_factory(jax.random.PRNGKey(2), dqn_cfg)
    rng = np.random.default_rng(0)
    batch = dqn_module.DQNBatch(
        observation=jnp.asarray(rng.normal(size=(64, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 2, 64), jnp.int32),
        target=jnp.asarray(rng.normal(size=64) + 1.0, jnp.float32),
        weight=jnp.ones(64, jnp.float32),
    )
    key = jax.random.PRNGKey(3)
    single, single_info = jax.jit(update_step)(state, key, batch)


    def replica(averaged):
        def step(state, key, batch):
            if averaged:
                with averaged_gradients("data"):
                    new, _ = update_step(state, key, batch)
            else:
                new, _ = update_step(state, key, batch)
            return jax.tree.map(lambda x: x[None], new.params)
        return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P("data")),
                                     out_specs=P("data"), check_vma=False))


    averaged = jax.device_get(replica(True)(state, key, batch))
    local = jax.device_get(replica(False)(state, key, batch))
    out["gradient_step"] = {
        "moved": max_diff(single.params, state.params),
        "averaged_vs_single": max(
            max_diff(jax.tree.map(lambda x: x[i], averaged), single.params) for i in range(N)
        ),
        "local_vs_single": min(
            max_diff(jax.tree.map(lambda x: x[i], local), single.params) for i in range(N)
        ),
    }
    gym_env.close()
    print("MARKER" + json.dumps(out))
    """
).replace("MARKER", MARKER)


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEVICES}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    # share the persistent compilation cache that conftest.py enabled
    cache_dir = jax.config.jax_compilation_cache_dir
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, (
        f"subprocess failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len(MARKER) :])


def test_subprocess_sees_four_devices(results):
    assert results["n_devices"] == N_DEVICES


def test_shard_seeds_matches_unsharded_vmap(results):
    seeds = results["seeds"]
    assert seeds["params_max_abs"] > 0
    assert seeds["params_max_diff"] < 1e-4, seeds
    assert seeds["returns_equal"]
    assert seeds["seeds_differ"]
    assert seeds["n_updates"] == [2, 2, 2, 2]


def test_shard_seeds_output_is_sharded_across_devices(results):
    seeds = results["seeds"]
    assert seeds["n_output_devices"] == N_DEVICES
    assert len(seeds["shard_shapes"]) == N_DEVICES
    assert all(shape[0] == 1 for shape in seeds["shard_shapes"])
    assert seeds["leaf_shape"][0] == N_DEVICES


def test_shard_seeds_rejects_indivisible_seed_counts(results):
    error = results["indivisible_error"]
    assert error is not None and "3 seeds" in error and "4 devices" in error


def test_data_parallel_replicas_stay_identical(results):
    dp = results["data_parallel"]
    assert all(shape[0] == N_DEVICES for shape in dp["params_shapes"])
    assert dp["replicas_identical"]
    # every replica took the same gradient steps: those of its own 400-transition schedule
    expected = off_policy_update_count(400, n_envs=2, skip_steps=4, start_step=64, batch_size=16)
    assert expected > 0
    assert dp["step"] == [expected] * N_DEVICES
    assert dp["n_updates"] == [expected] * N_DEVICES
    # each replica steps its own envs and fills its own buffer
    assert dp["observation_shape"] == [N_DEVICES, 2, 4]
    assert dp["observations_differ"]
    assert dp["buffers_differ"]


def test_data_parallel_gradient_step_equals_single_device_step(results):
    step = results["gradient_step"]
    assert step["moved"] > 1e-4
    assert step["averaged_vs_single"] < 1e-5, step
    # without the averaging each replica's step differs: the check above is not vacuous
    assert step["local_vs_single"] > 1e-4, step


# ---- two processes ---------------------------------------------------------------------------

WORKER = str(REPO_ROOT / "tests" / "distributed_worker.py")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Outputs of a 2-process data-parallel run (``p0``, ``p1``) and of the same global batch
    in one process with 2 devices (``single``): ``{tag: (json, params)}``."""
    out = tmp_path_factory.mktemp("multiprocess")
    address = f"127.0.0.1:{free_port()}"
    commands = [
        python_command(WORKER, str(out), "p0", address, "2", "0"),
        python_command(WORKER, str(out), "p1", address, "2", "1"),
        python_command(WORKER, str(out), "single"),
    ]
    envs = [child_env(1), child_env(1), child_env(2)]
    finished = launch(commands, envs, timeout_s=240)
    assert all(f.returncode == 0 for f in finished), report(finished)
    results = {}
    for tag in ("p0", "p1", "single"):
        with np.load(out / f"{tag}.npz") as params:
            results[tag] = (json.loads((out / f"{tag}.json").read_text()), dict(params))
    return results


@pytest.mark.slow
def test_two_processes_form_one_mesh(two_processes):
    for tag, index in (("p0", 0), ("p1", 1)):
        info = two_processes[tag][0]
        assert info["process_index"] == index
        assert info["process_count"] == 2
        assert (info["n_devices"], info["n_local_devices"]) == (2, 1)
    single = two_processes["single"][0]
    assert (single["process_count"], single["n_devices"], single["n_local_devices"]) == (1, 2, 2)


@pytest.mark.slow
def test_two_processes_end_with_bit_identical_parameters(two_processes):
    (info0, params0), (info1, params1) = two_processes["p0"], two_processes["p1"]
    assert params0.keys() == params1.keys() and params0
    for name in params0:
        assert np.array_equal(params0[name], params1[name]), name
    assert info0["moved"] > 1e-3  # trained: the equality above is not the initial parameters'
    # every process sees the other's replica identical to its own, and different envs
    for info in (info0, info1):
        assert info["gathered_replicas_identical"]
        assert info["replicas_see_different_envs"]
        assert info["observation_shape"] == [2, 2, 4]
    expected = off_policy_update_count(400, n_envs=2, skip_steps=4, start_step=64, batch_size=16)
    assert info0["n_updates"] == info1["n_updates"] == [expected, expected]


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batch(two_processes):
    (_, params0), (single, params) = two_processes["p0"], two_processes["single"]
    assert params.keys() == params0.keys()
    for name in params:
        np.testing.assert_allclose(params0[name], params[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert single["n_updates"] == two_processes["p0"][0]["n_updates"]


# ---- process settings ------------------------------------------------------------------------


def test_settings_from_arguments_and_environment():
    settings = resolve_settings("10.0.0.1:1234", 4, 3, environ={})
    assert settings == ProcessSettings("10.0.0.1:1234", 4, 3, source="arguments")
    env = {
        "KITAE_COORDINATOR_ADDRESS": "host:99",
        "KITAE_NUM_PROCESSES": "2",
        "KITAE_PROCESS_ID": "1",
    }
    settings = resolve_settings(environ=env)
    assert (settings.coordinator_address, settings.num_processes, settings.process_id) == (
        "host:99",
        2,
        1,
    )
    assert settings.source == "environment" and not settings.single_process
    # an argument wins over its variable
    assert resolve_settings(process_id=0, environ=env).process_id == 0


def test_settings_single_process_and_slurm():
    assert resolve_settings(num_processes=1, environ={}).single_process
    slurm = resolve_settings(environ={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"})
    assert slurm.detect and slurm.source == "SLURM" and not slurm.single_process


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs its process settings"),
        ({"coordinator_address": "h:1", "num_processes": 2}, "missing --process-id"),
        ({"num_processes": 2, "process_id": 0}, "missing --coordinator-address"),
        ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, "must be <"),
        ({"coordinator_address": "h:1", "num_processes": "two", "process_id": 0}, ">= 1"),
        ({"coordinator_address": "nohost", "num_processes": 2, "process_id": 1}, "HOST:PORT"),
    ],
)
def test_settings_refuse_incomplete_or_invalid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(**kwargs, environ={})
