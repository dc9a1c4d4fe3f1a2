"""Mutants of the neurorl-style builders and of the recurrent DQN torso."""

from __future__ import annotations

import kitae.algos.q_acting as q_acting
import kitae.builders as builders
import kitae.compiled as compiled
from mutants import mutant

BUILDERS = "tests/test_builders.py::test_each_of_the_five_builders_is_used"
RESET = "tests/test_recurrent_dqn.py::test_core_state_is_stored_and_reset_where_an_episode_ended"


@mutant(
    "builder-optimizer-ignored",
    "make_train ignores make_optimizer and falls back to the algorithm's optimizer",
    [BUILDERS],
)
def _(monkeypatch):
    original = builders.resolve_train_pieces

    def resolve_train_pieces(*args, **kwargs):
        kwargs.pop("make_optimizer", None)
        return original(*args, **kwargs)

    monkeypatch.setattr(compiled, "_TRAIN_PIECES_RESOLVER", resolve_train_pieces)


@mutant(
    "builder-actor-ignored",
    "make_train ignores make_actor and falls back to the algorithm's explore factory",
    [BUILDERS],
)
def _(monkeypatch):
    original = builders.resolve_train_pieces

    def resolve_train_pieces(*args, **kwargs):
        kwargs.pop("make_actor", None)
        return original(*args, **kwargs)

    monkeypatch.setattr(compiled, "_TRAIN_PIECES_RESOLVER", resolve_train_pieces)


@mutant(
    "recurrent-dqn-core-not-reset",
    "a recurrent Q-learning agent carries its core state into the next episode",
    [RESET],
)
def _(monkeypatch):
    original = q_acting.QActingAgent.with_actor_state

    def with_actor_state(self, experience):
        carried = self._core_state
        experience = original(self, experience)
        if self.recurrent:
            self._core_state = self._core_before = carried
        return experience

    monkeypatch.setattr(q_acting.QActingAgent, "with_actor_state", with_actor_state)
