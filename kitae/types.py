"""Type aliases shared across kitae.

Conventions: arrays carry a leading batch axis ``[B, ...]`` unless a docstring says otherwise;
rollouts are time-major ``[T, N, ...]`` (time, envs). PRNG keys are raw ``uint32[2]`` keys as
returned by :func:`jax.random.PRNGKey`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax

Params = Mapping[str, Any]
"""A flax parameter tree (``{"params": {...}}``)."""

PRNGKey = jax.Array
"""A raw ``uint32[2]`` JAX PRNG key."""

Agent = Any
"""A kitae agent (a :class:`kitae.agent.BaseAgent`), as the modules it builds on see it: the
loops, checkpoints and evaluation take one as an argument and never import the agent modules."""

AgentState = Any
"""Any pytree returned by a ``train_state_factory`` (usually a :class:`TrainState`)."""

Info = dict[str, jax.Array]
"""Scalar diagnostics returned by update steps (losses, entropies...)."""

ExploreFn = Callable[..., tuple[jax.Array, jax.Array]]
"""``explore_fn(state, key, observations, **hyperparams) -> (actions, log_probs)``."""

ProcessExperienceFn = Callable[[AgentState, PRNGKey, Any], Any]
"""``process_experience_fn(state, key, experience) -> processed_batch``."""

UpdateStepFn = Callable[[AgentState, PRNGKey, Any], tuple[AgentState, Info]]
"""``update_step_fn(state, key, processed_batch) -> (state, info)``."""


class TrainStateFactory(Protocol):
    """``train_state_factory(key, config, *, preprocess_fn, tabulate) -> state``."""

    def __call__(
        self,
        key: PRNGKey,
        config: Any,
        *,
        preprocess_fn: Callable | None = None,
        tabulate: bool = False,
    ) -> AgentState: ...


Factory = Callable[[Any], Callable]
"""``factory(config) -> pure function`` for explore, process-experience and update steps."""
