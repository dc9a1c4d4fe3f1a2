"""Shared pieces of kitae's benchmark scripts: machine description and the JSON line."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

EVAL_EPISODES = 20
EVAL_SEED = 10_000
"""Greedy evaluation: 20 episodes of gymnasium CartPole-v1 reset with seeds 10000..10019."""


def machine() -> dict[str, Any]:
    """CPU model, core count and JAX backend of this machine."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def versions() -> dict[str, str]:
    import flax
    import gymnasium
    import jax
    import optax

    import kitae

    return {
        "kitae": kitae.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "gymnasium": gymnasium.__version__,
    }


def emit(record: dict[str, Any]) -> None:
    """Prints one JSON line with the machine, versions and load average appended."""
    record = dict(record)
    record["loadavg"] = list(os.getloadavg())
    record["machine"] = machine()
    record["versions"] = versions()
    print(json.dumps(record), flush=True)
