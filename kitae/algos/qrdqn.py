"""QR-DQN: quantile-regression distributional Q-learning, with the DQN options (double-Q,
dueling, n-step, prioritized replay, hard or Polyak targets).

See "Distributional Reinforcement Learning with Quantile Regression", Dabney et al., 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from kitae.algos.dqn import (
    DQN,
    BootstrapTransition,
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
from kitae.distributional import qr_dqn_td_loss
from kitae.masking import action_mask
from kitae.modules.distributional import quantile_qvalue_factory
from kitae.modules.train_state import TrainState
from kitae.types import Params


@dataclass
class QRDQNParams(QLearningParams):
    """QR-DQN hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` for the shared
    ones).

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
    """The quantile Q-network's TrainState (quantiles ``[B, A, N]``)."""
    p: QRDQNParams = config.algo_params
    network = build_q_network(
        config, quantile_qvalue_factory, preprocess_fn, n_quantiles=p.n_quantiles
    )
    inputs = [config.env_cfg.observation_space]
    return q_network_train_state(key, config, network, inputs, tabulate)


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy on the quantiles' means."""
    del config

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = state.apply_fn(state.params, observations).mean(axis=-1)
        return epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> QuantileBatch``: the
    target network's quantiles at the bootstrap action (online argmax of the means if double-Q)."""
    p: QRDQNParams = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> QuantileBatch:
        del key
        t = bootstrap_transition(experience, p.gamma)
        quantiles_target = state.apply_fn(state.target_params, t.next_observation)
        q_online = None
        if p.double_q:
            q_online = state.apply_fn(state.params, t.next_observation).mean(axis=-1)
        next_actions = select_bootstrap_actions(
            q_online, quantiles_target.mean(axis=-1), p.double_q, action_mask(t.next_observation)
        )
        return quantile_batch(t, quantiles_target, next_actions)

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, QuantileBatch) -> (state, info)``: one gradient step on the
    quantile Huber loss at the midpoints; priorities are the per-sample losses."""
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

    return q_learning_update_step(p, sample_losses)


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
