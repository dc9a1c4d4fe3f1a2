"""Mutants of the learning targets and losses: GAE and PPO's clipping, the distributional
bootstraps, the SAC and TD3 actor losses and critic targets, Polyak averaging, and the compiled
off-policy update."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

import kitae.algos.c51 as c51
import kitae.algos.iqn as iqn
import kitae.algos.ppo as ppo
import kitae.algos.qrdqn as qrdqn
import kitae.algos.sac as sac
import kitae.algos.td3 as td3
import kitae.compiled as compiled
import kitae.modules.train_state as train_state
from mutants import mutant

PPO_GAE = (
    "tests/test_ppo.py::"
    "test_process_experience_gae_cuts_terminations_and_bootstraps_truncations_by_hand"
)
PPO_REFERENCE = (
    "tests/test_compiled.py::test_compiled_ppo_update_matches_a_reference_written_with_optax"
)


def with_params(config, **changes):
    """``config`` with ``algo_params`` fields replaced."""
    return dataclasses.replace(
        config, algo_params=dataclasses.replace(config.algo_params, **changes)
    )


# ---- PPO ------------------------------------------------------------------------------------


@mutant(
    "gae-ignores-episode-ends",
    "GAE bootstraps and recurses through terminations and truncations",
    [PPO_GAE, PPO_REFERENCE],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        never = jnp.zeros_like(terminated_t)
        return original(r_t, v_t, v_tp1, never, never, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "gae-never-bootstraps",
    "GAE never bootstraps from the next observation's value (truncations and rollout ends)",
    [PPO_GAE, PPO_REFERENCE],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        return original(
            r_t, v_t, jnp.zeros_like(v_tp1), terminated_t, truncated_t, gamma, gae_lambda
        )

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "ppo-swaps-terminated-and-truncated",
    "PPO passes truncations as terminations and terminations as truncations to GAE",
    [PPO_GAE, PPO_REFERENCE],
)
def _(monkeypatch):
    original = ppo.compute_gae

    def compute_gae(r_t, v_t, v_tp1, terminated_t, truncated_t, gamma, gae_lambda):
        return original(r_t, v_t, v_tp1, truncated_t, terminated_t, gamma, gae_lambda)

    monkeypatch.setattr(ppo, "compute_gae", compute_gae)


@mutant(
    "ppo-clip-not-annealed",
    "PPO keeps clip_eps constant although clip_eps_annealing is set",
    ["tests/test_ppo.py::test_clip_range_anneals_over_the_runs_gradient_steps"],
)
def _(monkeypatch):
    original = ppo.update_step_factory

    def update_step_factory(config):
        return original(with_params(config, clip_eps_annealing=False))

    monkeypatch.setattr(ppo, "update_step_factory", update_step_factory)


@mutant(
    "ppo-clip-annealed-over-updates",
    "PPO anneals the clip range over the number of rollouts instead of gradient steps",
    ["tests/test_ppo.py::test_clip_range_anneals_over_the_runs_gradient_steps"],
)
def _(monkeypatch):
    def total_gradient_steps(config):
        u = config.update_cfg
        return config.train_cfg.n_env_steps // u.max_buffer_size

    monkeypatch.setattr(ppo, "total_gradient_steps", total_gradient_steps)


# ---- C51, QR-DQN, IQN -----------------------------------------------------------------------

DISTRIBUTIONAL_BOOTSTRAP = (
    "tests/test_distributional.py::"
    "test_distributional_bootstrap_uses_the_target_network_and_cuts_terminations"
)


def bootstraps_from_online_params(module):
    """Applies to ``module``: its targets come from the online params (no target network)."""

    def apply(monkeypatch):
        original = module.process_experience_factory

        def process_experience_factory(config):
            process = original(config)

            def process_experience_fn(state, key, experience):
                return process(state.replace(target_params=state.params), key, experience)

            return process_experience_fn

        monkeypatch.setattr(module, "process_experience_factory", process_experience_factory)

    return apply


def ignores_termination(module):
    """Applies to ``module``: its bootstrap discount ignores terminations."""

    def apply(monkeypatch):
        original = module.bootstrap_transition

        def bootstrap_transition(experience, gamma):
            return original(experience._replace(done=jnp.zeros_like(experience.done)), gamma)

        monkeypatch.setattr(module, "bootstrap_transition", bootstrap_transition)

    return apply


for _name, _module in (("c51", c51), ("qrdqn", qrdqn), ("iqn", iqn)):
    mutant(
        f"{_name}-bootstraps-from-online-params",
        f"{_name} evaluates its bootstrap with the online params instead of the target params",
        [f"{DISTRIBUTIONAL_BOOTSTRAP}[{_name}-double-q]"],
    )(bootstraps_from_online_params(_module))
    mutant(
        f"{_name}-ignores-termination",
        f"{_name} bootstraps through terminations",
        [f"{DISTRIBUTIONAL_BOOTSTRAP}[{_name}-double-q]"],
    )(ignores_termination(_module))


# ---- SAC ------------------------------------------------------------------------------------

SAC_ACTOR = "tests/test_actor_losses.py::test_sac_actor_loss_by_hand"
SAC_TARGET = (
    "tests/test_actor_losses.py::"
    "test_sac_critic_target_is_min_of_target_critics_minus_entropy_term_by_hand"
)


@mutant(
    "sac-actor-drops-entropy",
    "SAC's actor loss is -min Q without the alpha * log pi term",
    [SAC_ACTOR],
)
def _(monkeypatch):
    original = sac.update_step_factory

    def update_step_factory(config):
        update = original(config)

        def update_step_fn(state, key, batch):
            apply_fn = state.alpha.apply_fn
            zero = state.alpha.replace(apply_fn=lambda params: 0.0 * apply_fn(params))
            new_state, info = update(state.replace(alpha=zero), key, batch)
            return new_state.replace(alpha=new_state.alpha.replace(apply_fn=apply_fn)), info

        return update_step_fn

    monkeypatch.setattr(sac, "update_step_factory", update_step_factory)


@mutant(
    "sac-actor-uses-max-of-critics",
    "SAC's update (actor loss included) takes the max of the critics instead of the min",
    [SAC_ACTOR],
)
def _(monkeypatch):
    original = sac.update_step_factory

    def update_step_factory(config):
        update = original(config)

        def update_step_fn(state, key, batch):
            apply_fn = state.critic.apply_fn

            def max_apply(params, *args):
                q = apply_fn(params, *args)
                return jnp.broadcast_to(q.max(axis=0), q.shape)

            critic = state.critic.replace(apply_fn=max_apply)
            new_state, info = update(state.replace(critic=critic), key, batch)
            return new_state.replace(critic=new_state.critic.replace(apply_fn=apply_fn)), info

        return update_step_fn

    monkeypatch.setattr(sac, "update_step_factory", update_step_factory)


@mutant(
    "sac-target-uses-max-of-critics",
    "SAC's soft value takes the max of the target critics",
    [SAC_TARGET],
)
def _(monkeypatch):
    def soft_value(q_tp1, log_pi_tp1, alpha):
        return q_tp1.max(axis=0) - alpha * log_pi_tp1

    monkeypatch.setattr(sac, "soft_value", soft_value)


@mutant(
    "sac-target-drops-entropy",
    "SAC's soft value is min Q without the -alpha * log pi term",
    [SAC_TARGET],
)
def _(monkeypatch):
    def soft_value(q_tp1, log_pi_tp1, alpha):
        del log_pi_tp1, alpha
        return q_tp1.min(axis=0)

    monkeypatch.setattr(sac, "soft_value", soft_value)


# ---- TD3 ------------------------------------------------------------------------------------

TD3_ACTOR = (
    "tests/test_actor_losses.py::"
    "test_td3_actor_loss_uses_critic_one_and_updates_every_policy_delay_steps_by_hand"
)
TD3_TARGET = (
    "tests/test_actor_losses.py::"
    "test_td3_critic_target_smooths_with_clipped_noise_and_takes_the_min_by_hand"
)


@mutant("td3-actor-uses-critic-2", "TD3's actor maximises the second critic", [TD3_ACTOR])
def _(monkeypatch):
    original = td3.update_step_factory

    def update_step_factory(config):
        update = original(config)

        def update_step_fn(state, key, batch):
            apply_fn = state.critic.apply_fn
            reversed_critics = state.critic.replace(
                apply_fn=lambda params, *args: apply_fn(params, *args)[::-1]
            )
            new_state, info = update(state.replace(critic=reversed_critics), key, batch)
            return new_state.replace(critic=new_state.critic.replace(apply_fn=apply_fn)), info

        return update_step_fn

    monkeypatch.setattr(td3, "update_step_factory", update_step_factory)


@mutant(
    "td3-no-policy-delay",
    "TD3 updates the actor and the targets at every critic step",
    [TD3_ACTOR],
)
def _(monkeypatch):
    original = td3.update_step_factory
    monkeypatch.setattr(
        td3, "update_step_factory", lambda config: original(with_params(config, policy_delay=1))
    )


@mutant(
    "td3-no-target-smoothing",
    "TD3's target action is the target actor's, without the clipped noise",
    [TD3_TARGET],
)
def _(monkeypatch):
    def smoothed_target_action(a_tp1, eps_tp1, bounds, noise_std, noise_clip):
        del eps_tp1, bounds, noise_std, noise_clip
        return a_tp1

    monkeypatch.setattr(td3, "smoothed_target_action", smoothed_target_action)


@mutant(
    "td3-target-noise-not-clipped",
    "TD3's target smoothing noise is not clipped to target_noise_clip",
    [TD3_TARGET],
)
def _(monkeypatch):
    original = td3.smoothed_target_action

    def smoothed_target_action(a_tp1, eps_tp1, bounds, noise_std, noise_clip):
        del noise_clip
        return original(a_tp1, eps_tp1, bounds, noise_std, 1e6)

    monkeypatch.setattr(td3, "smoothed_target_action", smoothed_target_action)


# ---- target networks ------------------------------------------------------------------------


@mutant(
    "polyak-tau-ignored",
    "target updates copy the online params (tau = 1) whatever tau says",
    [
        "tests/test_train_state.py::test_update_target_polyak_tau_0_1_by_hand",
        TD3_ACTOR,
    ],
)
def _(monkeypatch):
    original = train_state.polyak_update

    def polyak_update(params, target_params, tau, step=0, period=1):
        del tau
        return original(params, target_params, 1.0, step, period)

    monkeypatch.setattr(train_state, "polyak_update", polyak_update)


@mutant(
    "compiled-off-policy-update-skips-target-update",
    "the compiled program's off-policy update leaves the target network where it was",
    ["tests/test_compiled.py::test_compiled_dqn_update_matches_a_reference_written_with_optax"],
)
def _(monkeypatch):
    original = compiled.make_off_policy_update

    def make_off_policy_update(buffer, process_experience_fn, update_step_fn, *args, **kwargs):
        def without_target_update(state, key, batch):
            new_state, info = update_step_fn(state, key, batch)
            return new_state.replace(target_params=state.target_params), info

        return original(buffer, process_experience_fn, without_target_update, *args, **kwargs)

    monkeypatch.setattr(compiled, "make_off_policy_update", make_off_policy_update)
