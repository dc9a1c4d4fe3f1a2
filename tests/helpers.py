"""Helpers shared by the test modules: small configs and pytree comparisons."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
"""The JAX monitoring event recorded once per trace (see the ``trace_counter`` fixture)."""


def small_config(
    params_type: type,
    env: Any,
    *,
    params: dict[str, Any],
    update: dict[str, Any],
    seed: int = 0,
    n_env_steps: int = 1_000,
) -> AlgoConfig:
    """An :class:`AlgoConfig` for ``env`` with every params and update field given explicitly
    (tests must not depend on the agents' defaults)."""
    return AlgoConfig(
        seed=seed,
        algo_params=params_type(**params),
        update_cfg=UpdateConfig(**update),
        train_cfg=TrainConfig(n_env_steps=n_env_steps, progress_bar=False),
        env_cfg=EnvConfig.from_env(env),
    )


def leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_equal(a: Any, b: Any) -> None:
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def trees_equal(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


def trees_all_differ(a: Any, b: Any) -> bool:
    """Every leaf of ``a`` differs from the matching leaf of ``b`` somewhere."""
    return all(not np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


# A small prioritized DQN (updates every 4 steps, a 64-transition buffer) whose checkpoints and
# loops the checkpoint and actor-learner tests compare.
DQN_PARAMS = {
    "hidden_sizes": (16,),
    "start_step": -1,
    "skip_steps": 4,
    "prioritized": True,
    "exploration_fraction": 0.5,
    "target_update_period": 2,
}
DQN_UPDATE = {
    "learning_rate": 1e-3,
    "learning_rate_annealing": True,
    "max_grad_norm": 10.0,
    "max_buffer_size": 64,
    "batch_size": 8,
    "n_epochs": 2,
}


def rewrite_checkpoint_file(checkpoint: Path, name: str, data: bytes) -> None:
    """Writes ``data`` as the file ``name`` of a checkpoint directory and records its size and
    SHA-256 in the manifest, as a deliberate edit of the checkpoint would (the integrity check
    passes, the checks behind it are reached)."""
    (checkpoint / name).write_bytes(data)
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["sha256"][name] = hashlib.sha256(data).hexdigest()
    meta["bytes"][name] = len(data)
    (checkpoint / "meta.json").write_text(json.dumps(meta))
