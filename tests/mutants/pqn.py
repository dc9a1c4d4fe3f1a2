"""Mutants of PQN: its Q(λ) targets, loss, exploration, network and masks."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

import kitae.algos.pqn as pqn
from mutants import mutant

T = "tests/test_pqn.py::"
TARGETS = T + "test_q_lambda_targets_by_hand[lambda-0.5]"
LAMBDA_0 = T + "test_q_lambda_targets_by_hand[lambda-0]"
LAMBDA_1 = T + "test_q_lambda_targets_by_hand[lambda-1]"
SCALED = T + "test_q_lambda_targets_by_hand[reward-scale]"
ONE_STEP = T + "test_lambda_zero_is_one_step_q_learning_on_random_tables"
MONTE_CARLO = T + "test_lambda_one_is_the_monte_carlo_return_of_a_terminated_episode"
STEP = T + "test_loss_and_gradient_step_by_hand"


def _patch_factory(monkeypatch, index: int, name: str, factory) -> None:
    """Replaces factory ``name`` of the module and its slot ``index`` in ``PQN.factories``."""
    monkeypatch.setattr(pqn, name, factory)
    factories = list(pqn.PQN.factories)
    factories[index] = factory
    monkeypatch.setattr(pqn.PQN, "factories", tuple(factories))


def _rewrite_experience(monkeypatch, rewrite) -> None:
    """PQN's processing sees ``rewrite(experience)`` instead of the rollout."""
    original = pqn.process_experience_factory

    def process_experience_factory(config):
        process = original(config)
        return lambda state, key, experience: process(state, key, rewrite(experience))

    _patch_factory(monkeypatch, 2, "process_experience_factory", process_experience_factory)


@mutant(
    "pqn-ignores-termination",
    "PQN's targets bootstrap through terminations (the (1 - done) factor dropped)",
    [TARGETS, ONE_STEP],
)
def _(monkeypatch):
    _rewrite_experience(monkeypatch, lambda e: e._replace(done=jnp.zeros_like(e.done)))


@mutant(
    "pqn-ignores-truncation",
    "the λ-return runs on past a truncation into the next episode",
    [TARGETS, LAMBDA_1],
)
def _(monkeypatch):
    _rewrite_experience(monkeypatch, lambda e: e._replace(truncated=jnp.zeros_like(e.truncated)))


@mutant(
    "pqn-truncation-as-termination",
    "a truncated step does not bootstrap from its final observation",
    [TARGETS, LAMBDA_0],
)
def _(monkeypatch):
    _rewrite_experience(monkeypatch, lambda e: e._replace(done=e.done | e.truncated))


@mutant(
    "pqn-bootstraps-from-the-current-observation",
    "the targets bootstrap from max Q(s_t) instead of max Q(s_t+1)",
    [TARGETS, ONE_STEP],
)
def _(monkeypatch):
    _rewrite_experience(monkeypatch, lambda e: e._replace(next_observation=e.observation))


@mutant(
    "pqn-lambda-ignored",
    "the targets are one-step Q-learning whatever q_lambda says",
    [TARGETS, LAMBDA_1, MONTE_CARLO],
)
def _(monkeypatch):
    original = pqn.compute_lambda_returns

    def compute_lambda_returns(r_t, v_tp1, terminated_t, truncated_t, gamma, lambda_):
        return original(r_t, v_tp1, terminated_t, truncated_t, gamma, 0.0)

    monkeypatch.setattr(pqn, "compute_lambda_returns", compute_lambda_returns)


@mutant(
    "pqn-reward-scale-ignored",
    "the targets use the env's rewards unscaled",
    [SCALED],
)
def _(monkeypatch):
    original = pqn.process_experience_factory

    def process_experience_factory(config):
        p = dataclasses.replace(config.algo_params, reward_scale=1.0)
        return original(dataclasses.replace(config, algo_params=p))

    _patch_factory(monkeypatch, 2, "process_experience_factory", process_experience_factory)


@mutant(
    "pqn-bootstrap-ignores-mask",
    "the bootstrap maximum runs over every action, masked ones included",
    [T + "test_bootstrap_maximum_is_over_the_valid_actions"],
)
def _(monkeypatch):
    monkeypatch.setattr(pqn, "apply_mask", lambda values, mask: values)


@mutant(
    "pqn-explore-ignores-mask",
    "PQN's epsilon-greedy explores over every action, valid or not",
    [T + "test_explore_never_picks_a_masked_action[1.0]"],
)
def _(monkeypatch):
    original = pqn.masked_epsilon_greedy
    monkeypatch.setattr(
        pqn, "masked_epsilon_greedy", lambda key, q, eps, mask=None: original(key, q, eps, None)
    )


@mutant(
    "pqn-loss-regresses-the-max-q",
    "the loss regresses max_a Q(s, a) instead of the taken action's value",
    [STEP],
)
def _(monkeypatch):
    original = pqn.update_step_factory

    def update_step_factory(config):
        update = original(config)

        def update_step_fn(state, key, batch):
            greedy = state.apply_fn(state.params, batch.observation).argmax(-1).astype(jnp.int32)
            return update(state, key, batch._replace(action=greedy))

        return update_step_fn

    _patch_factory(monkeypatch, 3, "update_step_factory", update_step_factory)


@mutant(
    "pqn-epsilon-decays-over-the-whole-run",
    "epsilon decays over the whole run, not over exploration_fraction of it",
    [T + "test_epsilon_schedule_values", T + "test_exploration_follows_the_schedule_on_both_paths"],
)
def _(monkeypatch):
    original = pqn.epsilon_schedule

    def epsilon_schedule(params, n_env_steps):
        return original(dataclasses.replace(params, exploration_fraction=1.0), n_env_steps)

    monkeypatch.setattr(pqn, "epsilon_schedule", epsilon_schedule)


@mutant(
    "pqn-compiled-path-explores-greedily",
    "the traced acting function ignores the epsilon schedule (always greedy)",
    [T + "test_exploration_follows_the_schedule_on_both_paths"],
)
def _(monkeypatch):
    original = pqn.PQN.explore

    def explore(self, observation):
        if self._trace_key is None:
            return original(self, observation)
        return self.select_action(observation)

    monkeypatch.setattr(pqn.PQN, "explore", explore)


@mutant(
    "pqn-without-layer-norm",
    "the Q-network torso has no LayerNorm",
    [T + "test_layer_norm_in_the_torso[True]"],
)
def _(monkeypatch):
    original = pqn.train_state_pqn_factory

    def train_state_pqn_factory(key, config, **kwargs):
        p = dataclasses.replace(config.algo_params, layer_norm=False)
        return original(key, dataclasses.replace(config, algo_params=p), **kwargs)

    _patch_factory(monkeypatch, 0, "train_state_pqn_factory", train_state_pqn_factory)


@mutant(
    "pqn-update-skips-the-gradient-step",
    "PQN's update step computes the loss but never applies the gradients",
    [STEP, T + "test_both_paths_learn_cartpole_values"],
)
def _(monkeypatch):
    original = pqn.update_step_factory

    def update_step_factory(config):
        update = original(config)

        def update_step_fn(state, key, batch):
            _, info = update(state, key, batch)
            return state, info

        return update_step_fn

    _patch_factory(monkeypatch, 3, "update_step_factory", update_step_factory)
