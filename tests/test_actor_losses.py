"""The SAC and TD3 actor losses, SAC's temperature loss and both agents' critic targets, checked
against numbers computed here with numpy, with hand-set policies and critics.

Actions live in ``[-1, 3]`` (``loc = 1``, ``scale = 2``), so that both the squashing and the
rescaling to the bounds matter. The critics are linear in the action, ``Q_i(s, a) = w_i a + b_i``,
with slopes of opposite signs: which of the two is smaller depends on the action, so the minimum
(and not the maximum, nor either critic alone) is what the numbers check. Critic optimizers are
``optax.set_to_zero()``: the critic gradient step leaves the critics as set, and the actor and
temperature steps (plain SGD) move their params by ``-learning_rate * grad``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from envs import Target, make_vec
from helpers import assert_trees_equal, small_config

from kitae.algos import SACParams, TD3Params
from kitae.algos import sac as sac_module
from kitae.algos import td3 as td3_module
from kitae.buffer import Experience
from kitae.config import AlgoConfig
from kitae.modules.train_state import TrainState

LOW, HIGH = -1.0, 3.0
LOC, SCALE = 1.0, 2.0
OBS_IDS = jnp.array([[0.0], [1.0], [2.0]])
"""Three observations; each names a row of the hand-set actor tables."""


def bounded_config(params_type: type, **params) -> AlgoConfig:
    """A config whose action space is ``Box(-1, 3, (1,))`` (observations: ``Target``'s)."""
    config = small_config(
        params_type,
        make_vec(Target, 1),
        params={"hidden_sizes": (8,), **params},
        update={"learning_rate": 1.0, "max_buffer_size": 64, "batch_size": 3},
    )
    config.env_cfg.action_space = gym.spaces.Box(LOW, HIGH, (1,), np.float32)
    return config


def linear_critics(params, observations, actions):
    """``[C, B]`` critics ``w_i * a + b_i``."""
    del observations
    return params["w"][:, None] * actions[None, :, 0] + params["b"][:, None]


def rows(observations):
    return observations[:, 0].astype(jnp.int32)


def critic_state(params, target_params) -> TrainState:
    return TrainState.create(
        apply_fn=linear_critics,
        params=jax.tree.map(jnp.asarray, params),
        target_params=jax.tree.map(jnp.asarray, target_params),
        tx=optax.set_to_zero(),
    )


# ---- SAC -------------------------------------------------------------------------------------

SAC_MEAN = np.array([[-0.3], [0.1], [0.6]])
SAC_LOG_STD = np.array([[-1.0], [-0.5], [0.0]])
SAC_ALPHA = 0.5
SAC_TARGET_ENTROPY = -0.5
SAC_CRITICS = {"w": np.array([1.0, -1.0]), "b": np.array([0.0, 2.0])}  # min(a, 2 - a)
SAC_TARGET_CRITICS = {"w": np.array([0.5, -0.5]), "b": np.array([1.0, 2.0])}  # cross at a = 1


def sac_state() -> sac_module.SACState:
    """Gaussian actor ``(mean[i], log_std[i])`` at observation ``i``; critics ``a`` and
    ``2 - a``; targets ``0.5 a + 1`` and ``-0.5 a + 2``; temperature 0.5."""

    def actor_apply(params, observations):
        return params["mean"][rows(observations)], params["log_std"][rows(observations)]

    actor_params = {
        "mean": jnp.asarray(SAC_MEAN, jnp.float32),
        "log_std": jnp.asarray(SAC_LOG_STD, jnp.float32),
    }
    return sac_module.SACState(
        actor=TrainState.create(apply_fn=actor_apply, params=actor_params, tx=optax.sgd(1.0)),
        critic=critic_state(SAC_CRITICS, SAC_TARGET_CRITICS),
        alpha=TrainState.create(
            apply_fn=sac_module.alpha_value,
            params={"log_alpha": jnp.asarray(math.log(SAC_ALPHA), jnp.float32)},
            tx=optax.sgd(1.0),
        ),
    )


def squashed_sample_by_hand(mean, log_std, eps):
    """``a = loc + scale * tanh(u)``, ``u = mean + exp(log_std) * eps``, and ``log pi(a)``:
    the Gaussian density of ``u`` minus ``log |da/du| = log(scale (1 - tanh(u)^2))``."""
    u = mean + np.exp(log_std) * eps
    a = LOC + SCALE * np.tanh(u)
    log_gaussian = -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)
    log_pi = np.sum(log_gaussian - np.log(SCALE * (1 - np.tanh(u) ** 2)), axis=-1)
    return a, log_pi


def sac_actor_loss_by_hand(mean, log_std, eps):
    """``mean(alpha * log pi(a|s) - min(Q1, Q2)(s, a))`` at the reparameterised sample."""
    a, log_pi = squashed_sample_by_hand(mean, log_std, eps)
    q1 = SAC_CRITICS["w"][0] * a[:, 0] + SAC_CRITICS["b"][0]
    q2 = SAC_CRITICS["w"][1] * a[:, 0] + SAC_CRITICS["b"][1]
    return np.mean(SAC_ALPHA * log_pi - np.minimum(q1, q2))


def finite_difference_gradient(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


@pytest.fixture(scope="module")
def sac_update():
    """One SAC update step of the hand-set state, with the key of the actor's sample."""
    config = bounded_config(
        SACParams, gamma=0.5, tau=0.25, target_entropy=SAC_TARGET_ENTROPY, learn_alpha=True
    )
    state = sac_state()
    batch = sac_module.SACBatch(OBS_IDS, jnp.ones((3, 1)), jnp.zeros(3))
    key = jax.random.PRNGKey(11)
    new_state, info = jax.jit(sac_module.update_step_factory(config))(state, key, batch)
    eps = np.asarray(jax.random.normal(key, (3, 1)), np.float64)  # the actor's reparam noise
    return state, new_state, info, eps


def test_sac_actor_loss_by_hand(sac_update):
    _, _, info, eps = sac_update
    a, log_pi = squashed_sample_by_hand(SAC_MEAN, SAC_LOG_STD, eps)
    # the sampled actions fall on both sides of a = 1, where the two critics cross
    assert (a < 1.0).any() and (a > 1.0).any()
    np.testing.assert_allclose(
        float(info["loss_actor"]), sac_actor_loss_by_hand(SAC_MEAN, SAC_LOG_STD, eps), rtol=1e-5
    )
    np.testing.assert_allclose(float(info["entropy"]), -np.mean(log_pi), rtol=1e-5)
    np.testing.assert_allclose(float(info["alpha"]), SAC_ALPHA, rtol=1e-6)
    # the entropy term matters here: without it the loss would be off by alpha * mean(log pi)
    assert abs(SAC_ALPHA * np.mean(log_pi)) > 0.1


def test_sac_actor_gradient_is_the_reparameterised_gradient(sac_update):
    state, new_state, _, eps = sac_update
    grad_mean = finite_difference_gradient(
        lambda m: sac_actor_loss_by_hand(m, SAC_LOG_STD, eps), SAC_MEAN
    )
    grad_log_std = finite_difference_gradient(
        lambda s: sac_actor_loss_by_hand(SAC_MEAN, s, eps), SAC_LOG_STD
    )
    np.testing.assert_allclose(
        np.asarray(new_state.actor.params["mean"]), SAC_MEAN - grad_mean, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(new_state.actor.params["log_std"]),
        SAC_LOG_STD - grad_log_std,
        rtol=1e-4,
        atol=1e-5,
    )
    # the critics were not moved (set_to_zero), their targets are the Polyak mix
    for name in ("w", "b"):
        np.testing.assert_array_equal(new_state.critic.params[name], state.critic.params[name])
        np.testing.assert_allclose(
            np.asarray(new_state.critic.target_params[name]),
            0.25 * SAC_CRITICS[name] + 0.75 * SAC_TARGET_CRITICS[name],
            rtol=1e-6,
        )


def test_sac_temperature_loss_and_step_by_hand(sac_update):
    state, new_state, info, eps = sac_update
    _, log_pi = squashed_sample_by_hand(SAC_MEAN, SAC_LOG_STD, eps)
    log_alpha = math.log(SAC_ALPHA)
    # loss -mean(log_alpha * (log pi + target)); its gradient -mean(log pi + target)
    expected_loss = -log_alpha * np.mean(log_pi + SAC_TARGET_ENTROPY)
    np.testing.assert_allclose(float(info["loss_alpha"]), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(
        float(new_state.alpha.params["log_alpha"]),
        log_alpha + np.mean(log_pi + SAC_TARGET_ENTROPY),
        rtol=1e-5,
    )


def test_sac_critic_target_is_min_of_target_critics_minus_entropy_term_by_hand():
    config = bounded_config(SACParams, gamma=0.5, tau=0.25)
    state = sac_state()
    experience = Experience(
        observation=jnp.zeros((3, 1)),
        action=jnp.zeros((3, 1)),
        reward=jnp.array([1.0, -1.0, 0.5]),
        done=jnp.array([False, True, False]),
        next_observation=jnp.array([[2.0], [1.0], [0.0]]),
    )
    key = jax.random.PRNGKey(5)
    batch = jax.jit(sac_module.process_experience_factory(config))(state, key, experience)
    # the next actions are sampled from the policy at the next observations [2, 1, 0]
    eps = np.asarray(jax.random.normal(key, (3, 1)), np.float64)
    a, log_pi = squashed_sample_by_hand(SAC_MEAN[[2, 1, 0]], SAC_LOG_STD[[2, 1, 0]], eps)
    q1, q2 = 0.5 * a[:, 0] + 1.0, -0.5 * a[:, 0] + 2.0  # the target critics cross at a = 1
    soft_value = np.minimum(q1, q2) - SAC_ALPHA * log_pi
    expected = np.array([1.0, -1.0, 0.5]) + 0.5 * np.array([1.0, 0.0, 1.0]) * soft_value
    np.testing.assert_allclose(np.asarray(batch.target), expected, rtol=1e-5)
    assert (a[[0, 2]] < 1.0).any() and (a[[0, 2]] > 1.0).any()


# ---- TD3 -------------------------------------------------------------------------------------

TD3_U = np.array([[-0.5], [0.2], [1.0]])
TD3_CRITICS = {"w": np.array([2.0, -1.0]), "b": np.array([0.5, 1.0])}  # 2a + 0.5 and 1 - a
TD3_TARGET_CRITICS = {"w": np.array([1.0, -1.0]), "b": np.array([0.0, 2.2])}  # a and 2.2 - a
TD3_LR = 0.5


def td3_state() -> td3_module.TD3State:
    """Deterministic actor ``u[i]`` at observation ``i`` (target actor: ``u = 0``, the middle of
    the bounds); critics ``2a + 0.5`` and ``1 - a``; target critics ``a`` and ``2.2 - a``."""

    def actor_apply(params, observations):
        return params["u"][rows(observations)]

    return td3_module.TD3State(
        actor=TrainState.create(
            apply_fn=actor_apply,
            params={"u": jnp.asarray(TD3_U, jnp.float32)},
            target_params={"u": jnp.zeros((3, 1), jnp.float32)},
            tx=optax.sgd(TD3_LR),
        ),
        critic=critic_state(TD3_CRITICS, TD3_TARGET_CRITICS),
    )


def td3_actor_loss_and_grad_by_hand(u):
    """``-mean(Q1(s, mu(s)))`` with ``mu = 1 + 2 tanh(u)``, and its gradient in ``u``."""
    a = LOC + SCALE * np.tanh(u)
    loss = -np.mean(TD3_CRITICS["w"][0] * a + TD3_CRITICS["b"][0])
    grad = -TD3_CRITICS["w"][0] * SCALE * (1 - np.tanh(u) ** 2) / len(u)
    return loss, grad


def test_td3_actor_loss_uses_critic_one_and_updates_every_policy_delay_steps_by_hand():
    config = bounded_config(TD3Params, gamma=0.5, tau=0.25, policy_delay=3)
    update = jax.jit(td3_module.update_step_factory(config))
    batch = td3_module.TD3Batch(OBS_IDS, jnp.ones((3, 1)), jnp.zeros(3))
    state = td3_state()
    u, u_target = TD3_U.copy(), np.zeros((3, 1))
    critic_target = {k: v.copy() for k, v in TD3_TARGET_CRITICS.items()}
    for step in range(1, 8):
        previous = state
        state, info = update(state, jax.random.PRNGKey(step), batch)
        loss, grad = td3_actor_loss_and_grad_by_hand(u)
        np.testing.assert_allclose(float(info["loss_actor"]), loss, rtol=1e-5)
        assert int(state.critic.step) == step and int(state.actor.step) == step // 3
        if step % 3 == 0:  # critic steps 3 and 6: actor step, then both targets move
            u = u - TD3_LR * grad
            u_target = 0.25 * u + 0.75 * u_target
            critic_target = {k: 0.25 * TD3_CRITICS[k] + 0.75 * v for k, v in critic_target.items()}
            np.testing.assert_allclose(np.asarray(state.actor.params["u"]), u, rtol=1e-5)
            np.testing.assert_allclose(
                np.asarray(state.actor.target_params["u"]), u_target, rtol=1e-5, atol=1e-7
            )
            for k, v in critic_target.items():
                np.testing.assert_allclose(np.asarray(state.critic.target_params[k]), v, rtol=1e-6)
        else:  # between them nothing but the critic moves (here not even it: set_to_zero)
            for name in ("actor", "critic"):
                new, old = getattr(state, name), getattr(previous, name)
                assert_trees_equal(new.params, old.params)
                assert_trees_equal(new.target_params, old.target_params)


def test_td3_critic_target_smooths_with_clipped_noise_and_takes_the_min_by_hand():
    # noise std 1 and clip 0.1, relative to the bounds: std 2 and clip 0.2 in action units
    config = bounded_config(TD3Params, gamma=0.5, target_policy_noise=1.0, target_noise_clip=0.1)
    n = 8
    experience = Experience(
        observation=jnp.zeros((n, 1)),
        action=jnp.zeros((n, 1)),
        reward=jnp.arange(n, dtype=jnp.float32),
        done=jnp.arange(n) % 4 == 3,
        next_observation=jnp.zeros((n, 1)),
    )
    key = jax.random.PRNGKey(2)
    batch = jax.jit(td3_module.process_experience_factory(config))(td3_state(), key, experience)
    eps = np.asarray(jax.random.normal(key, (n, 1)), np.float64)[:, 0]
    # target actor: u = 0, a = 1; noise 2 eps clipped to [-0.2, 0.2]
    a = np.clip(1.0 + np.clip(2.0 * eps, -0.2, 0.2), LOW, HIGH)
    assert (a == 0.8).any() and (a == 1.2).any()  # the clip binds on both sides
    q_next = np.minimum(a, 2.2 - a)  # a below 1.1, 2.2 - a above
    done = np.arange(n) % 4 == 3
    expected = np.arange(n) + 0.5 * (1 - done) * q_next
    np.testing.assert_allclose(np.asarray(batch.target), expected, rtol=1e-5, atol=1e-6)
