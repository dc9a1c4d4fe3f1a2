"""Checkpoints: the complete training state of an agent on disk, and resuming a run from it.

A checkpoint is a directory of a few files: arrays in flax's msgpack format
(:mod:`flax.serialization`), metadata in JSON; nothing is pickled. Arrays are restored against a
template built from the config (the agent's own state, or the shapes the compiled program
creates), so a checkpoint of another algorithm or of another network is refused with an error
naming what differs.

Layout of a run directory (``<run_dir>/<run_name>`` of an agent built with ``run_dir=``)::

    <run>/config.json, episodes.jsonl, train.jsonl   the logger's files (or .csv, tensorboard/,
                                                     wandb/, eval.* per train_cfg.loggers)
    <run>/checkpoints/latest                         name of the newest complete checkpoint
    <run>/checkpoints/step_000012000/                one checkpoint, named by its env_steps
        meta.json              the manifest: format version, agent class, run name, counters,
                               and every other file with its size and SHA-256
        config.json            the resolved config (kitae.config.config_to_json)
        params.msgpack         the params of every TrainState: all that acting needs
        state.msgpack          the agent state: params, target params, optimizer states, steps
        loop.msgpack           PRNG keys and key pool, episode statistics, unfinished rollout
        buffer.msgpack         the gymnasium loop's replay buffer (optional; a frame-stack
                               buffer, kitae.frame_replay, holds each frame once)
        runner.msgpack         the compiled loop's carry: env states, observations, loop key,
                               counters, traced hyperparameters
        runner_buffer.msgpack  the compiled loop's replay buffer (optional)

Writes are atomic: a checkpoint is written into ``step_<n>.tmp-<id>/`` (every file flushed to
disk), renamed to ``step_<n>/``, then ``latest`` is replaced by an atomic rename. An interrupted
save leaves the previous checkpoints complete and loadable; its ``.tmp`` directory is ignored and
removed by the next save.

Integrity: every file is verified against the manifest when read (written last, the manifest
holds the SHA-256 of the bytes written); a missing, truncated or modified file is a
:class:`CheckpointError` naming the file and the previous checkpoint to resume from instead. A
checkpoint written before hashes existed (format 1) loads with a warning. Every array's declared
shape and dtype are compared with the agent's before the array is built. The classes a
checkpoint's config names are looked up among kitae's own, those of the agent class restoring
it and those registered with :func:`register_agent_class`; no module named in a file is
imported.

Modules: :mod:`kitae.checkpoint.integrity` (the manifest, verified reading, msgpack arrays
checked before they are built), :mod:`kitae.checkpoint.store` (the format on disk, atomic
writes, finding and reading checkpoints), :mod:`kitae.checkpoint.saving` (what a checkpoint of
an agent or of a vmapped compiled run holds) and :mod:`kitae.checkpoint.restoring` (restoring,
resuming, inference).

A checkpoint restores into an agent whose config equals the saved one, except for the loop's
settings (:data:`LOOP_FIELDS`) and for config fields added to kitae after the checkpoint was
written, when they hold their defaults.

Resume semantics: the compiled path (JAX envs) saves its whole carry, so a resumed run continues
bit-identically. A gymnasium env cannot be saved: a resumed gymnasium run continues the agent
(parameters, optimizer, counters, schedules, keys, replay buffer) but starts fresh episodes, reset
with ``config.seed``, and drops an unfinished on-policy rollout (a rollout never spans two envs).
"""

from kitae.checkpoint.integrity import CheckpointError
from kitae.checkpoint.restoring import (
    load_for_inference,
    register_agent_class,
    restore_agent,
    restore_runner,
    resume_agent,
)
from kitae.checkpoint.saving import (
    LOOP_FIELDS,
    checkpoint_interval,
    params_of,
    save_agent,
    save_vmapped,
)
from kitae.checkpoint.store import (
    FORMAT_VERSION,
    find_checkpoint,
    load_params,
    read_config,
    read_meta,
    write_checkpoint,
)

__all__ = [
    "CheckpointError",
    "FORMAT_VERSION",
    "LOOP_FIELDS",
    "checkpoint_interval",
    "find_checkpoint",
    "load_for_inference",
    "load_params",
    "params_of",
    "read_config",
    "read_meta",
    "register_agent_class",
    "restore_agent",
    "restore_runner",
    "resume_agent",
    "save_agent",
    "save_vmapped",
    "write_checkpoint",
]
