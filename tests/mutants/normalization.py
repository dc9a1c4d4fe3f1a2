"""Mutants of observation normalisation and reward scaling (:mod:`kitae.normalization`)."""

from __future__ import annotations

import jax.numpy as jnp

import kitae.algos.ppo as ppo
import kitae.checkpoint as checkpoint
import kitae.checkpoint.restoring as restoring
import kitae.compiled as compiled
import kitae.normalization as normalization
from mutants import mutant

T = "tests/test_normalization.py::"
MERGE = T + "test_merging_batches_gives_the_statistics_of_their_concatenation"
BY_HAND = T + "test_update_statistics_by_hand_and_under_jit"
CLIP = T + "test_normalize_centres_scales_and_clips"
REWARDS = T + "test_reward_scaling_by_hand_with_an_episode_end_in_the_middle"
ACCUMULATOR = T + "test_reward_accumulator_carries_across_rollouts_and_resets_at_episode_ends"
ROLLOUT = T + "test_normalize_rollout_uses_the_acting_statistics_then_merges_the_rollout"
GYM = T + "test_ppo_normalizes_observations_on_the_gymnasium_path"
COMPILED = T + "test_ppo_normalizes_observations_on_the_compiled_path"
SAVED = T + "test_statistics_are_saved_and_restored"
EVAL = T + "test_evaluation_does_not_change_the_statistics"


@mutant(
    "normalization-variance-merge-drops-the-mean-shift",
    "the parallel variance merge forgets the delta^2 * n_a * n_b / n term",
    [MERGE, BY_HAND],
)
def _(monkeypatch):
    def update_statistics(stats, batch):
        batch = batch.astype(jnp.float32)
        n = jnp.asarray(batch.shape[0], jnp.float32)
        total = stats.count + n
        mean = stats.mean + (batch.mean(0) - stats.mean) * n / total
        var = (stats.var * stats.count + batch.var(0) * n) / total
        return normalization.RunningStatistics(count=total, mean=mean, var=var)

    monkeypatch.setattr(normalization, "update_statistics", update_statistics)


@mutant(
    "normalization-does-not-clip",
    "normalised observations are not clipped",
    [CLIP],
)
def _(monkeypatch):
    def normalize(stats, x, clip, epsilon=1e-8):
        return (x.astype(jnp.float32) - stats.mean) / jnp.sqrt(stats.var + epsilon)

    monkeypatch.setattr(normalization, "normalize", normalize)


@mutant(
    "reward-scaler-not-reset-at-episode-end",
    "the discounted-return accumulator runs on across episode ends",
    [REWARDS, ACCUMULATOR],
)
def _(monkeypatch):
    original = normalization.scale_rewards

    def scale_rewards(return_stats, discounted_return, r_t, ended_t, *args, **kwargs):
        never = jnp.zeros_like(ended_t)
        return original(return_stats, discounted_return, r_t, never, *args, **kwargs)

    monkeypatch.setattr(normalization, "scale_rewards", scale_rewards)


@mutant(
    "rollout-normalized-with-the-updated-statistics",
    "the update normalises the rollout with statistics that already include it (not those the "
    "behaviour policy acted with)",
    [ROLLOUT],
)
def _(monkeypatch):
    original = normalization.normalize_rollout

    def normalize_rollout(state, rollout):
        norm = state.normalization
        flat = rollout.observation.reshape((-1, *norm.observation.mean.shape))
        updated = normalization.update_statistics(norm.observation, flat)
        return original(state.replace(normalization=norm.replace(observation=updated)), rollout)

    monkeypatch.setattr(normalization, "normalize_rollout", normalize_rollout)


@mutant(
    "explore-ignores-observation-statistics",
    "PPO acts on raw observations while its update sees normalised ones",
    [GYM],
)
def _(monkeypatch):
    monkeypatch.setattr(ppo, "normalize_observation", lambda state, observations: observations)


@mutant(
    "compiled-path-skips-normalization",
    "the compiled loop does not normalise rollouts nor update the statistics",
    [COMPILED],
)
def _(monkeypatch):
    original = compiled.CompiledTrain.__init__

    def __init__(self, *args, **kwargs):
        kwargs["prepare_rollout_fn"] = None
        original(self, *args, **kwargs)

    monkeypatch.setattr(compiled.CompiledTrain, "__init__", __init__)


@mutant(
    "normalization-statistics-not-restored",
    "restoring a checkpoint keeps the agent's fresh statistics",
    [SAVED],
)
def _(monkeypatch):
    original = restoring.restore_agent

    def restore_agent(agent, path):
        fresh = agent.state
        loaded = original(agent, path)
        if normalization.normalization_of(fresh) is not None:
            agent.state = agent.state.replace(normalization=fresh.normalization)
        return loaded

    monkeypatch.setattr(restoring, "restore_agent", restore_agent)
    monkeypatch.setattr(checkpoint, "restore_agent", restore_agent)


@mutant(
    "inference-load-drops-normalization-statistics",
    "load_for_inference restores the parameters but not the observation statistics",
    [SAVED],
)
def _(monkeypatch):
    monkeypatch.setattr(restoring, "normalization_of", lambda state: None)


@mutant(
    "evaluation-updates-normalization-statistics",
    "greedy acting merges the observations it sees into the statistics",
    [EVAL],
)
def _(monkeypatch):
    original = ppo.PPO.select_action

    def select_action(self, observation):
        norm = normalization.normalization_of(self.state)
        if norm is not None and norm.observation is not None:
            stats = normalization.update_statistics(norm.observation, jnp.asarray(observation))
            self.state = self.state.replace(normalization=norm.replace(observation=stats))
            self._acting_state = None
        return original(self, observation)

    monkeypatch.setattr(ppo.PPO, "select_action", select_action)
