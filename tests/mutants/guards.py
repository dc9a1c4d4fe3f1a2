"""Mutants of the training loops' guards (:mod:`kitae.guards`)."""

from __future__ import annotations

import kitae.guards as guards
from mutants import mutant

TESTS = "tests/test_guards.py::"
DIVERGENCE = TESTS + (
    "test_gymnasium_divergence_stops_at_the_first_non_finite_update_and_keeps_the_last_checkpoint"
)
NON_FINITE = TESTS + "test_non_finite_env_data_is_an_error_naming_the_env_step_and_quantity"
SKIP = TESTS + "test_skip_drops_the_steps_holding_non_finite_data"
STOP = TESTS + "test_a_stop_request_ends_the_gymnasium_loop_after_the_current_step"
SHAPES = TESTS + "test_observations_are_checked_against_the_space_at_reset_and_on_the_first_step"


@mutant(
    "divergence-flag-ignored",
    "the updates' non-finite flags are dropped unread: training runs on past a divergence",
    [DIVERGENCE],
)
def _(monkeypatch):
    monkeypatch.setattr(guards, "record_update", lambda agent, info: guards.without_flags(info))
    monkeypatch.setattr(guards, "raise_if_diverged", lambda agent, record: None)


@mutant(
    "non-finite-env-check-removed",
    "NaN / infinite observations and rewards pass unnoticed into the buffer",
    [NON_FINITE, SKIP],
)
def _(monkeypatch):
    monkeypatch.setattr(guards, "find_non_finite", lambda *args, **kwargs: None)


@mutant(
    "signal-flag-ignored",
    "the loops never read the stop request that SIGINT / SIGTERM set",
    [STOP],
)
def _(monkeypatch):
    monkeypatch.setattr(guards, "stop_requested", lambda: 0)


@mutant(
    "observation-shape-check-removed",
    "observations are not compared with the declared space at reset and on the first step",
    [SHAPES],
)
def _(monkeypatch):
    monkeypatch.setattr(guards, "check_observations", lambda *args, **kwargs: None)
