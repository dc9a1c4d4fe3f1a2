"""Mutants of the actor-learner mode: the staleness bound, the refresh and the copy of the acting
parameters."""

from __future__ import annotations

import kitae.actor_learner as actor_learner
from mutants import mutant

TESTS = "tests/test_actor_learner.py"
STALENESS = f"{TESTS}::test_staleness_bound_holds_and_acting_params_are_the_published_ones"


@mutant(
    "actor-learner-staleness-unbounded",
    "the actor never waits for fresh parameters: it runs ahead of the learner as far as the "
    "queue lets it, acting with parameters more than max_staleness updates old",
    [f"{STALENESS}[dqn-1]", f"{STALENESS}[ppo-1]"],
)
def _(monkeypatch):
    monkeypatch.setattr(actor_learner.ActorLearner, "_needed_version", lambda self, j: -1)


@mutant(
    "actor-learner-params-never-refreshed",
    "the actor takes each new update count but keeps acting with the first parameters",
    [f"{STALENESS}[dqn-1]", f"{STALENESS}[ppo-1]"],
)
def _(monkeypatch):
    def refresh(self, actor):
        actor.n_updates = self._published[0]

    monkeypatch.setattr(actor_learner.ActorLearner, "_refresh", refresh)


@mutant(
    "actor-learner-params-aliased",
    "the actor acts with the learner's own parameter arrays instead of a copy (an update that "
    "donates the train state deletes them)",
    [f"{TESTS}::test_updates_that_donate_the_train_state_never_delete_the_acting_params"],
)
def _(monkeypatch):
    monkeypatch.setattr(
        actor_learner.ActorLearner, "_acting_copy", lambda self: self.agent.acting_state
    )
