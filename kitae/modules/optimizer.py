"""Optimizers built from an :class:`~kitae.config.UpdateConfig` with optax.

The learning rate is an injected hyperparameter (``optax.inject_hyperparams``): it lives in the
optimizer state, so a compiled training program can set it from a traced value and a sweep can
``vmap`` over learning rates without recompiling (see :func:`set_learning_rate`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from kitae.config import UpdateConfig
from kitae.modules.train_state import TrainState


def _adam(learning_rate: float, eps: float, total_steps: int, anneal: bool):
    parts = [optax.scale_by_adam(eps=eps), optax.scale_by_learning_rate(learning_rate)]
    if anneal:
        parts.append(optax.scale_by_schedule(optax.linear_schedule(1.0, 0.0, total_steps)))
    return optax.chain(*parts)


def make_optimizer(
    update_cfg: UpdateConfig, total_gradient_steps: int, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam with optional global-norm clipping and linear learning-rate annealing.

    Args:
        update_cfg: ``learning_rate``, ``learning_rate_annealing`` and ``max_grad_norm``.
        total_gradient_steps: the run's number of gradient steps; with annealing the learning
            rate reaches 0 after exactly that many.
        eps: Adam epsilon.
    """
    adam = optax.inject_hyperparams(_adam, static_args=("eps", "total_steps", "anneal"))(
        learning_rate=update_cfg.learning_rate,
        eps=eps,
        total_steps=max(int(total_gradient_steps), 1),
        anneal=update_cfg.learning_rate_annealing,
    )
    if update_cfg.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(update_cfg.max_grad_norm), adam)


def _is_injected(node: Any) -> bool:
    return hasattr(node, "hyperparams") and isinstance(node.hyperparams, dict)


def set_learning_rate(opt_state: Any, learning_rate: float | jax.Array) -> Any:
    """Returns ``opt_state`` with every injected ``learning_rate`` set to ``learning_rate``.

    Raises:
        ValueError: if the optimizer state has no injected learning rate.
    """
    found = []

    def replace(node: Any) -> Any:
        if _is_injected(node) and "learning_rate" in node.hyperparams:
            found.append(True)
            value = jnp.asarray(learning_rate, node.hyperparams["learning_rate"].dtype)
            return node._replace(hyperparams={**node.hyperparams, "learning_rate": value})
        return node

    new_state = jax.tree.map(replace, opt_state, is_leaf=_is_injected)
    if not found:
        raise ValueError(
            "the optimizer state has no injected learning_rate: build the optimizer with "
            "kitae.modules.optimizer.make_optimizer (optax.inject_hyperparams) to sweep it."
        )
    return new_state


def get_learning_rate(opt_state: Any) -> jax.Array:
    """The injected base learning rate of ``opt_state`` (before annealing)."""
    for node in jax.tree.leaves(opt_state, is_leaf=_is_injected):
        if _is_injected(node) and "learning_rate" in node.hyperparams:
            return node.hyperparams["learning_rate"]
    raise ValueError("the optimizer state has no injected learning_rate.")


def learning_rate_metrics(state: Any) -> dict[str, float]:
    """The base learning rate of every :class:`~kitae.modules.train_state.TrainState` in
    ``state`` (read from its optimizer state): ``{"learning_rate": lr}`` for a single one,
    ``{"learning_rate/<path>": lr, ...}`` for several. States without an injected learning
    rate (or without optimizer state) are left out."""
    is_state = lambda node: isinstance(node, TrainState)
    found = [
        (path, node)
        for path, node in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_state)[0]
        if is_state(node)
    ]
    rates = {}
    for path, train_state in found:
        try:
            rate = float(get_learning_rate(train_state.opt_state))
        except ValueError:
            continue
        name = jax.tree_util.keystr(path, simple=True, separator="/") if len(found) > 1 else ""
        rates[f"learning_rate/{name}" if name else "learning_rate"] = rate
    return rates
