"""Planning with a JAX env's true dynamics: env-state observations and Monte-Carlo tree search.

:mod:`kitae.planning.search` holds the pieces that an agent planning with the env itself needs
(:class:`~kitae.planning.search.PlanningEnv`, the ``mctx`` recurrent function with absorbing
terminal states, :func:`~kitae.planning.search.run_search`); :mod:`kitae.algos.alphazero`
builds AlphaZero on them.
"""

from kitae.planning.search import (
    PlanningEnv,
    SearchEmbedding,
    SearchObservation,
    make_recurrent_fn,
    planning_env,
    run_search,
)

__all__ = [
    "PlanningEnv",
    "SearchEmbedding",
    "SearchObservation",
    "make_recurrent_fn",
    "planning_env",
    "run_search",
]
