"""Mutants of the targets that the learning tests (``tests/test_learning.py``) must catch: the
termination / truncation / discount handling of the bootstraps, GAE's episode ends and rollout
cuts, the target networks, and learning itself."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

import kitae.algos.c51 as c51
import kitae.algos.dqn as dqn
import kitae.algos.iqn as iqn
import kitae.algos.ppo as ppo
import kitae.algos.qrdqn as qrdqn
import kitae.algos.sac as sac
import kitae.algos.td3 as td3
from kitae.modules.train_state import TrainState
from mutants import mutant

LEARNING = "tests/test_learning.py"


def patch_process_experience(monkeypatch, agent_cls: type, wrap: Callable) -> None:
    """Replaces ``agent_cls``'s process-experience factory by one whose function calls the
    original as ``wrap(original_fn, state, key, experience)``."""
    train_state, explore, process, update = agent_cls.factories

    def broken_factory(config):
        original = process(config)
        return lambda state, key, experience: wrap(original, state, key, experience)

    monkeypatch.setattr(agent_cls, "factories", (train_state, explore, broken_factory, update))


def no_done(original, state, key, experience):
    return original(state, key, experience._replace(done=jnp.zeros_like(experience.done)))


def online_target(original, state, key, experience):
    return original(state.replace(target_params=state.params), key, experience)


_bootstrap_transition = dqn.bootstrap_transition


def bootstrap_ignoring_termination(experience, gamma):
    """``dqn.bootstrap_transition`` that bootstraps whatever ``done`` says."""
    return _bootstrap_transition(experience._replace(done=jnp.zeros_like(experience.done)), gamma)


for _module, _name in ((dqn, "dqn"), (c51, "c51"), (qrdqn, "qrdqn"), (iqn, "iqn")):

    @mutant(
        f"learning-{_name}-ignores-termination",
        f"{_name} bootstraps through terminations",
        [f"{LEARNING}::test_q_learning_does_not_bootstrap_through_terminations[{_name}]"],
    )
    def _(monkeypatch, module=_module):
        monkeypatch.setattr(module, "bootstrap_transition", bootstrap_ignoring_termination)


@mutant(
    "learning-dqn-truncation-terminates",
    "DQN stops bootstrapping at time-limit truncations, as at terminations",
    [f"{LEARNING}::test_dqn_bootstraps_at_truncations"],
)
def _(monkeypatch):
    original = dqn.bootstrap_transition

    def bootstrap_transition(experience, gamma):
        ended = jnp.logical_or(experience.done, experience.truncated)
        return original(experience._replace(done=ended), gamma)

    monkeypatch.setattr(dqn, "bootstrap_transition", bootstrap_transition)


@mutant(
    "learning-dqn-ignores-gamma",
    "DQN bootstraps undiscounted (gamma taken as 1)",
    [f"{LEARNING}::test_dqn_choice_flips_with_the_discount"],
)
def _(monkeypatch):
    original = dqn.bootstrap_transition
    monkeypatch.setattr(dqn, "bootstrap_transition", lambda e, gamma: original(e, 1.0))


@mutant(
    "learning-gae-ignores-episode-ends",
    "GAE bootstraps and accumulates across terminations and truncations",
    [f"{LEARNING}::test_ppo_does_not_bootstrap_through_terminations"],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        zeros = jnp.zeros_like(terminated_t)
        return original(r_t, v_t, v_tp1, zeros, zeros, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "learning-gae-no-bootstrap-at-rollout-end",
    "GAE treats the end of a rollout as a termination (no bootstrap from the last value)",
    [f"{LEARNING}::test_ppo_bootstraps_where_rollouts_cut_episodes"],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        terminated_t = jnp.asarray(terminated_t).at[-1].set(True)
        return original(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "learning-gae-never-bootstraps",
    "GAE never bootstraps: every next value is taken as 0",
    [f"{LEARNING}::test_ppo_bootstraps_where_rollouts_cut_episodes"],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        return original(
            r_t, v_t, jnp.zeros_like(v_tp1), terminated_t, truncated_t, gamma, gae_lambda
        )

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "learning-gae-truncation-terminates",
    "GAE stops bootstrapping at time-limit truncations, as at terminations",
    [f"{LEARNING}::test_ppo_bootstraps_at_truncations"],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        ended = jnp.logical_or(terminated_t, truncated_t)
        return original(r_t, v_t, v_tp1, ended, truncated_t, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "learning-ppo-swaps-terminated-truncated",
    "PPO passes truncations as terminations and terminations as truncations to GAE",
    [f"{LEARNING}::test_ppo_bootstraps_at_truncations"],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        return original(r_t, v_t, v_tp1, truncated_t, terminated_t, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


for _cls, _name in ((dqn.DQN, "dqn"), (c51.C51, "c51"), (qrdqn.QRDQN, "qrdqn"), (iqn.IQN, "iqn")):

    @mutant(
        f"learning-{_name}-online-target",
        f"{_name} bootstraps from the online params instead of the target network's",
        [f"{LEARNING}::test_q_learning_bootstraps_from_the_target_network[{_name}]"],
    )
    def _(monkeypatch, agent_cls=_cls):
        patch_process_experience(monkeypatch, agent_cls, online_target)


for _cls, _name in ((sac.SAC, "sac"), (td3.TD3, "td3")):

    @mutant(
        f"learning-{_name}-ignores-termination",
        f"{_name} bootstraps through terminations",
        [f"{LEARNING}::test_continuous_agents_drive_to_the_far_goal[{_name}]"],
    )
    def _(monkeypatch, agent_cls=_cls):
        patch_process_experience(monkeypatch, agent_cls, no_done)


@mutant(
    "learning-discrete-sac-ignores-termination",
    "discrete SAC bootstraps through terminations",
    [f"{LEARNING}::test_discrete_sac_does_not_bootstrap_through_terminations"],
)
def _(monkeypatch):
    patch_process_experience(monkeypatch, sac.SAC, no_done)


def frozen_params(self, *, grads, **kwargs):
    del grads, kwargs
    return self


for _name, _test in (
    ("q-learning", "tests/test_q_learning.py::test_q_learning_agents_solve_the_corridor"),
    ("discrete-sac", "tests/test_sac.py::test_discrete_sac_solves_the_corridor"),
):

    @mutant(
        f"learning-switched-off-{_name}",
        "gradient steps leave the params unchanged (the untrained agent is tested)",
        [_test],
    )
    def _(monkeypatch):
        monkeypatch.setattr(TrainState, "apply_gradients", frozen_params)
