"""Twin Delayed DDPG (TD3) and DDPG, its one-critic, undelayed, unsmoothed special case.

Actions live in the bounds of a 1-D Box: the actor's output ``u`` is squashed into them,
``a = loc + scale * tanh(u)``. Every noise level is relative to the bounds: a standard deviation
``sigma`` means ``sigma * scale`` in env units (``scale = (high - low) / 2``), so a setting
means the same thing whatever the bounds.

See "Addressing Function Approximation Error in Actor-Critic Methods", Fujimoto et al., 2018,
and "Continuous control with deep reinforcement learning", Lillicrap et al., 2016.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from kitae.buffer import Experience
from kitae.config import (
    AlgoConfig,
    AlgoParams,
    EncoderParams,
    UpdateConfig,
    check_int_param,
    check_tau,
)
from kitae.loss import loss_mean_squared_error
from kitae.modules.actor import LinearHeadActor
from kitae.modules.critic import critics_factory
from kitae.modules.distributions import (
    ActionBounds,
    action_bounds,
    clip_to_bounds,
    squash_to_bounds,
)
from kitae.modules.encoders import network_encoder
from kitae.modules.modules import init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.train_state import AgentState, TrainState
from kitae.off_policy import OffPolicyAgent
from kitae.schedules import off_policy_gradient_steps
from kitae.timesteps import compute_td_targets
from kitae.types import Params


@dataclass
class TD3Params(AlgoParams, EncoderParams):
    """TD3 hyperparameters.

    The defaults, with ``TD3.default_update_cfg`` (learning rate 1e-3, batch 256, 200k replay)
    and one env, are the RL-Zoo Pendulum-v1 setting: gamma 0.98, 400-300 torsos, Gaussian
    exploration noise 0.1, 10,000 uniformly random transitions before learning, one gradient
    step per transition (RL-Zoo takes an episode's worth after each episode: the same ratio);
    the rest are the defaults of Fujimoto et al. (policy delay 2, target noise 0.2 clipped at
    0.5, tau 0.005).

    Attributes:
        gamma: discount.
        tau: Polyak rate of the actor and critic targets.
        policy_delay: critic gradient steps per actor (and target) update.
        target_policy_noise: std of the target action's Gaussian noise, relative to the bounds
            (times ``(high - low) / 2``).
        target_noise_clip: the target noise is clipped to ``+-target_noise_clip``, relative to
            the bounds.
        exploration_noise: std of the Gaussian exploration noise, relative to the bounds.
        n_critics: number of critics; the target takes their minimum.
        skip_steps: transitions between two updates (each of ``update_cfg.n_epochs`` gradient
            steps).
        start_step: transitions collected before the first update (-1: as soon as a batch fits).
        random_warmup: act uniformly at random within the bounds until ``start_step``.
        hidden_sizes: actor and critic torsos (MLPs on the encoder's features; a continuous
            critic's MLP reads the features and the action).
        activation: torso activation.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`);
            the actor and each critic have their own.
    """

    gamma: float = 0.98
    tau: float = 0.005
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    exploration_noise: float = 0.1
    n_critics: int = 2
    skip_steps: int = 1
    start_step: int = 10_000
    random_warmup: bool = True
    hidden_sizes: Sequence[int] = (400, 300)
    activation: str = "relu"

    def validate(self, config: AlgoConfig) -> None:
        check_tau(self)
        check_int_param(self, "policy_delay", 1)
        check_int_param(self, "n_critics", 1)
        for name in ("target_policy_noise", "target_noise_clip", "exploration_noise"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not (0.0 <= value < math.inf):
                raise ValueError(
                    f"algo_params.{name}={value!r} is invalid: it must be a finite number >= 0 "
                    "(a fraction of the action range's half-width)."
                )
        action_bounds(config.env_cfg.action_space, type(self).__name__.removesuffix("Params"))


@dataclass
class DDPGParams(TD3Params):
    """DDPG hyperparameters: :class:`TD3Params` with one critic, no policy delay and no target
    smoothing.

    The defaults are the RL-Zoo Pendulum-v1 setting (the same as TD3's there: gamma 0.98,
    learning rate 1e-3, 400-300 torsos, Gaussian exploration noise 0.1, 10,000 random
    transitions first), i.e. the DDPG of Fujimoto et al., 2018, rather than the original's
    Ornstein-Uhlenbeck noise and critic weight decay.
    """

    policy_delay: int = 1
    target_policy_noise: float = 0.0
    target_noise_clip: float = 0.0
    n_critics: int = 1


class TD3State(AgentState):
    """The actor and the critics, each a TrainState with its target params."""

    actor: TrainState
    critic: TrainState


class TD3Batch(NamedTuple):
    """A processed batch: observations ``[B, ...]``, actions ``[B, A]``, TD targets ``[B]``."""

    observation: Any
    action: jax.Array
    target: jax.Array


# ---- numerics ----------------------------------------------------------------------------------


def exploration_action(
    a_t: jax.Array, eps_t: jax.Array, bounds: ActionBounds, noise_std: float | jax.Array
) -> jax.Array:
    """``clip(a_t + noise_std * scale * eps_t, low, high)``: Gaussian exploration noise scaled to
    the bounds (``rlax.add_gaussian_noise`` neither scales nor clips).

    Args:
        a_t: ``[B, A]`` actions of the policy.
        eps_t: ``[B, A]`` standard normal noise.
        bounds: the action bounds.
        noise_std: noise std relative to the bounds.

    Returns:
        ``[B, A]`` noisy actions within the bounds.
    """
    chex.assert_rank([a_t, eps_t], 2)
    chex.assert_equal_shape([a_t, eps_t])
    return jnp.clip(a_t + noise_std * bounds.scale * eps_t, bounds.low, bounds.high)


def smoothed_target_action(
    a_tp1: jax.Array,
    eps_tp1: jax.Array,
    bounds: ActionBounds,
    noise_std: float,
    noise_clip: float,
) -> jax.Array:
    """Target policy smoothing: ``clip(a + clip(noise_std * scale * eps, +-noise_clip * scale),
    low, high)``, with noise std and clip relative to the bounds (written here: rlax's noise
    helpers neither scale to the bounds nor clip).

    Args:
        a_tp1: ``[B, A]`` target actor's actions at the next observations.
        eps_tp1: ``[B, A]`` standard normal noise.
        bounds: the action bounds.
        noise_std: noise std relative to the bounds.
        noise_clip: noise clip relative to the bounds.

    Returns:
        ``[B, A]`` smoothed target actions within the bounds.
    """
    chex.assert_rank([a_tp1, eps_tp1], 2)
    chex.assert_equal_shape([a_tp1, eps_tp1])
    limit = noise_clip * bounds.scale
    noise = jnp.clip(noise_std * bounds.scale * eps_tp1, -limit, limit)
    return jnp.clip(a_tp1 + noise, bounds.low, bounds.high)


# ---- factories ---------------------------------------------------------------------------------


def train_state_td3_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TD3State:
    """Actor and critics with their targets (equal to the params at first)."""
    p: TD3Params = config.algo_params
    space = config.env_cfg.action_space
    obs_space = config.env_cfg.observation_space
    bounds = action_bounds(space, "TD3")
    encoder = network_encoder(config, preprocess_fn)
    hidden = tuple(p.hidden_sizes)
    actor = LinearHeadActor(len(bounds.low), hidden, p.activation, preprocess_fn, encoder)
    critic = critics_factory(
        space,
        p.n_critics,
        hidden_sizes=hidden,
        activation=p.activation,
        preprocess_fn=preprocess_fn,
        encoder=encoder,
    )
    k_actor, k_critic = jax.random.split(key)
    actor_params = init_params(k_actor, actor, [obs_space], tabulate)
    critic_params = init_params(k_critic, critic, [obs_space, bounds.low.shape], tabulate)
    n_steps = off_policy_gradient_steps(config)
    return TD3State(
        actor=TrainState.create(
            apply_fn=actor.apply,
            params=actor_params,
            target_params=actor_params,
            tx=make_optimizer(config.update_cfg, math.ceil(n_steps / p.policy_delay)),
        ),
        critic=TrainState.create(
            apply_fn=critic.apply,
            params=critic_params,
            target_params=critic_params,
            tx=make_optimizer(config.update_cfg, n_steps),
        ),
    )


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], greedy=False, uniform=False,
    noise_std=exploration_noise) -> (actions [B, A], log_probs [B])``.

    ``greedy``: the actor's action; ``uniform``: uniformly random within the bounds; otherwise
    the actor's action plus Gaussian noise (:func:`exploration_action`). The policy is
    deterministic: ``log_probs`` are zeros.
    """
    p: TD3Params = config.algo_params
    bounds = action_bounds(config.env_cfg.action_space, "TD3")

    def explore_fn(
        state: TD3State,
        key: jax.Array,
        observations: jax.Array,
        greedy: bool | jax.Array = False,
        uniform: bool | jax.Array = False,
        noise_std: float | jax.Array = p.exploration_noise,
    ) -> tuple[jax.Array, jax.Array]:
        actor = state.actor
        actions = squash_to_bounds(actor.apply_fn(actor.params, observations), bounds)
        k_noise, k_uniform = jax.random.split(key)
        noisy = exploration_action(
            actions, jax.random.normal(k_noise, actions.shape), bounds, noise_std
        )
        random = jax.random.uniform(k_uniform, actions.shape, minval=bounds.low, maxval=bounds.high)
        actions = jnp.where(greedy, actions, jnp.where(uniform, random, noisy))
        return actions, jnp.zeros(actions.shape[:1], jnp.float32)

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B]) -> TD3Batch`` with TD targets
    ``r + gamma * (1 - done) * min_i Q_target_i(s', a~)``, ``a~`` the smoothed target action."""
    p: TD3Params = config.algo_params
    bounds = action_bounds(config.env_cfg.action_space, "TD3")

    def process_experience_fn(state: TD3State, key: jax.Array, experience: Experience) -> TD3Batch:
        actor, critic = state.actor, state.critic
        next_obs = experience.next_observation
        a_tp1 = squash_to_bounds(actor.apply_fn(actor.target_params, next_obs), bounds)
        a_tp1 = smoothed_target_action(
            a_tp1,
            jax.random.normal(key, a_tp1.shape),
            bounds,
            p.target_policy_noise,
            p.target_noise_clip,
        )
        q_tp1 = critic.apply_fn(critic.target_params, next_obs, a_tp1)  # [C, B]
        discounts = p.gamma * (1.0 - experience.done.astype(jnp.float32))
        targets = compute_td_targets(
            experience.reward.astype(jnp.float32), discounts, q_tp1.min(axis=0)
        )
        return TD3Batch(experience.observation, experience.action, targets)

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, TD3Batch) -> (state, info)``: one critic gradient step on
    ``sum_i mean((Q_i(s, a) - target)^2)``; every ``policy_delay`` critic steps, one actor step
    on ``-mean(Q_1(s, pi(s)))`` and a Polyak update of both targets."""
    p: TD3Params = config.algo_params
    bounds = action_bounds(config.env_cfg.action_space, "TD3")

    def update_step_fn(state: TD3State, key: jax.Array, batch: TD3Batch):
        del key
        critic = state.critic

        def critic_loss_fn(params: Params):
            q = critic.apply_fn(params, batch.observation, batch.action)  # [C, B]
            loss = jnp.sum(jax.vmap(loss_mean_squared_error, (0, None))(q, batch.target))
            return loss, q.mean()

        (critic_loss, q_mean), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            critic.params
        )
        critic = critic.apply_gradients(grads=grads)

        def actor_loss_fn(params: Params):
            actions = squash_to_bounds(state.actor.apply_fn(params, batch.observation), bounds)
            return -jnp.mean(critic.apply_fn(critic.params, batch.observation, actions)[0])

        def update_actor(actor: TrainState) -> tuple[TrainState, TrainState, jax.Array]:
            loss, grads = jax.value_and_grad(actor_loss_fn)(actor.params)
            actor = actor.apply_gradients(grads=grads).update_target(p.tau)
            return actor, critic.update_target(p.tau), loss

        def skip_actor(actor: TrainState) -> tuple[TrainState, TrainState, jax.Array]:
            return actor, critic, actor_loss_fn(actor.params)

        actor, critic, actor_loss = jax.lax.cond(
            critic.step % p.policy_delay == 0, update_actor, skip_actor, state.actor
        )
        info = {"loss_critic": critic_loss, "loss_actor": actor_loss, "qvalue_mean": q_mean}
        return state.replace(actor=actor, critic=critic), info

    return update_step_fn


class TD3(OffPolicyAgent):
    """TD3 agent (see :class:`TD3Params`).

    ``explore`` acts uniformly at random until ``start_step`` (with ``random_warmup``), then adds
    Gaussian noise to the actor's action; ``select_action`` is the actor's action. Actions are
    within the env's bounds; the traced hyperparameter ``exploration_noise`` overrides the
    noise std on the compiled path.
    """

    params_type = TD3Params
    default_n_envs = 1
    traced_hyperparams = ("exploration_noise",)
    default_update_cfg = UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=False,
        max_grad_norm=None,
        max_buffer_size=200_000,
        batch_size=256,
        n_epochs=1,
    )
    factories = (
        train_state_td3_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )

    def explore(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        p: TD3Params = self.config.algo_params
        return self.explore_fn(
            self.acting_state,
            self.interact_keys(observation),
            observation,
            uniform=p.random_warmup and self.env_steps < p.start_step,
            noise_std=self.hyperparams.get("exploration_noise", p.exploration_noise),
        )

    def select_action(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, greedy=True
        )

    @functools.cached_property
    def bounds(self) -> ActionBounds:
        """The env's action bounds."""
        return action_bounds(self.config.env_cfg.action_space)

    def to_env_action(self, actions):
        """Clips to the bounds (a no-op up to rounding: the actions are already within them)."""
        return clip_to_bounds(actions, self.bounds)


class DDPG(TD3):
    """DDPG agent: :class:`TD3` with :class:`DDPGParams` (one critic, no delay, no smoothing)."""

    params_type = DDPGParams
