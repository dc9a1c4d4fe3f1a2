"""C51: categorical distributional Q-learning, with the DQN options (double-Q, dueling, n-step,
prioritized replay, hard or Polyak targets, the LSTM torso).

See "A Distributional Perspective on Reinforcement Learning", Bellemare et al., 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from kitae.algos import r2d2
from kitae.algos.dqn import (
    DQN,
    BootstrapTransition,
    TorsoParams,
    bootstrap_transition,
    build_q_network,
    epsilon_greedy,
    is_recurrent,
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
class C51Params(TorsoParams):
    """C51 hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` and
    :class:`~kitae.algos.dqn.TorsoParams` for the shared ones; ``torso="lstm"`` learns each
    replayed window's steps with the categorical loss below).

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
    """The categorical Q-network's TrainState (logits ``[B, A, n_atoms]``); with
    ``torso="lstm"`` the categorical head on an LSTM core (see
    :class:`~kitae.algos.r2d2.RecurrentHeadNetwork`)."""
    p: C51Params = config.algo_params
    if is_recurrent(config):
        network = r2d2.build_recurrent_head_network(
            config, categorical_qvalue_factory, preprocess_fn, n_atoms=p.n_atoms
        )
        return r2d2.train_state_recurrent_head(key, config, network, (), tabulate)
    network = build_q_network(config, categorical_qvalue_factory, preprocess_fn, n_atoms=p.n_atoms)
    inputs = [config.env_cfg.observation_space]
    return q_network_train_state(key, config, network, inputs, tabulate)


def q_values_factory(config: AlgoConfig) -> Callable:
    """``q_values_fn(state, params, key, observations [B, ...]) -> [B, A]``: the expected values
    of the categorical distributions of ``params`` (``key`` is unused)."""
    p: C51Params = config.algo_params

    def q_values_fn(state: TrainState, params: Params, key: jax.Array, observations: Any):
        del key
        atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
        return categorical_q_values(state.apply_fn(params, observations), atoms)

    return q_values_fn


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy on the expected values of the categorical distributions.

    With ``torso="lstm"``: ``explore_fn(state, key, observations, core_state, exploration) ->
    (actions, log_probs, core_state)`` (see
    :func:`kitae.algos.r2d2.recurrent_head_explore_factory`).
    """
    q_values_fn = q_values_factory(config)
    if is_recurrent(config):
        return r2d2.recurrent_head_explore_factory(q_values_fn)

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = q_values_fn(state, state.params, key, observations)
        return epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def batch_factory(config: AlgoConfig) -> Callable:
    """``batch_fn(state, key, t: BootstrapTransition, next_target, mask_tp1) -> C51Batch``: the
    target network's distribution at ``next_target`` ``[B, ...]``, at the bootstrap action (the
    online argmax of the means at ``t.next_observation`` when double-Q, else the target's), among
    the valid actions of ``mask_tp1`` (``bool[B, A]`` or ``None``)."""
    p: C51Params = config.algo_params
    q_values_fn = q_values_factory(config)

    def batch_fn(
        state: TrainState,
        key: jax.Array,
        t: BootstrapTransition,
        next_target: Any,
        mask_tp1: jax.Array | None,
    ) -> C51Batch:
        atoms = categorical_atoms(p.v_min, p.v_max, p.n_atoms)
        logits_target = state.apply_fn(state.target_params, next_target)
        q_online = None
        if p.double_q:
            q_online = q_values_fn(state, state.params, key, t.next_observation)
        next_actions = select_bootstrap_actions(
            q_online, categorical_q_values(logits_target, atoms), p.double_q, mask_tp1
        )
        logits_next = logits_target[jnp.arange(next_actions.shape[0]), next_actions]
        probs = jax.lax.stop_gradient(jax.nn.softmax(logits_next, axis=-1))
        return C51Batch(
            t.observation, t.action, t.reward, t.discount, probs, jnp.ones_like(t.reward)
        )

    return batch_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> C51Batch``: the target
    network's distribution at the bootstrap action (online argmax of the means when double-Q).

    With ``torso="lstm"``: R2D2's windows ``[B, L]`` with their stored core states (the targets
    need the unrolls, so they are computed in the update step; see
    :func:`kitae.algos.r2d2.process_experience_factory`).
    """
    if is_recurrent(config):
        return r2d2.process_experience_factory(config)
    p: C51Params = config.algo_params
    batch_fn = batch_factory(config)

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> C51Batch:
        t = bootstrap_transition(experience, p.gamma)
        return batch_fn(state, key, t, t.next_observation, action_mask(t.next_observation))

    return process_experience_fn


def c51_sample_losses(config: AlgoConfig) -> Callable:
    """``sample_losses(state, params, key, C51Batch) -> (losses [B], losses [B], info)``: the
    cross-entropies to the projected targets (also the priorities)."""
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

    return sample_losses


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, C51Batch) -> (state, info)``: one gradient step on the
    cross-entropy to the projected target; priorities are the per-sample losses.

    With ``torso="lstm"``: on R2D2's windows, the same loss on each learned step of the unrolled
    core outputs (see :func:`kitae.algos.r2d2.recurrent_head_sample_losses`).
    """
    sample_losses = c51_sample_losses(config)
    if is_recurrent(config):
        sample_losses = r2d2.recurrent_head_sample_losses(
            config, batch_factory(config), sample_losses
        )
    return q_learning_update_step(config.algo_params, sample_losses)


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
