"""Soft Actor-Critic with twin critics and automatic entropy tuning, for Box and Discrete actions.

Box actions: the policy is a tanh-squashed Gaussian rescaled to the action bounds
(:func:`kitae.modules.distributions.squashed_gaussian`), whose log-density includes the
log-determinants of the tanh and of the rescaling. Discrete actions: the policy is categorical
and every expectation over actions (soft value, actor loss, entropy) is computed exactly over
the ``K`` actions, with critics ``Q(s, .)`` giving all ``K`` values at once.

See "Soft Actor-Critic Algorithms and Applications", Haarnoja et al., 2018, and
"Soft Actor-Critic for Discrete Action Settings", Christodoulou, 2019.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import chex
import distrax
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

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
from kitae.masking import action_mask, apply_mask
from kitae.modules.actor import GaussianActor, LinearHeadActor
from kitae.modules.critic import critics_factory
from kitae.modules.distributions import (
    ActionBounds,
    action_bounds,
    clip_to_bounds,
    squashed_gaussian,
    squashed_log_prob,
    squashed_mode,
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
class SACParams(AlgoParams, EncoderParams):
    """SAC hyperparameters.

    The defaults, with ``SAC.default_update_cfg`` (learning rate 1e-3 for actor, critics and
    temperature, batch 256, one gradient step per transition, 1M replay) and one env, are the
    RL-Zoo Pendulum-v1 setting, i.e. the reference SAC of Haarnoja et al. with a learning rate
    of 1e-3: gamma 0.99, tau 0.005, 256-256 ReLU torsos, temperature learned from 1.0 toward a
    target entropy of ``-|A|``, learning after 100 uniformly random transitions. For discrete
    actions the target entropy is ``target_entropy_ratio * log K`` (0.98 in Christodoulou, 2019).

    Attributes:
        gamma: discount.
        tau: Polyak rate of the critic targets.
        target_update_period: gradient steps between two target updates.
        init_alpha: initial temperature (entropy coefficient).
        learn_alpha: tune the temperature toward ``target_entropy`` (else keep ``init_alpha``).
        target_entropy: the entropy target; ``None``: ``-|A|`` for Box actions,
            ``target_entropy_ratio * log K`` for ``Discrete(K)``.
        target_entropy_ratio: discrete actions: target entropy as a fraction of the maximum
            ``log K``.
        n_critics: number of critics; targets and the actor loss take their minimum.
        skip_steps: transitions between two updates (each of ``update_cfg.n_epochs`` gradient
            steps).
        start_step: transitions collected before the first update (-1: as soon as a batch fits).
        random_warmup: act uniformly at random until ``start_step``.
        hidden_sizes: actor and critic torsos (MLPs on the encoder's features; a continuous
            critic's MLP reads the features and the action).
        activation: torso activation.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`);
            the actor and each critic have their own.
    """

    gamma: float = 0.99
    tau: float = 0.005
    target_update_period: int = 1
    init_alpha: float = 1.0
    learn_alpha: bool = True
    target_entropy: float | None = None
    target_entropy_ratio: float = 0.98
    n_critics: int = 2
    skip_steps: int = 1
    start_step: int = 100
    random_warmup: bool = True
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    def validate(self, config: AlgoConfig) -> None:
        check_tau(self)
        check_int_param(self, "target_update_period", 1)
        check_int_param(self, "n_critics", 1)
        if not isinstance(self.init_alpha, numbers.Real) or not 0.0 < self.init_alpha < math.inf:
            raise ValueError(
                f"algo_params.init_alpha={self.init_alpha!r} is invalid: the temperature must be "
                "a finite number > 0."
            )
        if self.target_entropy is not None and not (
            isinstance(self.target_entropy, numbers.Real) and math.isfinite(self.target_entropy)
        ):
            raise ValueError(
                f"algo_params.target_entropy={self.target_entropy!r} is invalid: use a finite "
                "number, or None for the default."
            )
        if not isinstance(self.target_entropy_ratio, numbers.Real) or not (
            0.0 < self.target_entropy_ratio <= 1.0
        ):
            raise ValueError(
                f"algo_params.target_entropy_ratio={self.target_entropy_ratio!r} is invalid: it "
                "must be in (0, 1]."
            )
        space = config.env_cfg.action_space
        if not isinstance(space, gym.spaces.Discrete):
            action_bounds(space, "SAC")


class SACState(AgentState):
    """The actor, the critics (with their target params) and the temperature
    (``alpha.params == {"log_alpha": float32[]}``)."""

    actor: TrainState
    critic: TrainState
    alpha: TrainState


class SACBatch(NamedTuple):
    """A processed batch: observations ``[B, ...]``, actions ``[B, A]`` (or ``[B]``), soft TD
    targets ``[B]``."""

    observation: Any
    action: jax.Array
    target: jax.Array


# ---- numerics ----------------------------------------------------------------------------------


def soft_value(q_tp1: jax.Array, log_pi_tp1: jax.Array, alpha: float | jax.Array) -> jax.Array:
    """``min_i q_tp1[i] - alpha * log_pi_tp1``: the soft value at one sampled next action.

    Args:
        q_tp1: ``[C, B]`` critics' values of the next observation and sampled action.
        log_pi_tp1: ``[B]`` log-probability of the sampled action.
        alpha: temperature.

    Returns:
        ``[B]`` soft values.
    """
    chex.assert_rank([q_tp1, log_pi_tp1], [2, 1])
    return q_tp1.min(axis=0) - alpha * log_pi_tp1


def soft_value_discrete(
    q_tp1: jax.Array, logits_tp1: jax.Array, alpha: float | jax.Array
) -> jax.Array:
    """``sum_a pi(a) [min_i q_tp1[i, a] - alpha * log pi(a)]``: the exact soft value under a
    categorical policy.

    Args:
        q_tp1: ``[C, B, K]`` critics' values of every action at the next observation.
        logits_tp1: ``[B, K]`` policy logits at the next observation.
        alpha: temperature.

    Returns:
        ``[B]`` soft values.
    """
    chex.assert_rank([q_tp1, logits_tp1], [3, 2])
    log_pi = jax.nn.log_softmax(logits_tp1, axis=-1)
    return jnp.sum(jnp.exp(log_pi) * (q_tp1.min(axis=0) - alpha * log_pi), axis=-1)


def alpha_loss(log_alpha: jax.Array, log_pi: jax.Array, target_entropy: float) -> jax.Array:
    """Temperature loss ``-mean(log_alpha * (log_pi + target_entropy))``, ``log_pi`` held fixed.

    Its gradient raises alpha when the policy's entropy ``-log_pi`` is below the target and
    lowers it above. Written on ``log_alpha`` as in the reference implementation.

    Args:
        log_alpha: scalar log-temperature.
        log_pi: ``[B]`` log-probabilities of sampled actions, or, for a categorical policy, the
            expectations ``sum_a pi(a) log pi(a)`` (minus the entropies).
        target_entropy: the entropy target.

    Returns:
        The scalar loss.
    """
    chex.assert_rank([log_alpha, log_pi], [0, 1])
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


def alpha_value(params: Params) -> jax.Array:
    """The temperature ``exp(log_alpha)`` (the ``apply_fn`` of :attr:`SACState.alpha`)."""
    return jnp.exp(params["log_alpha"])


# ---- factories ---------------------------------------------------------------------------------


def is_discrete(config: AlgoConfig) -> bool:
    return isinstance(config.env_cfg.action_space, gym.spaces.Discrete)


def target_entropy(config: AlgoConfig) -> float:
    """``target_entropy``, or its default: ``-|A|`` (Box), ``ratio * log K`` (Discrete)."""
    p: SACParams = config.algo_params
    if p.target_entropy is not None:
        return float(p.target_entropy)
    space = config.env_cfg.action_space
    if isinstance(space, gym.spaces.Discrete):
        return float(p.target_entropy_ratio * math.log(int(space.n)))
    return -float(space.shape[0])


def train_state_sac_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> SACState:
    """Actor, critics (target params equal to the params at first) and temperature."""
    p: SACParams = config.algo_params
    space = config.env_cfg.action_space
    obs_space = config.env_cfg.observation_space
    hidden = tuple(p.hidden_sizes)
    encoder = network_encoder(config, preprocess_fn)
    critic = critics_factory(
        space,
        p.n_critics,
        hidden_sizes=hidden,
        activation=p.activation,
        preprocess_fn=preprocess_fn,
        encoder=encoder,
    )
    k_actor, k_critic = jax.random.split(key)
    if is_discrete(config):
        actor = LinearHeadActor(int(space.n), hidden, p.activation, preprocess_fn, encoder)
        critic_inputs = [obs_space]
    else:
        bounds = action_bounds(space, "SAC")
        actor = GaussianActor(len(bounds.low), hidden, p.activation, preprocess_fn, encoder)
        critic_inputs = [obs_space, bounds.low.shape]
    actor_params = init_params(k_actor, actor, [obs_space], tabulate)
    critic_params = init_params(k_critic, critic, critic_inputs, tabulate)
    tx = make_optimizer(config.update_cfg, off_policy_gradient_steps(config))
    return SACState(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=tx),
        critic=TrainState.create(
            apply_fn=critic.apply, params=critic_params, target_params=critic_params, tx=tx
        ),
        alpha=TrainState.create(
            apply_fn=alpha_value,
            params={"log_alpha": jnp.asarray(math.log(p.init_alpha), jnp.float32)},
            tx=tx,
        ),
    )


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], greedy=False, uniform=False)
    -> (actions [B, A] or [B], log_probs [B])``.

    Samples the policy; ``greedy``: the deterministic action (the squashed mean, or the most
    probable discrete action); ``uniform``: uniformly random actions (with their log-density).
    Box actions are within the bounds.
    """
    discrete = is_discrete(config)
    space = config.env_cfg.action_space

    if discrete:
        n_actions = int(space.n)

        def explore_fn(
            state: SACState,
            key: jax.Array,
            observations: jax.Array,
            greedy: bool | jax.Array = False,
            uniform: bool | jax.Array = False,
        ) -> tuple[jax.Array, jax.Array]:
            mask = action_mask(observations)
            logits = apply_mask(state.actor.apply_fn(state.actor.params, observations), mask)
            dist = distrax.Categorical(logits=logits)
            k_pi, k_uniform = jax.random.split(key)
            sampled = dist.sample(seed=k_pi)
            if mask is None:
                random = jax.random.randint(k_uniform, sampled.shape, 0, n_actions, sampled.dtype)
                uniform_log_prob = jnp.full(sampled.shape, -math.log(n_actions))
            else:  # uniform over the valid actions
                valid = distrax.Categorical(logits=apply_mask(jnp.zeros_like(logits), mask))
                random, uniform_log_prob = valid.sample_and_log_prob(seed=k_uniform)
                random = random.astype(sampled.dtype)
            mode = jnp.argmax(logits, axis=-1).astype(sampled.dtype)
            actions = jnp.where(greedy, mode, jnp.where(uniform, random, sampled))
            log_probs = jnp.where(
                greedy | ~jnp.asarray(uniform), dist.log_prob(actions), uniform_log_prob
            )
            return actions, log_probs

        return explore_fn

    bounds = action_bounds(space, "SAC")
    uniform_log_prob = -float(np.sum(np.log(bounds.high - bounds.low)))

    def explore_fn(
        state: SACState,
        key: jax.Array,
        observations: jax.Array,
        greedy: bool | jax.Array = False,
        uniform: bool | jax.Array = False,
    ) -> tuple[jax.Array, jax.Array]:
        mean, log_std = state.actor.apply_fn(state.actor.params, observations)
        dist = squashed_gaussian(mean, log_std, bounds)
        k_pi, k_uniform = jax.random.split(key)
        sampled, log_probs = dist.sample_and_log_prob(seed=k_pi)
        random = jax.random.uniform(k_uniform, sampled.shape, minval=bounds.low, maxval=bounds.high)
        actions = jnp.where(greedy, squashed_mode(dist), jnp.where(uniform, random, sampled))
        log_probs = jnp.where(
            greedy,
            squashed_log_prob(dist, mean),
            jnp.where(uniform, uniform_log_prob, log_probs),
        )
        return actions, log_probs

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B]) -> SACBatch`` with soft TD targets
    ``r + gamma * (1 - done) * V(s')``: ``V`` is :func:`soft_value` at a next action sampled
    from the current policy (Box), or the exact :func:`soft_value_discrete` (Discrete), both over
    the target critics."""
    p: SACParams = config.algo_params
    discrete = is_discrete(config)
    bounds = None if discrete else action_bounds(config.env_cfg.action_space, "SAC")

    def process_experience_fn(state: SACState, key: jax.Array, experience: Experience) -> SACBatch:
        actor, critic = state.actor, state.critic
        alpha = state.alpha.apply_fn(state.alpha.params)
        next_obs = experience.next_observation
        if discrete:
            logits_tp1 = apply_mask(actor.apply_fn(actor.params, next_obs), action_mask(next_obs))
            q_tp1 = critic.apply_fn(critic.target_params, next_obs)  # [C, B, K]
            v_tp1 = soft_value_discrete(q_tp1, logits_tp1, alpha)
        else:
            mean, log_std = actor.apply_fn(actor.params, next_obs)
            a_tp1, log_pi_tp1 = squashed_gaussian(mean, log_std, bounds).sample_and_log_prob(
                seed=key
            )
            q_tp1 = critic.apply_fn(critic.target_params, next_obs, a_tp1)  # [C, B]
            v_tp1 = soft_value(q_tp1, log_pi_tp1, alpha)
        discounts = p.gamma * (1.0 - experience.done.astype(jnp.float32))
        targets = compute_td_targets(experience.reward.astype(jnp.float32), discounts, v_tp1)
        return SACBatch(experience.observation, experience.action, targets)

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, SACBatch) -> (state, info)``: one gradient step each on

    * the critics: ``0.5 * sum_i mean((Q_i(s, a) - target)^2)``;
    * the actor, against the updated critics: ``mean(alpha * log pi(a~|s) - min_i Q_i(s, a~))``
      with ``a~`` reparameterised (Box), or its exact expectation over actions (Discrete);
    * the temperature (when ``learn_alpha``): :func:`alpha_loss`;

    then the Polyak update of the critic targets every ``target_update_period`` steps.
    """
    p: SACParams = config.algo_params
    discrete = is_discrete(config)
    bounds: ActionBounds | None = (
        None if discrete else action_bounds(config.env_cfg.action_space, "SAC")
    )
    entropy_target = target_entropy(config)

    def update_step_fn(state: SACState, key: jax.Array, batch: SACBatch):
        critic = state.critic
        alpha = state.alpha.apply_fn(state.alpha.params)

        def critic_loss_fn(params: Params):
            if discrete:
                q_all = critic.apply_fn(params, batch.observation)  # [C, B, K]
                index = batch.action.astype(jnp.int32)[None, :, None]
                q = jnp.take_along_axis(q_all, index, axis=-1)[..., 0]
            else:
                q = critic.apply_fn(params, batch.observation, batch.action)  # [C, B]
            loss = 0.5 * jnp.sum(jax.vmap(loss_mean_squared_error, (0, None))(q, batch.target))
            return loss, q.mean()

        (critic_loss, q_mean), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            critic.params
        )
        critic = critic.apply_gradients(grads=grads)

        def actor_loss_fn(params: Params):
            if discrete:
                logits = apply_mask(
                    state.actor.apply_fn(params, batch.observation), action_mask(batch.observation)
                )
                log_pi_all = jax.nn.log_softmax(logits, axis=-1)
                q_all = critic.apply_fn(critic.params, batch.observation).min(axis=0)
                pi = jnp.exp(log_pi_all)
                loss = jnp.mean(jnp.sum(pi * (alpha * log_pi_all - q_all), axis=-1))
                log_pi = jnp.sum(pi * log_pi_all, axis=-1)  # E_pi[log pi] = -entropy
            else:
                mean, log_std = state.actor.apply_fn(params, batch.observation)
                dist = squashed_gaussian(mean, log_std, bounds)
                actions, log_pi = dist.sample_and_log_prob(seed=key)
                q = critic.apply_fn(critic.params, batch.observation, actions).min(axis=0)
                loss = jnp.mean(alpha * log_pi - q)
            return loss, log_pi

        (actor_loss, log_pi), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor.params
        )
        actor = state.actor.apply_gradients(grads=grads)

        temperature = state.alpha
        temperature_loss = alpha_loss(temperature.params["log_alpha"], log_pi, entropy_target)
        if p.learn_alpha:
            grads = jax.grad(lambda prm: alpha_loss(prm["log_alpha"], log_pi, entropy_target))(
                temperature.params
            )
            temperature = temperature.apply_gradients(grads=grads)

        critic = critic.update_target(p.tau, p.target_update_period)
        info = {
            "loss_critic": critic_loss,
            "loss_actor": actor_loss,
            "loss_alpha": temperature_loss,
            "alpha": alpha,
            "entropy": -log_pi.mean(),
            "qvalue_mean": q_mean,
        }
        return state.replace(actor=actor, critic=critic, alpha=temperature), info

    return update_step_fn


class SAC(OffPolicyAgent):
    """SAC agent (see :class:`SACParams`), for Box and Discrete action spaces.

    ``explore`` acts uniformly at random until ``start_step`` (with ``random_warmup``), then
    samples the policy; ``select_action`` takes its deterministic action (the squashed,
    rescaled Gaussian mean; the most probable discrete action).
    """

    params_type = SACParams
    default_n_envs = 1
    default_update_cfg = UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=False,
        max_grad_norm=None,
        max_buffer_size=1_000_000,
        batch_size=256,
        n_epochs=1,
    )
    factories = (
        train_state_sac_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )

    def explore(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        p: SACParams = self.config.algo_params
        return self.explore_fn(
            self.acting_state,
            self.interact_keys(observation),
            observation,
            uniform=p.random_warmup and self.env_steps < p.start_step,
        )

    def select_action(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, greedy=True
        )

    @functools.cached_property
    def bounds(self) -> ActionBounds | None:
        """The env's action bounds (``None`` for discrete actions)."""
        space = self.config.env_cfg.action_space
        return None if isinstance(space, gym.spaces.Discrete) else action_bounds(space)

    def to_env_action(self, actions):
        """Clips Box actions to the bounds (a no-op up to rounding: they are within them)."""
        return actions if self.bounds is None else clip_to_bounds(actions, self.bounds)
