"""QR-DQN: quantile-regression distributional Q-learning, with the DQN options (double-Q,
dueling, n-step, prioritized replay, hard or Polyak targets, the LSTM torso).

See "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018.
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
from kitae.distributional import qr_dqn_td_loss
from kitae.masking import action_mask
from kitae.modules.distributional import quantile_qvalue_factory
from kitae.modules.train_state import TrainState
from kitae.types import Params


@dataclass
class QRDQNParams(TorsoParams):
    """QR-DQN hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` and
    :class:`~kitae.algos.dqn.TorsoParams` for the shared ones; ``torso="lstm"`` learns each
    replayed window's steps with the quantile Huber loss below).

    Defaults: 50 quantiles (the default of Stable-Baselines3-Contrib's QR-DQN) and ``kappa = 1``
    (Dabney et al., 2018), with kitae's DQN CartPole-v1 schedule and update settings.

    Attributes:
        n_quantiles: number of quantiles ``N`` (at the midpoints ``(2i + 1) / (2N)``).
        kappa: quantile Huber threshold.
    """

    n_quantiles: int = 50
    kappa: float = 1.0

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        check_int_param(self, "n_quantiles", 1)
        if not self.kappa > 0:
            raise ValueError(f"algo_params.kappa={self.kappa!r} is invalid: it must be > 0.")


class QuantileBatch(NamedTuple):
    """A processed quantile Q-learning batch (QR-DQN and IQN).

    Attributes:
        observation: ``[B, ...]``.
        action: ``[B]``.
        reward: (n-step) rewards ``[B]``.
        discount: bootstrap discounts ``[B]``.
        target_quantiles: target-network quantiles at the bootstrap actions ``[B, N']``.
        weight: per-sample loss weights ``[B]``.
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    target_quantiles: jax.Array
    weight: jax.Array


def quantile_batch(
    t: BootstrapTransition, quantiles_tp1: jax.Array, next_actions: jax.Array
) -> QuantileBatch:
    """The :class:`QuantileBatch` of reduced transitions ``t``, with the target quantiles
    ``quantiles_tp1 [B, A, N']`` taken at ``next_actions [B]`` (gradients stopped)."""
    selected = quantiles_tp1[jnp.arange(next_actions.shape[0]), next_actions]
    return QuantileBatch(
        t.observation,
        t.action,
        t.reward,
        t.discount,
        jax.lax.stop_gradient(selected),
        jnp.ones_like(t.reward),
    )


def train_state_qrdqn_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The quantile Q-network's TrainState (quantiles ``[B, A, N]``); with ``torso="lstm"`` the
    quantile head on an LSTM core (see :class:`~kitae.algos.r2d2.RecurrentHeadNetwork`)."""
    p: QRDQNParams = config.algo_params
    if is_recurrent(config):
        network = r2d2.build_recurrent_head_network(
            config, quantile_qvalue_factory, preprocess_fn, n_quantiles=p.n_quantiles
        )
        return r2d2.train_state_recurrent_head(key, config, network, (), tabulate)
    network = build_q_network(
        config, quantile_qvalue_factory, preprocess_fn, n_quantiles=p.n_quantiles
    )
    inputs = [config.env_cfg.observation_space]
    return q_network_train_state(key, config, network, inputs, tabulate)


def q_values_fn(state: TrainState, params: Params, key: jax.Array, observations: Any) -> jax.Array:
    """Q-values ``[B, A]``: the means of the quantiles of ``params`` at ``observations [B, ...]``
    (``key`` is unused)."""
    del key
    return state.apply_fn(params, observations).mean(axis=-1)


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy on the quantiles' means.

    With ``torso="lstm"``: ``explore_fn(state, key, observations, core_state, exploration) ->
    (actions, log_probs, core_state)`` (see
    :func:`kitae.algos.r2d2.recurrent_head_explore_factory`).
    """
    if is_recurrent(config):
        return r2d2.recurrent_head_explore_factory(q_values_fn)

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = q_values_fn(state, state.params, key, observations)
        return epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def batch_factory(config: AlgoConfig) -> Callable:
    """``batch_fn(state, key, t: BootstrapTransition, next_target, mask_tp1) -> QuantileBatch``:
    the target network's quantiles at ``next_target`` ``[B, ...]``, at the bootstrap action (the
    online argmax of the means at ``t.next_observation`` when double-Q, else the target's), among
    the valid actions of ``mask_tp1`` (``bool[B, A]`` or ``None``)."""
    p: QRDQNParams = config.algo_params

    def batch_fn(
        state: TrainState,
        key: jax.Array,
        t: BootstrapTransition,
        next_target: Any,
        mask_tp1: jax.Array | None,
    ) -> QuantileBatch:
        quantiles_target = state.apply_fn(state.target_params, next_target)
        q_online = None
        if p.double_q:
            q_online = q_values_fn(state, state.params, key, t.next_observation)
        next_actions = select_bootstrap_actions(
            q_online, quantiles_target.mean(axis=-1), p.double_q, mask_tp1
        )
        return quantile_batch(t, quantiles_target, next_actions)

    return batch_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> QuantileBatch``: the
    target network's quantiles at the bootstrap action (online argmax of the means if double-Q).

    With ``torso="lstm"``: R2D2's windows ``[B, L]`` with their stored core states (see
    :func:`kitae.algos.r2d2.process_experience_factory`).
    """
    if is_recurrent(config):
        return r2d2.process_experience_factory(config)
    p: QRDQNParams = config.algo_params
    batch_fn = batch_factory(config)

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> QuantileBatch:
        t = bootstrap_transition(experience, p.gamma)
        return batch_fn(state, key, t, t.next_observation, action_mask(t.next_observation))

    return process_experience_fn


def qrdqn_sample_losses(config: AlgoConfig) -> Callable:
    """``sample_losses(state, params, key, QuantileBatch) -> (losses [B], losses [B], info)``:
    the quantile Huber losses at the midpoints (also the priorities)."""
    p: QRDQNParams = config.algo_params

    def sample_losses(state: TrainState, params: Params, key: jax.Array, batch: QuantileBatch):
        del key
        quantiles = state.apply_fn(params, batch.observation)
        losses = jax.vmap(qr_dqn_td_loss, in_axes=(0, 0, 0, 0, 0, None))(
            quantiles,
            batch.action.astype(jnp.int32),
            batch.reward,
            batch.discount,
            batch.target_quantiles,
            p.kappa,
        )
        q_taken = quantiles.mean(axis=-1)[jnp.arange(losses.shape[0]), batch.action]
        return losses, losses, {"qvalue_mean": q_taken.mean()}

    return sample_losses


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, QuantileBatch) -> (state, info)``: one gradient step on the
    quantile Huber loss at the midpoints; priorities are the per-sample losses.

    With ``torso="lstm"``: on R2D2's windows, the same loss on each learned step of the unrolled
    core outputs (see :func:`kitae.algos.r2d2.recurrent_head_sample_losses`).
    """
    sample_losses = qrdqn_sample_losses(config)
    if is_recurrent(config):
        sample_losses = r2d2.recurrent_head_sample_losses(
            config, batch_factory(config), sample_losses
        )
    return q_learning_update_step(config.algo_params, sample_losses)


class QRDQN(DQN):
    """QR-DQN agent (see :class:`QRDQNParams`): epsilon-greedy on the quantiles' means to
    explore, greedy to act."""

    params_type = QRDQNParams
    factories = (
        train_state_qrdqn_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )
