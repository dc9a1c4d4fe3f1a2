"""Schedules (exploration, learning rate) and update-count arithmetic.

Learning-rate schedules inside optimizers use ``optax`` directly; :class:`LinearSchedule` exists
because exploration rates are also evaluated on the host, once per env step, where an optax
schedule would dispatch a JAX computation each call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class LinearSchedule:
    """``start -> end`` linearly over ``duration`` steps, then constant.

    Calling it with a Python number returns a Python float (no JAX dispatch); with a JAX array
    (e.g. under ``jit``) it returns a JAX scalar.
    """

    start: float
    end: float
    duration: float

    def __call__(self, step):
        if isinstance(step, jax.Array):
            frac = jnp.clip(step / max(self.duration, 1e-12), 0.0, 1.0)
            return self.start + frac * (self.end - self.start)
        frac = min(max(float(step) / max(self.duration, 1e-12), 0.0), 1.0)
        return float(self.start + frac * (self.end - self.start))


def off_policy_update_count(
    n_env_steps: int, n_envs: int, skip_steps: int, start_step: int, batch_size: int
) -> int:
    """Number of updates an off-policy run performs.

    An update is due each time the transition counter passes a multiple of ``skip_steps``,
    once at least ``max(start_step, batch_size)`` transitions were collected.
    """
    n_vector_steps = math.ceil(n_env_steps / n_envs)
    first_step = max(start_step, batch_size, 1)
    first_vector_step = math.ceil(first_step / n_envs)
    if first_vector_step > n_vector_steps:
        return 0
    return (n_vector_steps * n_envs) // skip_steps - (
        (first_vector_step - 1) * n_envs
    ) // skip_steps


def on_policy_update_count(n_env_steps: int, rollout_size: int) -> int:
    """Number of updates an on-policy run performs: one per full rollout of ``rollout_size``."""
    return n_env_steps // rollout_size
