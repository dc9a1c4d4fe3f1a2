"""Training past one device, and past one machine, with JAX's own sharding.

What runs where:

* **Seeds across devices** (:func:`shard_seeds`): ``jit(vmap(train))`` over a batch of keys whose
  batch axis is sharded over a :class:`jax.sharding.Mesh`; each device trains its share of the
  seeds, with no communication. One process, all its local devices.
* **Data parallel on one host** (:func:`data_parallel`): one agent whose envs, replay buffers
  and rollouts are split across devices with ``shard_map``; every device computes gradients on
  its own batches and ``TrainState.apply_gradients`` averages them with ``lax.pmean``, so the
  replicas' parameters stay identical. ``config.env_cfg.n_envs`` is the number of envs *per
  device* and ``n_env_steps`` the transitions *per device*: ``D`` devices collect ``D`` times
  as many transitions per update, with a ``D`` times larger global batch.
* **Multi-process / multi-host** (:func:`initialize`, then the same :func:`data_parallel`): one
  process per host (or per accelerator); every process calls :func:`initialize` before JAX
  does anything else, ``jax.devices()`` then lists the devices of all processes and the mesh
  spans them. Every process runs the same program on the same key (the SPMD model): each feeds
  and steps the envs of its own devices (its addressable shard), the gradient ``pmean`` crosses
  processes (gloo collectives on CPU, NCCL on GPUs), and the outputs are global arrays of which
  a process holds its own replicas: :func:`local_replica` reads one of them (the agent states
  are identical), :func:`gather` collects all replicas on every process
  (``jax.experimental.multihost_utils.process_allgather``). Only process 0
  (:func:`is_main_process`) writes files. :func:`train_agent_data_parallel` does all of this
  for a kitae agent; ``kitae train ... --distributed`` runs it from the command line.

The process settings (:func:`resolve_settings`) are the coordinator's ``host:port`` (process 0
listens there), the number of processes and this process's id, from explicit arguments, else
``KITAE_COORDINATOR_ADDRESS`` / ``KITAE_NUM_PROCESSES`` / ``KITAE_PROCESS_ID``, else a cluster
that ``jax.distributed.initialize()`` detects by itself (SLURM). Launch commands::

    # this host's devices only (e.g. its GPUs), one process
    kitae train ppo --env gymnax:CartPole-v1 --distributed --num-processes 1

    # two local processes (on a machine with several GPUs, give each its own with
    # CUDA_VISIBLE_DEVICES=<i>; on CPU each process is one device)
    kitae train ppo --env gymnax:CartPole-v1 --distributed \\
        --coordinator-address 127.0.0.1:12345 --num-processes 2 --process-id 0 &
    kitae train ppo --env gymnax:CartPole-v1 --distributed \\
        --coordinator-address 127.0.0.1:12345 --num-processes 2 --process-id 1

    # SLURM: one task per node, settings detected from SLURM's variables
    srun --nodes 2 --ntasks-per-node 1 kitae train ppo --env gymnax:CartPole-v1 --distributed

From Python, call ``initialize(resolve_settings(...))`` first, then build the agent and call
:func:`train_agent_data_parallel` (or :func:`data_parallel` on a
:func:`~kitae.compiled.make_train` program) on every process.

The command line's distributed run trains in one program: it logs the chunks' metrics and saves
its checkpoint (without replay buffer) at the end, so ``train_cfg.save_frequency`` and
``eval_frequency`` are refused with it; ``kitae resume`` continues such a run in one process.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kitae.compiled import CompiledTrain
from kitae.modules.train_state import averaged_gradients

COORDINATOR_ENV = "KITAE_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "KITAE_NUM_PROCESSES"
PROCESS_ID_ENV = "KITAE_PROCESS_ID"
SLURM_ENV = ("SLURM_JOB_ID", "SLURM_NTASKS")
"""Variables whose presence means a SLURM allocation, which ``jax.distributed.initialize()``
reads by itself."""


def make_mesh(axis_name: str, devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``, every process's)."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (axis_name,))


# ---- processes -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    """Where this process stands in a multi-process run.

    Attributes:
        coordinator_address: ``host:port`` of process 0's coordinator (``None`` with
            ``detect`` or a single process).
        num_processes: the number of processes (``None`` with ``detect``).
        process_id: this process's id, ``0 <= process_id < num_processes`` (``None`` with
            ``detect``).
        detect: let ``jax.distributed.initialize()`` read the cluster's environment (SLURM).
        source: where the settings came from (for messages).
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    detect: bool = False
    source: str = "arguments"

    @property
    def single_process(self) -> bool:
        """One process only: no coordinator, the devices of this host."""
        return not self.detect and self.num_processes == 1


def _int_setting(name: str, value: int | str, low: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if number < low:
        raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= {low}.")
    return number


def resolve_settings(
    coordinator_address: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProcessSettings:
    """The process settings of a multi-process run, checked before anything starts.

    Each of the three settings comes from its argument, else from ``KITAE_COORDINATOR_ADDRESS``,
    ``KITAE_NUM_PROCESSES``, ``KITAE_PROCESS_ID``. Without any of them, a SLURM allocation
    (``SLURM_JOB_ID`` and ``SLURM_NTASKS`` set) is left to ``jax.distributed.initialize()``'s
    own detection. One process (``num_processes=1``) needs no coordinator.

    Args:
        coordinator_address: ``host:port`` of process 0.
        num_processes: the number of processes.
        process_id: this process's id.
        environ: the environment to read (default ``os.environ``).

    Returns:
        The settings.

    Raises:
        ValueError: for settings that are incomplete (naming the missing ones and where to give
            them) or invalid.
    """
    environ = os.environ if environ is None else environ
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    env_names = {
        "coordinator_address": COORDINATOR_ENV,
        "num_processes": NUM_PROCESSES_ENV,
        "process_id": PROCESS_ID_ENV,
    }
    from_env = {k: environ.get(v) or None for k, v in env_names.items()}
    values = {k: given[k] if given[k] is not None else from_env[k] for k in given}
    if all(v is None for v in values.values()):
        if all(environ.get(name) for name in SLURM_ENV):
            return ProcessSettings(detect=True, source="SLURM")
        raise ValueError(
            "a distributed run needs its process settings: give --coordinator-address HOST:PORT, "
            "--num-processes N and --process-id I (or set "
            f"{COORDINATOR_ENV}, {NUM_PROCESSES_ENV}, {PROCESS_ID_ENV}), run it under SLURM "
            "(srun), or use --num-processes 1 for this host's devices alone."
        )
    source = "arguments" if all(given[k] is not None for k in given) else "arguments/environment"
    if all(given[k] is None for k in given):
        source = "environment"
    n = values["num_processes"]
    n = None if n is None else _int_setting("num_processes", n, 1)
    pid = values["process_id"]
    pid = None if pid is None else _int_setting("process_id", pid, 0)
    address = values["coordinator_address"]
    if n == 1 and pid in (None, 0):
        return ProcessSettings(address, 1, 0, source=source)
    resolved = {"coordinator_address": address, "num_processes": n, "process_id": pid}
    missing = [k for k, v in resolved.items() if v is None]
    if missing:
        flags = ", ".join(f"--{k.replace('_', '-')} (or {env_names[k]})" for k in missing)
        raise ValueError(f"incomplete distributed settings: missing {flags}.")
    assert n is not None and pid is not None and address is not None
    if pid >= n:
        raise ValueError(f"process_id={pid} is invalid: it must be < num_processes={n}.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator_address={address!r} is invalid: expected HOST:PORT, e.g. "
            "10.0.0.1:12345 (process 0's host)."
        )
    return ProcessSettings(address, n, pid, source=source)


def initialize(settings: ProcessSettings, timeout_s: int = 300) -> None:
    """Joins this process to the others (``jax.distributed.initialize``), before any JAX work.

    Nothing happens for a single process, or when JAX's distributed runtime is already up. On
    CPU, cross-process collectives use gloo.

    Args:
        settings: from :func:`resolve_settings`.
        timeout_s: seconds to wait for all processes to connect.

    Raises:
        RuntimeError: if JAX already ran something in this process (its backends are then fixed
            to this host), or the processes could not connect in time.
    """
    if settings.single_process or jax.distributed.is_initialized():
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if settings.detect:
        jax.distributed.initialize(initialization_timeout=timeout_s)
    else:
        jax.distributed.initialize(
            coordinator_address=settings.coordinator_address,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=timeout_s,
        )


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes run directories, logs and checkpoints."""
    return jax.process_index() == 0


def all_processes_ok(ok: bool) -> bool:
    """Whether ``ok`` is true on every process (a collective: all processes call it at the same
    point). A process that failed to prepare (e.g. process 0 and its run directory) reports it
    here, instead of leaving the others waiting in the next collective."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def local_replica(tree: Any) -> Any:
    """The first replica this process holds of a data-parallel output (leaves ``[D, ...]``,
    sharded over the device axis), as NumPy arrays without the device axis.

    Agent states are identical across replicas, so every process reads the same values here.
    """

    def first(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return np.asarray(x.addressable_shards[0].data)[0]
        return np.asarray(x)[0]

    return jax.tree.map(first, tree)


def gather(tree: Any) -> Any:
    """Every replica of a data-parallel output, as NumPy arrays ``[D, ...]`` on every process
    (a collective with several processes: all of them call it)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


# ---- sharded programs ------------------------------------------------------------------------


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

    Returns:
        ``jit(vmap(train))``'s outputs, their seed axis sharded over the mesh.

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
) -> Callable[..., Any]:
    """One agent trained on all devices of ``mesh``, gradients averaged across them.

    With several processes, every process calls the returned function with the same arguments;
    each runs the replicas of its own devices.

    Args:
        train: the compiled program of one replica (:func:`kitae.compiled.make_train` or
            :func:`kitae.compiled.make_agent_train`).
        mesh: the device mesh (default: every device of every process along ``axis_name``).
        axis_name: the mesh axis of replicas.

    Returns:
        A jitted ``run(key, hyperparams=None, agent_state=None, env_steps=0) -> (runner,
        metrics)``: ``agent_state`` replaces the state that ``train`` would initialise from
        ``key`` and ``env_steps`` starts the replicas' counters (schedules continue from there).
        The outputs have a leading device axis ``[D, ...]`` (each replica's envs, buffer and
        metrics; the agent states are identical across ``D``), sharded over the mesh.
    """
    mesh = mesh or make_mesh(axis_name)
    train = copy.copy(train)  # the caller's trainer stays usable on one device
    train.axis_name = axis_name

    def replica(key, hyperparams, agent_state, env_steps):
        with averaged_gradients(axis_name):
            runner = train.init(key, hyperparams, agent_state)
            runner = runner.replace(env_steps=env_steps.astype(runner.env_steps.dtype))
            out = train.run(runner)
        return jax.tree.map(lambda x: x[None], out)

    sharded = jax.shard_map(
        replica,
        mesh=mesh,
        in_specs=(PartitionSpec(),) * 4,
        out_specs=PartitionSpec(axis_name),
        check_vma=False,
    )
    jitted = jax.jit(sharded)

    def run(
        key: jax.Array,
        hyperparams: dict | None = None,
        agent_state: Any = None,
        env_steps: int = 0,
    ) -> Any:
        # Host values: every process passes the same ones, the program replicates them.
        state = None if agent_state is None else jax.device_get(agent_state)
        steps = np.asarray(env_steps, np.int32)
        with averaged_gradients(axis_name):
            return jitted(jax.device_get(key), hyperparams or {}, state, steps)

    return run


def _combine_replicas(metrics: Any, chunk: int) -> dict[str, float]:
    """One log row from every replica's metrics ``[D, C]`` at ``chunk``: episode statistics
    weighted by each replica's episodes, update diagnostics averaged."""
    n = np.asarray(metrics.n_episodes[:, chunk], np.float64)
    total = float(n.sum())

    def weighted(x: Any) -> float:
        x = np.asarray(x[:, chunk], np.float64)
        return float(np.sum(np.where(n > 0, x, 0.0) * n) / total) if total else float("nan")

    info = {}
    for name, values in metrics.info.items():
        column = np.asarray(values[:, chunk], np.float64)
        info[name] = float(np.nanmean(column)) if np.isfinite(column).any() else float("nan")
    return {
        "episode_return": weighted(metrics.episode_return),
        "episode_length": weighted(metrics.episode_length),
        "n_episodes": total,
        **info,
    }


def train_agent_data_parallel(
    agent: Any,
    env: Any,
    n_env_steps: int | None = None,
    *,
    mesh: Mesh | None = None,
    log_interval: int | None = None,
) -> dict[str, Any]:
    """Trains ``agent`` in place, data parallel over every device of every process.

    Every process calls it with the same agent (same config and seed) and env. Each of the
    ``D`` replicas runs ``config.env_cfg.n_envs`` envs for ``n_env_steps`` transitions of its own
    (the agent's counters and schedules are per replica, as in a one-device run); their
    gradients are averaged at every update. Afterwards every process holds the trained state in
    ``agent.state``; process 0 logs one ``train`` row per chunk to ``agent.logger`` (episode
    statistics over all replicas, ``total_env_steps`` = ``D`` x ``env_steps``).

    Args:
        agent: a kitae agent whose config describes ``env``.
        env: a JAX env (gymnax, Brax...).
        n_env_steps: transitions per replica (default ``train_cfg.n_env_steps``).
        mesh: the device mesh (default: all devices, one axis ``"data"``).
        log_interval: transitions per log row, per replica (default: 1% of the run).

    Returns:
        ``env_steps`` (per replica, the agent's counter), ``total_env_steps``, ``n_updates``,
        ``episodes`` (all replicas), ``n_replicas``, ``n_processes`` and ``train_s``
        (compilation included).
    """
    from kitae.compiled import make_agent_train

    n_env_steps = agent.config.train_cfg.n_env_steps if n_env_steps is None else n_env_steps
    mesh = mesh or make_mesh("data")
    axis_name = mesh.axis_names[0]
    n_replicas = int(mesh.shape[axis_name])
    trainer = make_agent_train(
        agent, env, n_env_steps, log_interval=log_interval, initial_env_steps=agent.env_steps
    )
    run = data_parallel(trainer, mesh, axis_name)
    agent._update_key, key = jax.random.split(agent._update_key)
    start = time.perf_counter()
    runner, metrics = run(key, None, agent.state, agent.env_steps)
    rows = gather(metrics)
    train_s = time.perf_counter() - start
    state = local_replica(runner.agent_state)
    env_steps = int(local_replica(runner.env_steps))
    n_updates = int(np.asarray(rows.n_updates[0]).sum())
    if is_main_process():
        for chunk in range(rows.env_steps.shape[1]):
            step = int(rows.env_steps[0, chunk])
            row = _combine_replicas(rows, chunk)
            agent.logger.log("train", step, {**row, "total_env_steps": step * n_replicas})
        agent.logger.flush()
    agent.state = jax.tree.map(jnp.asarray, state)
    agent._acting_state = None
    agent.env_steps = env_steps
    agent.n_updates += n_updates
    return {
        "env_steps": env_steps,
        "total_env_steps": env_steps * n_replicas,
        "n_updates": n_updates,
        "episodes": int(np.asarray(rows.n_episodes).sum()),
        "n_replicas": n_replicas,
        "n_processes": jax.process_count(),
        "train_s": train_s,
    }


__all__ = [
    "ProcessSettings",
    "all_processes_ok",
    "data_parallel",
    "gather",
    "initialize",
    "is_main_process",
    "local_replica",
    "make_mesh",
    "resolve_settings",
    "shard_seeds",
    "train_agent_data_parallel",
]
