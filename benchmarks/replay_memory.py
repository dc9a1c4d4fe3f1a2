"""Replay memory at pixel scale: kitae's frame-stack replay buffer against flashbax's flat buffer.

Atari-shaped transitions (``uint8[4, 84, 84]`` frame stacks from ``--n-envs`` envs, episodes of
``--episode-length`` steps with zero-padded stacks at their starts). For each buffer one JSON line
per configuration: bytes per transition (its state's arrays over the transitions it holds), the
resident memory it added to the process (RSS after filling it, minus before building it), the
add time per vector step (one step at a time, as the compiled loop adds, and for kitae also
without its check of the rebuilt stacks; and 64 steps at once, per vector step, as the gymnasium
loop flushes its staging), and the sample time of batches of 32 and 256 transitions with their
stacked observations and next observations (median of ``--repeats`` jitted calls on the full
buffer).

* ``kitae-frame-stack``: :class:`kitae.frame_replay.FrameStackReplayBuffer` at ``--capacity``
  (1M by default), filled through ``add_batch`` (1024 vector steps a call, the check of the
  rebuilt stacks off), then timed with the check on, as agents run it (the line reports
  ``mismatches``, 0 when every observation of the timed adds is rebuilt exactly);
  ``kitae-frame-stack-prioritized`` samples the same storage proportionally to priorities.
* ``flashbax-flat``: ``flashbax.make_flat_buffer`` storing the same observation stacks per
  timestep (its next observation is the next timestep's), at ``--flashbax-capacity``: 250k by
  default, because 1M stacks take 28 GB and this machine has 24 GB. Its sample time does not
  depend on the capacity (a gather of ``B`` rows). It runs in a subprocess of this script, with
  ``--flashbax-python`` (a venv with flashbax: ``python3 -m venv /tmp/fbx &&
  /tmp/fbx/bin/pip install flashbax psutil``), after kitae's buffer is freed.

Usage::

    python benchmarks/replay_memory.py                       # 1M kitae, 250k flashbax
    python benchmarks/replay_memory.py --capacity 250000 --flashbax-capacity 250000
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FRAMES = 4
FRAME = (84, 84)
STAGED = 64
"""Vector steps the gymnasium loop stages before one write (``OffPolicyAgent.STAGING_STEPS``)."""


def rss() -> int:
    """Resident set size of this process, bytes."""
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which blocks until its result is ready), seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample_time(sample, state: Any, repeats: int) -> float:
    """Median time of the jitted ``sample(state, key)`` on fresh keys, compilation excluded."""
    import jax

    keys = iter(jax.random.split(jax.random.PRNGKey(0), repeats + 1))
    jax.block_until_ready(sample(state, next(keys)))
    return median_time(lambda: jax.block_until_ready(sample(state, next(keys))), repeats)


def stream(jnp, start: Any, k: int, n_envs: int, length: int):
    """``k`` vector steps of the synthetic stream from per-env step ``start`` (traced).

    Env ``e`` at its global step ``i`` is at step ``t = i % length`` of episode ``i // length``;
    its frame is filled with a value of ``(e, episode, t)``, never 0, and its stacks are
    zero-padded before the episode's first frame. Returns ``(obs, next_obs, done)`` with
    ``[k, n_envs, ...]`` leaves.
    """
    i = start + jnp.arange(k)[:, None]  # [k, 1]
    e = jnp.arange(n_envs)[None, :]
    episode, t = i // length, i % length

    def stacks(step):
        u = step[..., None] + jnp.arange(-N_FRAMES + 1, 1)  # [k, n, 4]
        value = ((e[..., None] * 7 + episode[..., None] * 13 + u) % 251 + 1).astype(jnp.uint8)
        value = jnp.where(u >= 0, value, jnp.uint8(0))
        return jnp.broadcast_to(value[..., None, None], (*value.shape, *FRAME))

    return stacks(t), stacks(t + 1), jnp.broadcast_to(t == length - 1, (k, n_envs))


def kitae_lines(args) -> list[dict[str, Any]]:
    import jax
    import jax.numpy as jnp

    from kitae.buffer import Experience
    from kitae.frame_replay import (
        PrioritizedFrameStackReplayBuffer,
        PrioritizedFrameStackReplayBufferState,
        make_frame_stack_replay_buffer,
    )

    n = args.n_envs
    jnp.zeros(()).block_until_ready()  # the runtime's own memory is not the buffer's
    before = rss()
    buffer = make_frame_stack_replay_buffer(args.capacity, n, N_FRAMES)
    unchecked = dataclasses.replace(buffer, check=False)

    def experience(obs, nxt, done):
        k = done.shape[0]
        return Experience(
            observation=obs,
            action=jnp.zeros((k, n), jnp.int32),
            reward=jnp.ones((k, n), jnp.float32),
            done=done,
            next_observation=nxt,
            log_prob=jnp.zeros((k, n), jnp.float32),
            truncated=jnp.zeros((k, n), bool),
        )

    example = jax.tree.map(lambda x: x[0], experience(*stream(jnp, 0, 1, n, args.episode_length)))
    state = jax.jit(buffer.init)(example)
    jax.block_until_ready(state)
    allocated = rss()

    def steps(start, k):
        return experience(*stream(jnp, start, k, n, args.episode_length))

    def add_k(k, buf=buffer):
        return jax.jit(lambda state, start: buf.add_batch(state, steps(start, k)), donate_argnums=0)

    # Filling skips the check (it doubles the work); the timed adds run with it, as agents do.
    fill_k = min(1024, buffer.slots_per_env)
    add_fill, add_one, add_staged = add_k(fill_k, unchecked), add_k(1), add_k(STAGED)
    start = time.perf_counter()
    written = 0
    while written < buffer.slots_per_env + args.episode_length:  # full, and wrapped once
        state = add_fill(state, jnp.asarray(written, jnp.int32))
        written += fill_k
    jax.block_until_ready(state)
    fill_s = time.perf_counter() - start
    filled = rss()

    position = {"step": written}

    def one(add, k):
        def run():
            nonlocal state
            state = add(state, jnp.asarray(position["step"], jnp.int32))
            jax.block_until_ready(state)
            position["step"] += k

        return run

    one(add_one, 1)()  # compile
    add_one_s = median_time(one(add_one, 1), args.repeats)
    add_unchecked = add_k(1, unchecked)
    one(add_unchecked, 1)()
    add_unchecked_s = median_time(one(add_unchecked, 1), args.repeats)
    one(add_staged, STAGED)()
    add_staged_s = median_time(one(add_staged, STAGED), max(3, args.repeats // 10)) / STAGED

    held = int(np.sum(np.asarray(buffer.valid_starts(state))))
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    common = {
        "capacity": args.capacity,
        "n_envs": n,
        "observation": [N_FRAMES, *FRAME],
        "dtype": "uint8",
        "episode_length": args.episode_length,
        "state_bytes": nbytes,
        "transitions_held": held,
        "bytes_per_transition": nbytes / held,
        "bytes_per_slot": nbytes / args.capacity,
        "rss_delta_bytes": filled - before,
        "rss_after_init_bytes": allocated - before,
        "fill_s": fill_s,
        "add_one_step_s": add_one_s,
        "add_one_step_unchecked_s": add_unchecked_s,
        "add_staged_per_step_s": add_staged_s,
        "mismatches": int(state.mismatches),
    }
    # The same storage, also sampled by priority (all priorities 1 on transition slots).
    prioritized = PrioritizedFrameStackReplayBuffer(
        capacity=args.capacity, n_envs=n, n_frames=N_FRAMES
    )
    prioritized_state = PrioritizedFrameStackReplayBufferState(
        **{f: getattr(state, f) for f in state.__dataclass_fields__},
        priorities=state.step.astype(jnp.float32),
        max_priority=jnp.ones((), jnp.float32),
        updates=jnp.zeros((), jnp.int32),
    )
    lines = []
    for name, sampler, sample_state in (
        ("kitae-frame-stack", buffer, state),
        ("kitae-frame-stack-prioritized", prioritized, prioritized_state),
    ):
        record = {"buffer": name, **common}
        for batch in (32, 256):
            sample = jax.jit(lambda s, key, b=batch, buf=sampler: buf.sample(s, key, b))
            record[f"sample_{batch}_s"] = sample_time(sample, sample_state, args.repeats)
        lines.append(record)
    return lines


def flashbax_lines(args) -> list[dict[str, Any]]:
    import flashbax
    import jax
    import jax.numpy as jnp

    n = args.n_envs
    capacity = args.flashbax_capacity
    jnp.zeros(()).block_until_ready()
    before = rss()
    buffers = {
        b: flashbax.make_flat_buffer(
            max_length=capacity,
            min_length=2,
            sample_batch_size=b,
            add_sequences=True,
            add_batch_size=n,
        )
        for b in (32, 256)
    }
    buffer = buffers[32]

    def steps(start, k):
        obs, _, done = stream(jnp, start, k, n, args.episode_length)
        swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  (flashbax: [envs, time, ...])
        return {
            "observation": swap(obs),
            "action": jnp.zeros((n, k), jnp.int32),
            "reward": jnp.ones((n, k), jnp.float32),
            "done": swap(done),
        }

    example = jax.tree.map(lambda x: x[0, 0], steps(0, 1))
    state = jax.jit(buffer.init)(example)
    jax.block_until_ready(state)
    allocated = rss()

    def add_k(k):
        return jax.jit(lambda state, start: buffer.add(state, steps(start, k)), donate_argnums=0)

    per_env = capacity // n
    fill_k = min(1024, per_env)
    add_fill, add_one, add_staged = add_k(fill_k), add_k(1), add_k(STAGED)
    start = time.perf_counter()
    written = 0
    while written < per_env + args.episode_length:
        state = add_fill(state, jnp.asarray(written, jnp.int32))
        written += fill_k
    jax.block_until_ready(state)
    fill_s = time.perf_counter() - start
    filled = rss()
    position = {"step": written}

    def one(add, k):
        def run():
            nonlocal state
            state = add(state, jnp.asarray(position["step"], jnp.int32))
            jax.block_until_ready(state)
            position["step"] += k

        return run

    one(add_one, 1)()
    add_one_s = median_time(one(add_one, 1), args.repeats)
    one(add_staged, STAGED)()
    add_staged_s = median_time(one(add_staged, STAGED), max(3, args.repeats // 10)) / STAGED
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    record = {
        "buffer": "flashbax-flat",
        "capacity": capacity,
        "n_envs": n,
        "observation": [N_FRAMES, *FRAME],
        "dtype": "uint8",
        "episode_length": args.episode_length,
        "state_bytes": nbytes,
        "transitions_held": capacity,
        "bytes_per_transition": nbytes / capacity,
        "bytes_per_slot": nbytes / capacity,
        "rss_delta_bytes": filled - before,
        "rss_after_init_bytes": allocated - before,
        "fill_s": fill_s,
        "add_one_step_s": add_one_s,
        "add_staged_per_step_s": add_staged_s,
    }
    for b, sampler in buffers.items():
        record[f"sample_{b}_s"] = sample_time(jax.jit(sampler.sample), state, args.repeats)
    return [record]


def flashbax_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("flashbax", "jax", "jaxlib", "chex", "flax")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--flashbax-capacity", type=int, default=250_000)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--episode-length", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", choices=("kitae", "flashbax"), default=None)
    parser.add_argument(
        "--flashbax-python",
        default=os.environ.get("FLASHBAX_PY", "/tmp/fbx/bin/python"),
        help="a Python with flashbax installed (its own venv)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import emit

    if args.only == "flashbax":
        for line in flashbax_lines(args):
            emit(line, flashbax_versions())
        return
    if args.only in (None, "kitae"):
        for line in kitae_lines(args):
            emit(line)
        gc.collect()
    if args.only is None:
        command = [args.flashbax_python, __file__, "--only", "flashbax"]
        for flag in ("flashbax_capacity", "n_envs", "episode_length", "repeats"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
