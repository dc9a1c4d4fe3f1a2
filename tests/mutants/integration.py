"""Mutants of the integration points: multi-agent episodes and recurrent cores, models, video."""

from __future__ import annotations

import numpy as np

import kitae.algos.r2d2 as r2d2
import kitae.evaluation as evaluation
import kitae.models.agent_model as agent_model
import kitae.multiagent.learners as learners
from kitae.modules.train_state import TrainState
from mutants import mutant

MULTIAGENT = "tests/test_multiagent.py"
MODELS = "tests/test_models.py"


@mutant(
    "models-learning-switched-off",
    "the models' gradient steps leave the parameters unchanged (only the step counter moves)",
    [
        f"{MODELS}::test_agent_model_wraps_and_trains_a_dqn_agent",
        f"{MODELS}::test_q_models_learn_a_tiny_task[DDQNModel-algo_params0]",
    ],
)
def _(monkeypatch):
    def apply_gradients(self, *, grads, **kwargs):
        del grads, kwargs
        return self.replace(step=self.step + 1)

    monkeypatch.setattr(TrainState, "apply_gradients", apply_gradients)


@mutant(
    "multiagent-off-policy-silent-drop-not-truncated",
    "an agent the env drops without flag or final observation runs on into its next episode "
    "in the replay buffer (n-step windows cross it)",
    [f"{MULTIAGENT}::test_an_agent_dropped_silently_is_truncated_at_its_last_stored_transition"],
)
def _(monkeypatch):
    monkeypatch.setattr(learners.OffPolicyLearner, "truncate_last", lambda self, members: None)


@mutant(
    "multiagent-on-policy-silent-drop-not-truncated",
    "an agent the env drops without flag or final observation runs on into its next episode "
    "in the on-policy rollouts (GAE crosses it)",
    [f"{MULTIAGENT}::test_gae_does_not_run_through_a_silent_drop_into_the_next_episode"],
)
def _(monkeypatch):
    monkeypatch.setattr(learners.OnPolicyLearner, "truncate_last", lambda self, members: None)


@mutant(
    "multiagent-core-not-reset-at-episode-start",
    "multi-agent R2D2 keeps each member's core state across env resets (training and evaluation)",
    [
        f"{MULTIAGENT}::test_r2d2_greedy_evaluation_starts_every_episode_from_a_zero_core_state",
        f"{MULTIAGENT}::test_r2d2_carries_stores_and_resets_a_core_state_per_member",
    ],
)
def _(monkeypatch):
    monkeypatch.setattr(learners.GroupLearner, "reset_acting_state", lambda self: None)


@mutant(
    "r2d2-stores-zero-core-states",
    "R2D2 stores zero core states instead of the state each env acted from",
    [f"{MULTIAGENT}::test_r2d2_carries_stores_and_resets_a_core_state_per_member"],
)
def _(monkeypatch):
    original = r2d2.R2D2.with_actor_state

    def with_actor_state(self, experience):
        experience = original(self, experience)
        return experience._replace(actor_state=np.zeros_like(experience.actor_state))

    monkeypatch.setattr(r2d2.R2D2, "with_actor_state", with_actor_state)


@mutant(
    "record-video-carries-the-core",
    "record_video carries a recurrent agent's core state from one episode into the next",
    ["tests/test_r2d2.py::test_record_video_acts_every_episode_from_a_fresh_core_state"],
)
def _(monkeypatch):
    original = evaluation.greedy_single_env_actor

    def greedy_single_env_actor(agent):
        act, carried = original(agent), {}

        def carrying(observations, actor_state):
            actions, carried["state"] = act(observations, carried.get("state", actor_state))
            return actions, carried["state"]

        return carrying

    monkeypatch.setattr(evaluation, "greedy_single_env_actor", greedy_single_env_actor)


@mutant(
    "agent-model-accepts-recurrent-agents",
    "AgentModel takes R2D2 (whose training then needs core states the memory does not hold)",
    [f"{MODELS}::test_agent_model_refuses_a_recurrent_agent_before_any_training"],
)
def _(monkeypatch):
    monkeypatch.setattr(agent_model, "check_feed_forward", lambda agent: None)


@mutant(
    "agent-model-accepts-n-step-replay",
    "AgentModel wraps an n-step or prioritized agent its memory cannot feed",
    [f"{MODELS}::test_agent_model_refuses_replay_its_memory_cannot_provide"],
)
def _(monkeypatch):
    monkeypatch.setattr(agent_model, "check_one_step_uniform_replay", lambda algo_params: None)
