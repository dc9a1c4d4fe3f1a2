"""Monte-Carlo tree search over a JAX env's true dynamics, with ``mctx``.

Conventions. A :class:`PlanningEnv` is a :class:`~kitae.envs.jax_env.JaxEnv` whose observations
are :class:`SearchObservation` pairs ``(observation, env_state)``, so that an acting function
that only sees observations can still clone the env state and search from it. Inside the tree,
a node is an :class:`SearchEmbedding` ``(env_state, terminal)``: the env is stepped without
automatic reset, and once a node is terminal it is absorbing: every transition out of it has
reward 0, discount 0 and value 0, and its env state stays frozen. The discount of a transition
is ``gamma * (1 - terminated)`` of that very transition (never the root's discount).
Time-limit truncation does not end a path in the tree: the true dynamics go on.

See "Mastering the game of Go without human knowledge", Silver et al., 2017; "A general
reinforcement learning algorithm that masters chess, shogi, and Go through self-play",
Silver et al., 2018; "Policy improvement by planning with Gumbel", Danihelka et al., 2022.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

try:
    import mctx
except ImportError as err:  # an optional dependency
    raise ImportError("the search needs mctx: pip install 'kitae[planning]'.") from err

from kitae.envs.jax_env import JaxEnv, make_jax_env
from kitae.masking import action_mask, apply_mask

PredictFn = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
"""``predict_fn(net_params, observations [B, ...]) -> (prior_logits [B, A], values [B])``."""

SEARCH_KINDS = ("gumbel", "puct")


class SearchObservation(NamedTuple):
    """What a :class:`PlanningEnv` returns as observation.

    Attributes:
        observation: the env's own observation ``[...]`` (``[B, ...]`` when batched).
        env_state: the env state it was produced by (leaves batched alike).
    """

    observation: jax.Array
    env_state: Any


class SearchEmbedding(NamedTuple):
    """A node of the search tree (leaves ``[B, ...]``).

    Attributes:
        env_state: the env state of the node (frozen once terminal).
        terminal: ``bool[B]``, the node is a terminal state (absorbing).
    """

    env_state: Any
    terminal: jax.Array


@dataclass(frozen=True)
class SearchParams:
    """Settings of one search.

    Attributes:
        num_simulations: simulations per search.
        gamma: discount inside the tree.
        kind: ``"gumbel"`` (``mctx.gumbel_muzero_policy``, Danihelka et al., 2022) or
            ``"puct"`` (``mctx.muzero_policy``: PUCT with Dirichlet root noise, as AlphaZero).
        max_depth: maximum search depth (``None``: ``num_simulations``).
        dirichlet_alpha: PUCT: Dirichlet noise concentration at the root.
        dirichlet_fraction: PUCT: weight of the noise in the root prior.
        pb_c_init: PUCT: exploration constant ``c_1``.
        pb_c_base: PUCT: exploration constant ``c_2``.
        temperature: PUCT: the acted action is sampled from ``visits ** (1 / temperature)``
            (0: the most visited action).
        gumbel_scale: Gumbel: scale of the Gumbel noise (0: deterministic search).
        max_num_considered_actions: Gumbel: root actions kept by sequential halving.
    """

    num_simulations: int = 16
    gamma: float = 0.99
    kind: str = "gumbel"
    max_depth: int | None = None
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    temperature: float = 1.0
    gumbel_scale: float = 1.0
    max_num_considered_actions: int = 16


def _select(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-row ``where`` over two pytrees with leaves ``[B, ...]`` and ``mask: bool[B]``."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, on_true, on_false)


class PlanningEnv(JaxEnv):
    """A :class:`~kitae.envs.jax_env.JaxEnv` whose observations carry the env state.

    ``reset`` and ``step`` return :class:`SearchObservation` observations (``step`` still resets
    automatically; its ``next_observation`` pairs the true last observation with the state
    before the reset). :meth:`model_step` is the transition without reset that a search uses.
    The spaces are those of the wrapped env.
    """

    def observe(self, observation: Any, state: Any) -> SearchObservation:
        """The observation paired with the env state it came from."""
        return SearchObservation(observation, state)

    def model_step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        """One transition of the true dynamics, without automatic reset.

        Returns:
            ``(observation, state, reward, terminated)``; ``terminated`` excludes the time limit.
        """
        observation, state, reward, terminated, _ = self.transition(key, state, action)
        return observation, state, reward, terminated


def planning_env(env: str | Any, params: Any = None) -> PlanningEnv:
    """A :class:`PlanningEnv` from a gymnax id, a gymnax env, a JaxEnv or a PlanningEnv."""
    if isinstance(env, PlanningEnv):
        return env
    jax_env = make_jax_env(env, params)
    return PlanningEnv(jax_env.env, jax_env.params, name=jax_env.name)


def make_recurrent_fn(env: PlanningEnv, predict_fn: PredictFn, gamma: float) -> Callable:
    """The ``mctx`` recurrent function that steps the true env, terminal states absorbing.

    Args:
        env: the env whose dynamics the tree follows.
        predict_fn: the network, ``(net_params, observations [B, ...]) -> (logits, values)``.
        gamma: discount of a non-terminal transition.

    Returns:
        ``recurrent_fn(net_params, key, action [B], embedding) -> (RecurrentFnOutput,
        embedding)``: from a non-terminal node, the env's reward, discount
        ``gamma * (1 - terminated)`` and the network's value (0 when terminated); from a terminal
        node, reward 0, discount 0, value 0 and the same (terminal) node. An action mask in the
        new node's observation sets its invalid actions' prior logits to the masked value, so
        the Gumbel search never expands them; PUCT gives them no exploration bonus but, like
        ``mctx``, masks hard only at the root.
    """

    def recurrent_fn(
        net_params: Any, key: jax.Array, action: jax.Array, embedding: SearchEmbedding
    ) -> tuple[mctx.RecurrentFnOutput, SearchEmbedding]:
        keys = jax.random.split(key, action.shape[0])
        observation, state, reward, terminated = jax.vmap(env.model_step)(
            keys, embedding.env_state, action
        )
        prior_logits, value = predict_fn(net_params, observation)
        prior_logits = apply_mask(prior_logits, action_mask(observation))
        was_terminal = embedding.terminal
        terminal = was_terminal | terminated
        output = mctx.RecurrentFnOutput(
            reward=jnp.where(was_terminal, 0.0, reward),
            discount=jnp.where(terminal, 0.0, gamma).astype(jnp.float32),
            prior_logits=prior_logits,
            value=jnp.where(terminal, 0.0, value),
        )
        return output, SearchEmbedding(_select(was_terminal, embedding.env_state, state), terminal)

    return recurrent_fn


def run_search(
    env: PlanningEnv,
    predict_fn: PredictFn,
    params: SearchParams,
    net_params: Any,
    key: jax.Array,
    observation: SearchObservation,
    greedy: bool | jax.Array = False,
) -> mctx.PolicyOutput:
    """Searches from a batch of root env states with the true dynamics.

    Args:
        env: the env whose dynamics the tree follows.
        predict_fn: the network, ``(net_params, observations [B, ...]) -> (logits, values)``.
        params: the search settings.
        net_params: the network parameters handed to ``predict_fn``.
        key: PRNG key.
        observation: the roots, leaves ``[B, ...]``; an action mask in their observations (see
            :mod:`kitae.masking`) is mctx's ``invalid_actions`` at the root.
        greedy: search without exploration noise (no Dirichlet noise, Gumbel scale 0,
            temperature 0): the action is then the search's own best choice.

    Returns:
        ``mctx.PolicyOutput``: ``action [B]``, ``action_weights [B, A]`` (the improved policy:
        visit frequencies for PUCT, ``softmax(logits + completed Q)`` for Gumbel) and the
        ``search_tree``.
    """
    prior_logits, value = predict_fn(net_params, observation.observation)
    terminal = jnp.zeros(value.shape, bool)
    root = mctx.RootFnOutput(
        prior_logits=prior_logits,
        value=value,
        embedding=SearchEmbedding(observation.env_state, terminal),
    )
    recurrent_fn = make_recurrent_fn(env, predict_fn, params.gamma)
    greedy = jnp.asarray(greedy, bool)
    mask = action_mask(observation.observation)
    invalid_actions = None if mask is None else ~mask
    if params.kind == "gumbel":
        return mctx.gumbel_muzero_policy(
            net_params,
            key,
            root,
            recurrent_fn,
            params.num_simulations,
            max_depth=params.max_depth,
            max_num_considered_actions=params.max_num_considered_actions,
            gumbel_scale=jnp.where(greedy, 0.0, params.gumbel_scale),
            invalid_actions=invalid_actions,
        )
    if params.kind != "puct":
        raise ValueError(f"kind={params.kind!r} is invalid: use one of {SEARCH_KINDS}.")
    return mctx.muzero_policy(
        net_params,
        key,
        root,
        recurrent_fn,
        params.num_simulations,
        max_depth=params.max_depth,
        dirichlet_fraction=jnp.where(greedy, 0.0, params.dirichlet_fraction),
        dirichlet_alpha=params.dirichlet_alpha,
        pb_c_init=params.pb_c_init,
        pb_c_base=params.pb_c_base,
        temperature=jnp.where(greedy, 0.0, params.temperature),
        invalid_actions=invalid_actions,
    )
