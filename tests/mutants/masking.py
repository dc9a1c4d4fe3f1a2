"""Mutants of action masking (explore, greedy acting, targets, policies, the search, the info
wrapper) and of PPO's MultiDiscrete policy."""

from __future__ import annotations

import sys

import distrax
import jax.numpy as jnp
import numpy as np

import kitae.algos.dqn as dqn
import kitae.algos.iqn as iqn
import kitae.algos.ppo as ppo
import kitae.algos.r2d2 as r2d2
import kitae.algos.sac as sac
import kitae.masking as masking
import kitae.modules.policy as policy
from mutants import mutant

T = "tests/test_masking.py::"
MD = "tests/test_multidiscrete.py::"


@mutant(
    "mask-explore-ignores-mask",
    "DQN's epsilon-greedy explores over every action, valid or not",
    [T + "test_q_learning_explore_and_greedy_pick_only_valid_actions[DQNParams]"],
)
def _(monkeypatch):
    original = dqn.masked_epsilon_greedy
    monkeypatch.setattr(
        dqn, "masked_epsilon_greedy", lambda key, q, eps, mask=None: original(key, q, eps, None)
    )


@mutant(
    "mask-random-over-all-actions",
    "epsilon-greedy's random actions are drawn among all actions (only the greedy one is masked)",
    [T + "test_epsilon_greedy_draws_only_valid_actions_with_the_right_probabilities[uniform]"],
)
def _(monkeypatch):
    def epsilon_greedy(key, qvalues, epsilon, mask=None):
        masked = masking.apply_mask(qvalues, mask)
        return distrax.EpsilonGreedy(masked, epsilon).sample_and_log_prob(seed=key)

    monkeypatch.setattr(masking, "epsilon_greedy", epsilon_greedy)


@mutant(
    "mask-r2d2-explore-ignores-mask",
    "R2D2's epsilon-greedy explores over every action",
    [T + "test_r2d2_explore_picks_only_valid_actions"],
)
def _(monkeypatch):
    original = r2d2.epsilon_greedy
    monkeypatch.setattr(
        r2d2, "epsilon_greedy", lambda key, q, eps, mask=None: original(key, q, eps, None)
    )


@mutant(
    "mask-greedy-ignores-mask",
    "the greedy action is the argmax over every action",
    [T + "test_dqn_greedy_takes_the_best_valid_q_value"],
)
def _(monkeypatch):
    original = masking.masked_argmax
    monkeypatch.setattr(masking, "masked_argmax", lambda values, mask: original(values, None))


@mutant(
    "mask-target-max-over-all-actions",
    "DQN / C51 / QR-DQN bootstrap from the max over every next action",
    [
        T + "test_dqn_targets_bootstrap_from_the_best_valid_next_action_by_hand[max]",
        T + "test_distributional_targets_use_the_only_valid_next_action[qrdqn]",
    ],
)
def _(monkeypatch):
    original = dqn.masked_argmax
    monkeypatch.setattr(dqn, "masked_argmax", lambda values, mask: original(values, None))


@mutant(
    "mask-iqn-target-ignores-mask",
    "IQN bootstraps from the max over every next action",
    [T + "test_distributional_targets_use_the_only_valid_next_action[iqn]"],
)
def _(monkeypatch):
    original = iqn.masked_argmax
    monkeypatch.setattr(iqn, "masked_argmax", lambda values, mask: original(values, None))


@mutant(
    "mask-ppo-loss-ignores-mask",
    "PPO's loss (not its acting) uses the unmasked policy",
    [T + "test_ppo_loss_uses_the_masked_policy"],
)
def _(monkeypatch):
    original = ppo.action_distribution

    def action_distribution(policy_output, discrete, mask=None):
        if sys._getframe(1).f_code.co_name == "loss_fn":
            mask = None
        return original(policy_output, discrete, mask)

    monkeypatch.setattr(ppo, "action_distribution", action_distribution)


@mutant(
    "mask-ppo-acting-ignores-mask",
    "PPO samples and acts greedily over every action",
    [T + "test_ppo_samples_only_valid_actions_with_masked_log_probs"],
)
def _(monkeypatch):
    original = ppo.action_mask

    def action_mask(observations):
        if sys._getframe(1).f_code.co_name == "explore_fn":
            return None
        return original(observations)

    monkeypatch.setattr(ppo, "action_mask", action_mask)


@mutant(
    "mask-sac-ignores-mask",
    "discrete SAC's policy ignores the mask",
    [T + "test_discrete_sac_explores_acts_and_bootstraps_among_valid_actions"],
)
def _(monkeypatch):
    monkeypatch.setattr(sac, "apply_mask", lambda values, mask: values)


@mutant(
    "mask-search-ignores-mask",
    "the search gets no invalid_actions",
    [T + "test_search_never_picks_an_invalid_action"],
)
def _(monkeypatch):
    import kitae.planning.search as search

    monkeypatch.setattr(search, "action_mask", lambda observations: None)


@mutant(
    "mask-wrapper-keeps-the-reset-mask",
    "ActionMaskObservation keeps the first mask instead of each step's",
    [T + "test_gymnasium_loop_trains_without_an_invalid_action[dqn-wrapped]"],
)
def _(monkeypatch):
    original = masking.ActionMaskObservation._observe

    def _observe(self, obs, info):
        if not hasattr(self, "_first_mask"):
            self._first_mask = original(self, obs, info)["action_mask"]
        return {"observation": obs, "action_mask": self._first_mask}

    monkeypatch.setattr(masking.ActionMaskObservation, "_observe", _observe)


@mutant(
    "multidiscrete-padding-has-probability",
    "the padded choices of a shorter sub-action get logit 0 instead of the masked value",
    [MD + "test_log_prob_entropy_and_mode_are_summed_over_sub_actions_by_hand"],
)
def _(monkeypatch):
    def multi_discrete_logits(logits, nvec):
        width = max(nvec)
        splits = np.cumsum(nvec)[:-1].tolist()
        parts = [
            jnp.pad(part, ((0, 0), (0, width - n)))
            for part, n in zip(jnp.split(logits, splits, axis=-1), nvec, strict=True)
        ]
        return jnp.stack(parts, axis=-2)

    monkeypatch.setattr(policy, "multi_discrete_logits", multi_discrete_logits)


@mutant(
    "multidiscrete-log-prob-of-first-sub-action",
    "PPO's MultiDiscrete log-probability and entropy count only the first sub-action",
    [
        MD + "test_log_prob_entropy_and_mode_are_summed_over_sub_actions_by_hand",
        MD + "test_ppo_acts_with_integer_action_vectors_and_greedy_is_the_argmax_of_each",
    ],
)
def _(monkeypatch):
    original = policy.action_distribution

    class FirstOnly(distrax.Independent):
        def log_prob(self, value):
            return self.distribution.log_prob(value)[..., 0]

        def entropy(self):
            return self.distribution.entropy()[..., 0]

    def action_distribution(policy_output, discrete, mask=None):
        if discrete and policy_output.ndim == 3:
            return FirstOnly(distrax.Categorical(logits=policy_output), 1)
        return original(policy_output, discrete, mask)

    monkeypatch.setattr(policy, "action_distribution", action_distribution)
    monkeypatch.setattr(ppo, "action_distribution", action_distribution)


@mutant(
    "mask-search-interior-unmasked",
    "the search masks invalid actions at the root only, not in the nodes below it",
    [T + "test_the_gumbel_search_never_expands_an_invalid_action_below_the_root"],
    requires=("mctx",),
)
def _(monkeypatch):
    import kitae.planning.search as search

    monkeypatch.setattr(search, "apply_mask", lambda values, mask: values)


@mutant(
    "mask-r2d2-targets-ignore-mask",
    "R2D2's bootstrap takes the best next action among all actions, valid or not",
    [T + "test_r2d2_targets_bootstrap_from_the_best_valid_next_action_by_hand"],
)
def _(monkeypatch):
    original = r2d2.masked_argmax
    monkeypatch.setattr(r2d2, "masked_argmax", lambda values, mask: original(values, None))
