"""The learner state: a flax ``TrainState`` that also carries target-network parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import optax
from flax import struct
from flax.training import train_state

from kitae.types import Params


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` with ``target_params``.

    ``step`` counts gradient steps. ``target_params`` is ``None`` for networks without a target.
    """

    target_params: Params | None = None

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """``flax`` ``apply_gradients``; inside :func:`averaged_gradients` the gradients are first
        averaged over that mesh axis with ``lax.pmean`` (data-parallel training)."""
        if _GRADIENT_AXES:
            grads = jax.lax.pmean(grads, _GRADIENT_AXES[-1])
        return super().apply_gradients(grads=grads, **kwargs)

    def update_target(self, tau: float | jax.Array = 1.0, period: int = 1) -> TrainState:
        """Moves ``target_params`` toward ``params`` every ``period`` gradient steps.

        ``tau = 1`` is a hard copy, ``tau < 1`` a Polyak average
        ``target <- tau * params + (1 - tau) * target``. The update happens when
        ``self.step % period == 0``; call it right after ``apply_gradients``.
        """
        return self.replace(
            target_params=polyak_update(self.params, self.target_params, tau, self.step, period)
        )


_GRADIENT_AXES: list[str] = []


@contextlib.contextmanager
def averaged_gradients(axis_name: str) -> Iterator[None]:
    """While tracing inside this context, every ``TrainState.apply_gradients`` averages its
    gradients over the named mesh axis, so replicas of one agent stay identical."""
    _GRADIENT_AXES.append(axis_name)
    try:
        yield
    finally:
        _GRADIENT_AXES.pop()


def polyak_update(
    params: Any,
    target_params: Any,
    tau: float | jax.Array,
    step: jax.Array | int = 0,
    period: int = 1,
) -> Any:
    """``tau * params + (1 - tau) * target_params`` when ``step % period == 0``, else the target.

    Uses ``optax.incremental_update`` and ``optax.periodic_update``.
    """
    new_target = optax.incremental_update(params, target_params, tau)
    if period == 1:
        return new_target
    return optax.periodic_update(new_target, target_params, step, period)


class AgentState(struct.PyTreeNode):
    """Base for multi-network agent states: subclass with one ``TrainState`` field per network."""
