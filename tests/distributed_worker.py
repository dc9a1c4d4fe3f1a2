"""One process of the multi-process data-parallel test (``tests/test_distributed.py``).

``python tests/distributed_worker.py OUT_DIR TAG [COORDINATOR NUM_PROCESSES PROCESS_ID]`` joins
the other processes (when a coordinator is given), trains a small DQN on gymnax CartPole data
parallel over every device of every process (:func:`kitae.distributed.data_parallel`), and
writes ``OUT_DIR/TAG.npz`` (the parameters of its local replica, by path) and
``OUT_DIR/TAG.json`` (what it saw). Started alone with 2 CPU devices
(``--xla_force_host_platform_device_count=2``), it trains the same global batch in one process.

With ``KITAE_SUBPROCESS_MUTANT=<name>`` it first applies that mutant of ``tests/mutants``, so a
mutant applied in the test process reaches the workers too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent


def _apply_mutant() -> None:
    name = os.environ.get("KITAE_SUBPROCESS_MUTANT")
    if not name:
        return
    import pytest

    sys.path.insert(0, str(TESTS_DIR))
    from mutants import load_all

    load_all()[name].apply(pytest.MonkeyPatch())


def main(argv: list[str]) -> None:
    """Trains and writes the outputs (see the module docstring)."""
    out_dir, tag = Path(argv[0]), argv[1]
    from kitae.distributed import initialize, resolve_settings

    if len(argv) > 2:
        initialize(resolve_settings(argv[2], argv[3], argv[4]), timeout_s=60)
    _apply_mutant()

    import jax
    import numpy as np

    from kitae.cli.runs import agent_class, build_config, make_env, parse_spec
    from kitae.compiled import make_agent_train
    from kitae.distributed import data_parallel, gather, local_replica, make_mesh

    algo, spec = parse_spec(
        "dqn",
        [
            "--env", "gymnax:CartPole-v1",
            "--n-envs", "2",
            "--seed", "3",
            "--algo-params.hidden-sizes", "32", "32",
            "--algo-params.start-step", "64",
            "--algo-params.skip-steps", "4",
            "--algo-params.target-update-period", "10",
            "--update-cfg.batch-size", "16",
            "--update-cfg.max-buffer-size", "200",
            "--update-cfg.learning-rate", "1e-3",
            "--train-cfg.n-env-steps", "400",
        ],
    )  # fmt: skip
    env = make_env(spec.env, spec.n_envs)
    agent = agent_class(algo)("dp", build_config(spec, env))
    initial = jax.device_get(agent.state.params)
    train = make_agent_train(agent, env)
    runner, metrics = data_parallel(train, make_mesh("data"))(jax.random.PRNGKey(7))
    params = local_replica(runner.agent_state.params)
    observations = gather(runner.observation)
    all_params = gather(runner.agent_state.params)
    metrics = gather(metrics)
    flat = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / f"{tag}.npz", **flat)
    n = observations.shape[0]
    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "n_devices": len(jax.devices()),
        "n_local_devices": len(jax.local_devices()),
        "observation_shape": list(observations.shape),
        "replicas_see_different_envs": all(
            not np.array_equal(observations[i], observations[j])
            for i in range(n)
            for j in range(i + 1, n)
        ),
        "gathered_replicas_identical": all(
            bool(np.array_equal(x[0], x[i])) for x in jax.tree.leaves(all_params) for i in range(n)
        ),
        "moved": max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(initial), strict=True)
        ),
        "n_updates": np.asarray(metrics.n_updates).sum(axis=1).tolist(),
        "step": np.asarray(gather(runner.agent_state.step)).tolist(),
    }
    (out_dir / f"{tag}.json").write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
