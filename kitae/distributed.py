"""Training past one device with JAX's own sharding.

Two patterns, both on a :class:`jax.sharding.Mesh` of the available devices:

* **Seeds across devices** (:func:`shard_seeds`): ``jit(vmap(train))`` over a batch of keys whose
  batch axis is sharded; each device trains its share of the seeds, with no communication.
* **Data parallel** (:func:`data_parallel`): one agent whose envs, replay buffers and rollouts
  are split across devices with ``shard_map``; every device computes gradients on its own
  batches and ``TrainState.apply_gradients`` averages them with ``lax.pmean``, so the replicas'
  parameters stay identical. ``config.env_cfg.n_envs`` is the number of envs *per device*.

Multi-host clusters: call ``jax.distributed.initialize()`` on every host before anything else
(coordinator address, number of processes and process id come from the arguments or the
cluster's environment, e.g. SLURM); ``jax.devices()`` then lists the devices of all hosts and
the same mesh code runs unchanged, each host feeding its addressable shard.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kitae.compiled import CompiledTrain
from kitae.modules.train_state import averaged_gradients


def make_mesh(axis_name: str, devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``)."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (axis_name,))


def shard_seeds(
    train: Callable[..., Any],
    keys: jax.Array,
    mesh: Mesh | None = None,
    axis_name: str = "seeds",
    hyperparams: dict | None = None,
) -> Any:
    """Runs ``jit(vmap(train))(keys, hyperparams)`` with the seed axis sharded over devices.

    Args:
        train: ``train(key, hyperparams) -> outputs`` (e.g. from :func:`kitae.compiled.make_train`).
        keys: ``[S, 2]`` PRNG keys, ``S`` a multiple of the number of devices.
        mesh: the device mesh (default: all devices along ``axis_name``).
        axis_name: the mesh axis of seeds.
        hyperparams: per-seed hyperparameters, each ``[S]`` (e.g. learning rates of a sweep).

    Raises:
        ValueError: if the seeds do not divide evenly over the devices.
    """
    mesh = mesh or make_mesh(axis_name)
    n_devices = mesh.shape[axis_name]
    if keys.shape[0] % n_devices:
        raise ValueError(
            f"{keys.shape[0]} seeds cannot be split evenly over {n_devices} devices; use a "
            "multiple of the device count."
        )
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    keys = jax.device_put(keys, sharding)
    hyperparams = jax.device_put(hyperparams or {}, sharding)
    return jax.jit(jax.vmap(train))(keys, hyperparams)


def data_parallel(
    train: CompiledTrain,
    mesh: Mesh | None = None,
    axis_name: str = "data",
) -> Callable[[jax.Array], Any]:
    """One agent trained on all devices of ``mesh``, gradients averaged across them.

    Returns a jitted ``run(key, hyperparams=None) -> (runner, metrics)`` whose outputs have a
    leading device axis ``[D, ...]`` (each replica's envs, buffer and metrics; the agent states
    are identical across ``D``).
    """
    mesh = mesh or make_mesh(axis_name)
    train = copy.copy(train)  # the caller's trainer stays usable on one device
    train.axis_name = axis_name

    def replica(key, hyperparams):
        with averaged_gradients(axis_name):
            out = train(key, hyperparams)
        return jax.tree.map(lambda x: x[None], out)

    sharded = jax.shard_map(
        replica,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec()),
        out_specs=PartitionSpec(axis_name),
        check_vma=False,
    )
    jitted = jax.jit(sharded)

    def run(key: jax.Array, hyperparams: dict | None = None):
        with averaged_gradients(axis_name):
            return jitted(key, hyperparams or {})

    return run
