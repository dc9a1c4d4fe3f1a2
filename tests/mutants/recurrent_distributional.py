"""Mutants of the LSTM torso of the distributional Q-learners (C51, QR-DQN, IQN)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

import kitae.algos.r2d2 as r2d2
from mutants import mutant

WINDOW_LOSS = (
    "tests/test_recurrent_distributional.py::"
    "test_window_loss_is_the_feed_forward_loss_on_the_learned_steps_of_the_unroll"
)
IQN_LOSS = (
    "tests/test_recurrent_distributional.py::"
    "test_iqn_window_loss_ignores_burn_in_steps_and_does_not_bootstrap_after_terminations"
)


@mutant(
    "recurrent-distributional-burn-in-in-loss",
    "the burn-in steps of a replayed window are learned like the others",
    [WINDOW_LOSS, IQN_LOSS],
)
def _(monkeypatch):
    original = r2d2.recurrent_head_sample_losses

    def recurrent_head_sample_losses(config, batch_fn, sample_losses):
        params = dataclasses.replace(config.algo_params, burn_in=0)
        return original(dataclasses.replace(config, algo_params=params), batch_fn, sample_losses)

    monkeypatch.setattr(r2d2, "recurrent_head_sample_losses", recurrent_head_sample_losses)


@mutant(
    "recurrent-distributional-terminated-bootstraps",
    "a recurrent distributional target bootstraps after a termination (as after a truncation)",
    [WINDOW_LOSS, IQN_LOSS],
)
def _(monkeypatch):
    original = r2d2.window_n_step_returns

    def window_n_step_returns(r_t, terminated_t, truncated_t, gamma, n_step):
        truncated_t = truncated_t | terminated_t
        return original(r_t, jnp.zeros_like(terminated_t), truncated_t, gamma, n_step)

    monkeypatch.setattr(r2d2, "window_n_step_returns", window_n_step_returns)


@mutant(
    "recurrent-window-core-not-reset",
    "the unroll of a replayed window carries the core state across episode ends",
    [WINDOW_LOSS],
)
def _(monkeypatch):
    original = r2d2.unroll_windows

    def unroll_windows(apply_fn, params, target_params, batch, burn_in, method=None):
        never = jnp.zeros_like(batch.terminated)
        batch = batch._replace(terminated=never, truncated=never)
        return original(apply_fn, params, target_params, batch, burn_in, method)

    monkeypatch.setattr(r2d2, "unroll_windows", unroll_windows)
