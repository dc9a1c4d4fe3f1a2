"""Launches groups of local processes for the multi-process tests (``tests/test_distributed.py``,
``tests/test_cli.py``).

:func:`launch` starts every command of a group at once (a multi-process JAX run only starts
when all its processes have joined), waits for all of them under one deadline, kills the group
if it runs past it, and returns each process's exit status and output; :func:`report` formats
them for an assertion message.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Finished:
    """One launched process, once it ended (or was killed).

    Attributes:
        command: its command line.
        returncode: its exit status (negative: killed by that signal).
        stdout: its standard output.
        stderr: its standard error.
        timed_out: whether the group ran past its deadline and was killed.
    """

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(n_cpu_devices: int = 1, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child JAX process: CPU only, ``n_cpu_devices`` host devices, the
    persistent compilation cache of the test session (see ``tests/conftest.py``)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={n_cpu_devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    for name in ("KITAE_COORDINATOR_ADDRESS", "KITAE_NUM_PROCESSES", "KITAE_PROCESS_ID"):
        env.pop(name, None)
    cache_dir = jax.config.jax_compilation_cache_dir
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env.update(extra or {})
    return env


def launch(
    commands: Sequence[Sequence[str]],
    envs: Sequence[Mapping[str, str]],
    timeout_s: float,
    cwd: str | Path = REPO_ROOT,
) -> list[Finished]:
    """Runs ``commands`` side by side (``envs[i]`` for ``commands[i]``) and waits for all.

    Each process is the leader of its own process group; past ``timeout_s`` (for the whole
    group) the unfinished ones are killed with their children. A process that fails does not
    stop the others: in a multi-process run they fail on their own when a peer is gone.

    Returns:
        One :class:`Finished` per command, in order.
    """
    procs = [
        subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for command, env in zip(commands, envs, strict=True)
    ]
    deadline = time.monotonic() + timeout_s
    finished, killed = [], set()
    for command, proc in zip(commands, procs, strict=True):
        try:
            stdout, stderr = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for other in procs:  # the whole group: the rest would wait for this one
                if other.poll() is None:
                    killed.add(other.pid)
                    os.killpg(other.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        finished.append(
            Finished(list(command), proc.returncode, stdout, stderr, proc.pid in killed)
        )
    return finished


def report(finished: Sequence[Finished], tail: int = 4000) -> str:
    """Every process's command, exit status and the ends of its output, for a failure message."""
    parts = []
    for i, f in enumerate(finished):
        status = "killed after the timeout" if f.timed_out else f"exit status {f.returncode}"
        parts.append(
            f"--- process {i}: {' '.join(f.command)}\n    {status}\n"
            f"--- stdout:\n{f.stdout[-tail:]}\n--- stderr:\n{f.stderr[-tail:]}"
        )
    return "\n".join(parts)


def python_command(*args: str) -> list[str]:
    """``python ARGS`` with this interpreter."""
    return [sys.executable, *args]
