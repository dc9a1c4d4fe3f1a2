"""C51: categorical distributional Q-learning, with the DQN options (double-Q, dueling, n-step,
prioritized replay, hard or Polyak targets).

See "A Distributional Perspective on Reinforcement Learning", Bellemare et al., 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from kitae.algos.dqn import (
    DQN,
    QLearningParams,
    bootstrap_transition,
    build_q_network,
    epsilon_greedy,
    q_learning_update_step,
    q_network_train_state,
    select_bootstrap_actions,
)
from kitae.buffer import Experience
from kitae.config import AlgoConfig, check_int_param
from kitae.distributional import categorical_atoms, categorical_q_values, categorical_td_loss
from kitae.masking import action_mask
from kitae.modules.distributional import categorical_qvalue_factory
from kitae.modules.train_state import TrainState
from kitae.types import Params


@dataclass
class C51Params(QLearningParams):
    """C51 hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` for the shared ones).

    Defaults: 51 atoms (Bellemare et al., 2017) on a ``[-100, 100]`` support, the range of
    Dopamine's classic-control C51 configurations, with kitae's DQN CartPole-v1 schedule.

    Attributes:
        n_atoms: number of atoms of the support.
        v_min: smallest atom.
        v_max: largest atom.
    """

    n_atoms: int = 51
    v_min: float = -100.0
    v_max: float = 100.0

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        check_int_param(self, "n_atoms", 2)
        if not self.v_min < self.v_max:
            raise ValueError(
                f"algo_params.v_min={self.v_min!r} and v_max={self.v_max!r} are invalid: the "
                "support needs v_min < v_max."
            )


class C51Batch(NamedTuple):
    """A processed C51 batch.

    Attributes:
        observation: ``[B, ...]``.
        action: ``[B]``.
        reward: (n-step) rewards ``[B]``.
        discount: bootstrap discounts ``[B]``.
        target_probs: target-network probabilities at the bootstrap actions ``[B, n_atoms]``.
        weight: per-sample loss weights ``[B]``.
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    target_probs: jax.Array
    weight: jax.Array


def train_state_c51_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The categorical Q-network's TrainState (logits ``[B, A, n_atoms]``)."""
    p: C51Params = config.algo_params
    network = build_q_network(config, categorical_qvalue_factory, preprocess_fn, n_atoms=p.n_atoms)
    inputs = [config.env_cfg.observation_space]
    return q_network_train_state(key, config, network, inputs, tabulate)


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy on the expected values of the categorical distributions."""
    p: C51Params = config.algo_params

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
        qvalues = categorical_q_values(state.apply_fn(state.params, observations), atoms)
        return epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> C51Batch``: the target
    network's distribution at the bootstrap action (online argmax of the means when double-Q)."""
    p: C51Params = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> C51Batch:
        del key
        atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
        t = bootstrap_transition(experience, p.gamma)
        logits_target = state.apply_fn(state.target_params, t.next_observation)
        q_online = None
        if p.double_q:
            q_online = categorical_q_values(state.apply_fn(state.params, t.next_observation), atoms)
        next_actions = select_bootstrap_actions(
            q_online,
            categorical_q_values(logits_target, atoms),
            p.double_q,
            action_mask(t.next_observation),
        )
        logits_next = logits_target[jnp.arange(next_actions.shape[0]), next_actions]
        probs = jax.lax.stop_gradient(jax.nn.softmax(logits_next, axis=-1))
        return C51Batch(
            t.observation, t.action, t.reward, t.discount, probs, jnp.ones_like(t.reward)
        )

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, C51Batch) -> (state, info)``: one gradient step on the
    cross-entropy to the projected target; priorities are the per-sample losses."""
    p: C51Params = config.algo_params

    def sample_losses(state: TrainState, params: Params, key: jax.Array, batch: C51Batch):
        del key
        atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
        logits = state.apply_fn(params, batch.observation)
        losses = jax.vmap(categorical_td_loss, in_axes=(0, 0, 0, 0, 0, None))(
            logits,
            batch.action.astype(jnp.int32),
            batch.reward,
            batch.discount,
            batch.target_probs,
            atoms,
        )
        q_taken = categorical_q_values(logits, atoms)[jnp.arange(losses.shape[0]), batch.action]
        return losses, losses, {"qvalue_mean": q_taken.mean()}

    return q_learning_update_step(p, sample_losses)


class C51(DQN):
    """C51 agent (see :class:`C51Params`): epsilon-greedy on the expected values to explore,
    greedy to act."""

    params_type = C51Params
    factories = (
        train_state_c51_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )
