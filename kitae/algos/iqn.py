"""IQN: implicit quantile networks, with the DQN options (double-Q, dueling, n-step,
prioritized replay, hard or Polyak targets, the LSTM torso).

Dopamine's semantics: ``N = N' = 64`` sampled quantile levels for the online and target
distributions, ``K = 32`` levels to estimate Q-values for acting and for choosing the bootstrap
action (with the target network, unless ``double_q``), ``kappa = 1``, the quantile Huber loss
summed over the ``N`` online quantiles and averaged over the ``N'`` target ones, and a 64-cosine
embedding of the levels.

See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al., 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
)
from kitae.algos.qrdqn import QuantileBatch, quantile_batch
from kitae.buffer import Experience
from kitae.config import AlgoConfig, UpdateConfig, check_int_param
from kitae.distributional import quantile_td_loss
from kitae.masking import action_mask, masked_argmax
from kitae.modules.distributional import implicit_quantile_qvalue_factory
from kitae.modules.train_state import TrainState
from kitae.types import Params


@dataclass
class IQNParams(TorsoParams):
    """IQN hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` and
    :class:`~kitae.algos.dqn.TorsoParams` for the shared ones; ``torso="lstm"`` learns each
    replayed window's steps with the sampled quantile loss below).

    Defaults: Dopamine's IQN (``N = N' = 64``, ``K = 32``, ``kappa = 1``, 64 cosines, no
    double-Q: the bootstrap action is the target network's greedy one, hard target updates, here
    every 100 gradient steps) with kitae's DQN CartPole-v1 exploration schedule;
    ``IQN.default_update_cfg`` takes one gradient step of 64 every 4 transitions at a constant
    learning rate of 5e-4 (an IQN gradient step evaluates ``N + N' + K`` quantile levels per
    sample, so it costs as much as many DQN steps on the same torso).

    Attributes:
        n_tau_samples: ``N``, quantile levels sampled for the online distribution.
        n_tau_prime_samples: ``N'``, quantile levels sampled for the target distribution.
        n_quantile_samples: ``K``, quantile levels sampled to estimate Q-values.
        n_cosines: cosine features of the quantile-level embedding.
        head_hidden_sizes: hidden layers after the state and level embeddings are merged.
        kappa: quantile Huber threshold.
    """

    double_q: bool = False
    tau: float = 1.0
    target_update_period: int = 100
    n_tau_samples: int = 64
    n_tau_prime_samples: int = 64
    n_quantile_samples: int = 32
    n_cosines: int = 64
    head_hidden_sizes: tuple[int, ...] = (64,)
    kappa: float = 1.0

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        for name in ("n_tau_samples", "n_tau_prime_samples", "n_quantile_samples", "n_cosines"):
            check_int_param(self, name, 1)
        if not self.kappa > 0:
            raise ValueError(f"algo_params.kappa={self.kappa!r} is invalid: it must be > 0.")


def train_state_iqn_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The implicit quantile network's TrainState: ``apply_fn(params, observations [B, ...],
    taus [B, N]) -> quantiles [B, A, N]``; with ``torso="lstm"`` the implicit quantile head on an
    LSTM core (see :class:`~kitae.algos.r2d2.RecurrentHeadNetwork`)."""
    p: IQNParams = config.algo_params
    head_kwargs = {"n_cosines": p.n_cosines, "head_hidden_sizes": p.head_hidden_sizes}
    if is_recurrent(config):
        network = r2d2.build_recurrent_head_network(
            config, implicit_quantile_qvalue_factory, preprocess_fn, **head_kwargs
        )
        head_shapes = [(p.n_quantile_samples,)]
        return r2d2.train_state_recurrent_head(key, config, network, head_shapes, tabulate)
    network = build_q_network(
        config, implicit_quantile_qvalue_factory, preprocess_fn, **head_kwargs
    )
    inputs = [config.env_cfg.observation_space, (p.n_quantile_samples,)]
    return q_network_train_state(key, config, network, inputs, tabulate)


def sampled_q_values(
    state: TrainState, params: Any, key: jax.Array, observations: jax.Array, n_taus: int
) -> jax.Array:
    """Q-values ``[B, A]``: the mean of the quantiles at ``n_taus`` uniform levels per row."""
    batch_size = jax.tree.leaves(observations)[0].shape[0]
    taus = jax.random.uniform(key, (batch_size, n_taus))
    return state.apply_fn(params, observations, taus).mean(axis=-1)


def q_values_factory(config: AlgoConfig) -> Callable:
    """``q_values_fn(state, params, key, observations [B, ...]) -> [B, A]``: Q-values estimated
    from ``K`` quantile levels sampled with ``key``."""
    p: IQNParams = config.algo_params

    def q_values_fn(state: TrainState, params: Params, key: jax.Array, observations: Any):
        return sampled_q_values(state, params, key, observations, p.n_quantile_samples)

    return q_values_fn


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy on Q-values estimated from ``K`` sampled quantile levels.

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
        k_taus, k_act = jax.random.split(key)
        qvalues = q_values_fn(state, state.params, k_taus, observations)
        return epsilon_greedy(k_act, qvalues, exploration, action_mask(observations))

    return explore_fn


def batch_factory(config: AlgoConfig) -> Callable:
    """``batch_fn(state, key, t: BootstrapTransition, next_target, mask_tp1) -> QuantileBatch``:
    the target network's quantiles at ``N'`` sampled levels at ``next_target`` ``[B, ...]``, at
    the bootstrap action chosen from ``K`` sampled levels (of the online network at
    ``t.next_observation`` when double-Q, else of the target one), among the valid actions of
    ``mask_tp1`` (``bool[B, A]`` or ``None``)."""
    p: IQNParams = config.algo_params
    q_values_fn = q_values_factory(config)

    def batch_fn(
        state: TrainState,
        key: jax.Array,
        t: BootstrapTransition,
        next_target: Any,
        mask_tp1: jax.Array | None,
    ) -> QuantileBatch:
        k_select, k_target = jax.random.split(key)
        if p.double_q:
            q_select = q_values_fn(state, state.params, k_select, t.next_observation)
        else:
            q_select = q_values_fn(state, state.target_params, k_select, next_target)
        next_actions = masked_argmax(q_select, mask_tp1)
        batch_size = next_actions.shape[0]
        taus = jax.random.uniform(k_target, (batch_size, p.n_tau_prime_samples))
        quantiles = state.apply_fn(state.target_params, next_target, taus)
        return quantile_batch(t, quantiles, next_actions)

    return batch_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> QuantileBatch``: the
    target network's quantiles at ``N'`` sampled levels, at the bootstrap action chosen from ``K``
    sampled levels (of the online network when double-Q).

    With ``torso="lstm"``: R2D2's windows ``[B, L]`` with their stored core states (see
    :func:`kitae.algos.r2d2.process_experience_factory`).
    """
    if is_recurrent(config):
        return r2d2.process_experience_factory(config)
    p: IQNParams = config.algo_params
    batch_fn = batch_factory(config)

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> QuantileBatch:
        t = bootstrap_transition(experience, p.gamma)
        return batch_fn(state, key, t, t.next_observation, action_mask(t.next_observation))

    return process_experience_fn


def iqn_sample_losses(config: AlgoConfig) -> Callable:
    """``sample_losses(state, params, key, QuantileBatch) -> (losses [B], losses [B], info)``:
    the quantile Huber losses at ``N`` levels sampled with ``key`` (also the priorities)."""
    p: IQNParams = config.algo_params

    def sample_losses(state: TrainState, params: Params, key: jax.Array, batch: QuantileBatch):
        batch_size = batch.action.shape[0]
        taus = jax.random.uniform(key, (batch_size, p.n_tau_samples))
        quantiles = state.apply_fn(params, batch.observation, taus)
        losses = jax.vmap(quantile_td_loss, in_axes=(0, 0, 0, 0, 0, 0, None))(
            quantiles,
            taus,
            batch.action.astype(jnp.int32),
            batch.reward,
            batch.discount,
            batch.target_quantiles,
            p.kappa,
        )
        q_taken = quantiles.mean(axis=-1)[jnp.arange(batch_size), batch.action]
        return losses, losses, {"qvalue_mean": q_taken.mean()}

    return sample_losses


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, QuantileBatch) -> (state, info)``: one gradient step on the
    quantile Huber loss at ``N`` sampled levels; priorities are the per-sample losses.

    With ``torso="lstm"``: on R2D2's windows, the same loss on each learned step of the unrolled
    core outputs (see :func:`kitae.algos.r2d2.recurrent_head_sample_losses`).
    """
    sample_losses = iqn_sample_losses(config)
    if is_recurrent(config):
        sample_losses = r2d2.recurrent_head_sample_losses(
            config, batch_factory(config), sample_losses
        )
    return q_learning_update_step(config.algo_params, sample_losses)


class IQN(DQN):
    """IQN agent (see :class:`IQNParams`): epsilon-greedy on Q-values from ``K`` sampled levels
    to explore, greedy on them to act."""

    params_type = IQNParams
    default_update_cfg = UpdateConfig(
        learning_rate=5e-4,
        learning_rate_annealing=False,
        max_grad_norm=10.0,
        max_buffer_size=50_000,
        batch_size=64,
        n_epochs=1,
    )
    factories = (
        train_state_iqn_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )
