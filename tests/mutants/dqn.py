"""Mutants of DQN's targets and update."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import kitae.algos.dqn as dqn
from mutants import mutant

TARGETS = "tests/test_q_learning.py::test_dqn_targets_bootstrap_from_the_target_network_by_hand"
N_STEP = "tests/test_q_learning.py::test_dqn_n_step_targets_by_hand"
STEP = "tests/test_q_learning.py::test_dqn_loss_and_gradient_step_by_hand"


@mutant(
    "dqn-ignores-termination",
    "DQN bootstraps through terminations (discount gamma whatever done says)",
    [TARGETS],
)
def _(monkeypatch):
    original = dqn.bootstrap_transition

    def bootstrap_transition(experience, gamma):
        return original(experience._replace(done=jnp.zeros_like(experience.done)), gamma)

    monkeypatch.setattr(dqn, "bootstrap_transition", bootstrap_transition)


@mutant(
    "dqn-n-step-ignores-truncation",
    "n-step windows run on past a truncation into the next episode",
    [N_STEP],
)
def _(monkeypatch):
    original = dqn.bootstrap_transition

    def bootstrap_transition(experience, gamma):
        if experience.truncated is not None:
            experience = experience._replace(truncated=jnp.zeros_like(experience.truncated))
        return original(experience, gamma)

    monkeypatch.setattr(dqn, "bootstrap_transition", bootstrap_transition)


@mutant(
    "dqn-bootstraps-from-online-params",
    "DQN's target evaluates the next state with the online params (no target network)",
    [TARGETS],
)
def _(monkeypatch):
    original = dqn.process_experience_factory

    def process_experience_factory(config):
        process = original(config)

        def process_experience_fn(state, key, experience):
            return process(state.replace(target_params=state.params), key, experience)

        return process_experience_fn

    monkeypatch.setattr(dqn, "process_experience_factory", process_experience_factory)
    monkeypatch.setattr(
        dqn.DQN,
        "factories",
        (*dqn.DQN.factories[:2], process_experience_factory, dqn.DQN.factories[3]),
    )


@mutant(
    "dqn-double-q-selects-with-the-target",
    "double-Q picks the bootstrap action with the target network",
    [TARGETS],
)
def _(monkeypatch):
    def select_bootstrap_actions(q_online_tp1, q_target_tp1, double_q, mask_tp1=None):
        return jnp.argmax(q_target_tp1, axis=-1).astype(jnp.int32)

    monkeypatch.setattr(dqn, "select_bootstrap_actions", select_bootstrap_actions)


@mutant(
    "dqn-loss-ignores-the-taken-action",
    "the TD loss regresses the max Q-value instead of the taken action's",
    [STEP],
)
def _(monkeypatch):
    def update_step_factory(config):
        p = config.algo_params
        td_loss = dqn.LOSSES[p.loss]

        def sample_losses(state, params, key, batch):
            q_max = state.apply_fn(params, batch.observation).max(-1)
            return jax.vmap(td_loss)(q_max, batch.target), batch.target - q_max, {}

        return dqn.q_learning_update_step(p, sample_losses)

    monkeypatch.setattr(dqn, "update_step_factory", update_step_factory)
    monkeypatch.setattr(dqn.DQN, "factories", (*dqn.DQN.factories[:3], update_step_factory))


@mutant(
    "compiled-path-drops-rewards",
    "the compiled loop stores zero rewards",
    ["tests/test_q_learning.py::test_q_learning_agents_train_on_the_compiled_path[dqn]"],
)
def _(monkeypatch):
    import kitae.compiled as compiled

    original = compiled.CompiledTrain._env_step

    def _env_step(self, runner, keys):
        runner, experience, finished = original(self, runner, keys)
        return runner, experience._replace(reward=jnp.zeros_like(experience.reward)), finished

    monkeypatch.setattr(compiled.CompiledTrain, "_env_step", _env_step)
