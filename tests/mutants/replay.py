"""Mutants of prioritized replay (sampling, importance weights, priority write-back), of the
legacy gymnax step labelling and of the warning about unread update settings."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

import kitae.agent as agent_module
import kitae.algos.dqn as dqn
import kitae.envs.jax_env as jax_env
from kitae.buffer import PrioritizedReplayBuffer
from mutants import mutant

EXACT_SAMPLING = "tests/test_buffer.py::test_prioritized_sampling_is_exact_at_a_million_slots"
WEIGHTS = "tests/test_buffer.py::test_prioritized_importance_weights_of_every_sampled_element"
WRITE_BACK = (
    "tests/test_q_learning.py::test_off_policy_update_writes_priorities_at_the_sampled_slots"
)
WEIGHTED_LOSS = "tests/test_q_learning.py::test_importance_weights_scale_the_dqn_loss"


@mutant(
    "per-float32-cumsum-sampler",
    "prioritized sampling searches one float32 cumulative sum over all slots",
    [EXACT_SAMPLING],
)
def _(monkeypatch):
    def sample_indices(self, state, key, batch_size, length=1):
        mass = jnp.where(self._start_mask(state, length), state.priorities, 0.0).reshape(-1)
        cumulative = jnp.cumsum(mass)
        u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size
        flat = jnp.searchsorted(cumulative, u * cumulative[-1], side="right")
        flat = jnp.minimum(flat, mass.shape[0] - 1).astype(jnp.int32)
        return flat // self.n_envs, flat % self.n_envs

    monkeypatch.setattr(PrioritizedReplayBuffer, "sample_indices", sample_indices)


@mutant(
    "per-importance-weights-all-ones",
    "prioritized replay's importance weights are all 1 (no bias correction)",
    [WEIGHTS, WRITE_BACK],
)
def _(monkeypatch):
    def importance_weights(self, state, slots, envs, length=1):
        return jnp.ones(slots.shape, jnp.float32)

    monkeypatch.setattr(PrioritizedReplayBuffer, "importance_weights", importance_weights)


@mutant(
    "per-beta-not-annealed",
    "the importance-sampling exponent stays at beta_start",
    [WEIGHTS],
)
def _(monkeypatch):
    monkeypatch.setattr(PrioritizedReplayBuffer, "beta", lambda self, state: self.beta_start)


@mutant(
    "per-priorities-written-to-shifted-slots",
    "priorities are written back one slot after the sampled transitions",
    [WRITE_BACK],
)
def _(monkeypatch):
    original = PrioritizedReplayBuffer.update_priorities

    def update_priorities(self, state, slots, envs, td_errors):
        return original(self, state, (slots + 1) % self.slots_per_env, envs, td_errors)

    monkeypatch.setattr(PrioritizedReplayBuffer, "update_priorities", update_priorities)


@mutant(
    "per-write-back-ignores-alpha",
    "priorities are written back as |td| + eps, without the exponent alpha",
    [WRITE_BACK],
)
def _(monkeypatch):
    def update_priorities(self, state, slots, envs, td_errors):
        new = (jnp.abs(jax.lax.stop_gradient(td_errors)) + self.eps).astype(jnp.float32)
        return state.replace(
            priorities=state.priorities.at[slots, envs].set(new),
            max_priority=jnp.maximum(state.max_priority, new.max()),
            updates=state.updates + 1,
        )

    monkeypatch.setattr(PrioritizedReplayBuffer, "update_priorities", update_priorities)


@mutant(
    "q-learning-loss-ignores-importance-weights",
    "the Q-learning loss is the plain mean of the per-sample losses (batch.weight unused)",
    [WEIGHTED_LOSS],
)
def _(monkeypatch):
    original = dqn.q_learning_update_step

    def q_learning_update_step(params, sample_losses):
        step = original(params, sample_losses)

        def update_step_fn(state, key, batch):
            return step(state, key, batch._replace(weight=jnp.ones_like(batch.weight)))

        return update_step_fn

    monkeypatch.setattr(dqn, "q_learning_update_step", q_learning_update_step)


@mutant(
    "legacy-gymnax-time-limit-masks-termination",
    "a legacy gymnax env that terminates on its time-limit step is labelled truncated",
    [
        "tests/test_jax_env.py::test_termination_on_the_last_step_is_not_truncation",
        "tests/test_jax_env.py::test_legacy_terminal_condition_on_the_time_limit_step_is_termination",
    ],
)
def _(monkeypatch):
    original = jax_env.JaxEnv.transition

    def transition(self, key, state, action):
        if not self.legacy_api:
            return original(self, key, state, action)
        next_obs, next_state, reward, done, _ = self.env.step_env(key, state, action, self.params)
        done = jnp.asarray(done, bool)
        truncated = done & (next_state.time >= self.params.max_steps_in_episode)
        return next_obs, next_state, jnp.asarray(reward, jnp.float32), done & ~truncated, truncated

    monkeypatch.setattr(jax_env.JaxEnv, "transition", transition)


@mutant(
    "unread-update-fields-not-warned",
    "building an agent says nothing about update_cfg fields its factories never read",
    [
        "tests/test_config.py::test_building_an_agent_warns_about_update_fields_it_never_reads",
        "tests/test_tutorial.py::test_custom_agent_warns_about_update_fields_its_factories_ignore",
    ],
)
def _(monkeypatch):
    monkeypatch.setattr(agent_module, "warn_unread_update_fields", lambda *args, **kwargs: None)


@mutant(
    "update-cfg-recorder-left-in-config",
    "the read-recording copy of update_cfg stays in the agent's config",
    ["tests/test_config.py::test_the_recording_copy_never_leaks_into_the_stored_config"],
)
def _(monkeypatch):
    original = agent_module.recording_update_reads

    @contextlib.contextmanager
    def recording_update_reads(config):
        with original(config) as reads:
            yield reads
            recorder = config.update_cfg
        config.update_cfg = recorder

    monkeypatch.setattr(agent_module, "recording_update_reads", recording_update_reads)
