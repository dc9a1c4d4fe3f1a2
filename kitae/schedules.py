"""Schedules (exploration, learning rate) and update-count arithmetic.

Learning-rate schedules inside optimizers use ``optax`` directly; :class:`LinearSchedule` exists
because exploration rates are also evaluated on the host, once per env step, where an optax
schedule would dispatch a JAX computation each call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from kitae.config import AlgoConfig


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


def off_policy_min_transitions(config: AlgoConfig) -> int:
    """Transitions an off-policy run must hold before its first update: ``batch_size``, and at
    least one full window of ``algo_params.sequence_length`` (or else ``algo_params.n_step``)
    transitions per env when samples are windows."""
    p = config.algo_params
    window = getattr(p, "sequence_length", None) or getattr(p, "n_step", 1)
    return max(config.update_cfg.batch_size, config.env_cfg.n_envs * max(int(window), 1))


def off_policy_gradient_steps(config: AlgoConfig) -> int:
    """Gradient steps of a whole off-policy run of ``config.train_cfg.n_env_steps``:
    :func:`off_policy_update_count` (with ``algo_params.skip_steps`` / ``start_step``) times
    ``update_cfg.n_epochs``."""
    p = config.algo_params
    n_updates = off_policy_update_count(
        config.train_cfg.n_env_steps,
        config.env_cfg.n_envs,
        int(getattr(p, "skip_steps", 1)),
        int(getattr(p, "start_step", -1)),
        off_policy_min_transitions(config),
    )
    return n_updates * config.update_cfg.n_epochs


def on_policy_update_count(n_env_steps: int, rollout_size: int) -> int:
    """Number of updates an on-policy run performs: one per full rollout of ``rollout_size``."""
    return n_env_steps // rollout_size
