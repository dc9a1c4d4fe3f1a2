"""Mutants of the Sorrel-compatible model interface (kitae.models): the memory's Sorrel API and
``valid`` rule, the mapping of Sorrel's arguments, epsilon decay, and save/load."""

from __future__ import annotations

import dataclasses

import numpy as np

import kitae.models.agent_model as agent_model
import kitae.models.base as base
import kitae.models.memory as memory
import kitae.models.q_models as q_models
from kitae.agent import BaseAgent
from mutants import mutant

T = "tests/test_models_sorrel.py::"


@mutant(
    "models-current-state-stale-frames",
    "memory.current_state() returns the last stored slots, frames of ended episodes included",
    [T + "test_current_state_without_argument_is_sorrels_previous_frames"],
)
def _(monkeypatch):
    original = memory.FrameStackMemory.current_state

    def current_state(self, obs=None):
        if obs is not None:
            return original(self, obs)
        times = np.arange(self.n_added - self.n_frames + 1, self.n_added)
        frames = self.states[times % self.capacity].copy()
        frames[times < 0] = 0.0
        return frames

    monkeypatch.setattr(memory.FrameStackMemory, "current_state", current_state)


@mutant(
    "models-episode-boundary-rule-ignored",
    "valid_rule='episode_boundary' computes kitae's transition mask",
    [T + "test_valid_rules_on_a_hand_built_buffer"],
)
def _(monkeypatch):
    original = memory.FrameStackMemory.gather

    def gather(self, times):
        rule, self.valid_rule = self.valid_rule, "transition"
        try:
            return original(self, times)
        finally:
            self.valid_rule = rule

    monkeypatch.setattr(memory.FrameStackMemory, "gather", gather)


@mutant(
    "models-sorrel-gamma-ignores-n-step",
    "Sorrel's GAMMA becomes the discount without the ** n_step of Sorrel's bootstrap",
    [T + "test_iqn_maps_sorrels_flat_arguments"],
)
def _(monkeypatch):
    original = q_models._QModel.sorrel_settings

    def sorrel_settings(self, kwargs):
        settings = original(self, kwargs)
        if settings is not None:
            gamma = kwargs.get("GAMMA", kwargs.get("gamma", q_models.SORREL_DEFAULTS["GAMMA"]))
            settings["algo_params"] = dataclasses.replace(settings["algo_params"], gamma=gamma)
        return settings

    monkeypatch.setattr(q_models._QModel, "sorrel_settings", sorrel_settings)


@mutant(
    "models-epsilon-decay-subtracts",
    "epsilon_decay subtracts the decay rate instead of scaling by 1 - rate",
    [T + "test_epsilon_decay_reset_model_name_and_state_value"],
)
def _(monkeypatch):
    def epsilon_decay(self, decay_rate):
        self.set_epsilon(max(0.0, self.epsilon - decay_rate))

    monkeypatch.setattr(base.BaseModel, "epsilon_decay", epsilon_decay)


@mutant(
    "models-load-keeps-the-acting-keys",
    "loading a Q model restores its train state but not the keys it acts with",
    [T + "test_a_sorrel_style_script_runs_unchanged"],
)
def _(monkeypatch):
    original = agent_model.AgentModel.load_state_arrays

    def load_state_arrays(self, arrays):
        agent = self.agent
        saved = agent.acting_keys
        original(self, arrays)
        agent.acting_keys = saved

    monkeypatch.setattr(agent_model.AgentModel, "load_state_arrays", load_state_arrays)


@mutant(
    "acting-keys-setter-keeps-the-pool-index",
    "setting an agent's acting keys sets the key and the pool but not the index of the next key",
    [T + "test_a_sorrel_style_script_runs_unchanged"],
)
def _(monkeypatch):
    def set_acting_keys(self, keys):
        self._interact_key, self._key_pool, _ = keys

    prop = property(BaseAgent.acting_keys.fget, set_acting_keys)
    monkeypatch.setattr(BaseAgent, "acting_keys", prop)
