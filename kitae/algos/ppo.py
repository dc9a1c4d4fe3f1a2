"""Proximal Policy Optimization with GAE, for discrete (Discrete, MultiDiscrete) and continuous
(Box) actions.

MultiDiscrete actions follow a product of independent categoricals (log-probability and entropy
summed over sub-actions, the greedy action is the argmax of each); Discrete ones honour an
action mask in the observations (:mod:`kitae.masking`), in acting and in the loss.

Continuous actions follow one of two policies. By default a diagonal Gaussian whose samples are
stored as they are, with their own log-probability, and clipped to the bounds only when sent to
the env: the clipping belongs to the env, so the probability ratio of the stored actions is
exact. With ``squash_actions`` a tanh-squashed Gaussian rescaled to the bounds
(:func:`kitae.modules.distributions.squashed_gaussian`): the stored action is the pre-squash
sample ``u``, the log-probability is that of the env action ``loc + scale * tanh(u)`` (change of
variables), and ``to_env_action`` applies the squashing.

See "Proximal Policy Optimization Algorithms", Schulman et al., 2017, and
"The 37 Implementation Details of Proximal Policy Optimization", Huang et al., 2022.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.buffer import Experience
from kitae.config import AlgoConfig, AlgoParams, EncoderParams, UpdateConfig
from kitae.loss import loss_policy_ppo, loss_value_clip
from kitae.masking import action_mask
from kitae.modules.distributions import (
    ActionBounds,
    action_bounds,
    clip_to_bounds,
    squash_to_bounds,
    squashed_entropy,
    squashed_gaussian,
    squashed_log_prob,
)
from kitae.modules.encoders import network_encoder
from kitae.modules.modules import init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.policy import action_distribution, actor_critic_factory, check_multi_discrete
from kitae.modules.train_state import TrainState
from kitae.normalization import (
    normalization_from_params,
    normalize_observation,
    normalize_rollout,
    reset_returns,
    validate_normalization,
)
from kitae.on_policy import OnPolicyAgent
from kitae.schedules import on_policy_update_count
from kitae.timesteps import compute_gae
from kitae.types import Params


@dataclass
class PPOParams(AlgoParams, EncoderParams):
    """PPO hyperparameters.

    Defaults follow the CleanRL / PureJaxRL classic-control setting (gamma 0.99, lambda 0.95,
    clip 0.2, entropy 0.01, value 0.5, advantage normalisation, 64-64 tanh torsos).

    Attributes:
        gamma: discount.
        gae_lambda: GAE lambda.
        clip_eps: clipping range of the probability ratio.
        clip_eps_annealing: decay ``clip_eps`` linearly to 0 over the run's gradient steps.
        entropy_coef: weight of the entropy bonus.
        value_coef: weight of the value loss.
        value_clip_eps: clip value predictions around their rollout values (``None``: off).
        normalize_advantages: standardise advantages within each minibatch.
        hidden_sizes: torso widths (an MLP on the encoder's features).
        activation: torso activation.
        state_dependent_std: continuous actions: predict the log-std from the observation.
        log_std_init: continuous actions: initial log-std.
        squash_actions: continuous actions: a tanh-squashed Gaussian rescaled to the bounds
            (stores pre-squash samples, log-probabilities of the squashed actions, entropy
            estimated from one sample); ``False``: a Gaussian clipped to the bounds by the env
            step.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`);
            each torso has its own unless ``update_cfg.shared_encoder``.
        normalize_observations: normalise (Box) observations by running statistics kept in the
            state and checkpoints (see :mod:`kitae.normalization`, SB3 ``VecNormalize``).
        normalize_rewards: divide rewards by the running std of the discounted return
            (accumulated with ``gamma``, reset at episode ends).
        clip_observations: bound of the normalised observations.
        clip_rewards: bound of the scaled rewards.
    """

    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    clip_eps_annealing: bool = False
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    value_clip_eps: float | None = None
    normalize_advantages: bool = True
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    squash_actions: bool = False
    normalize_observations: bool = False
    normalize_rewards: bool = False
    clip_observations: float = 10.0
    clip_rewards: float = 10.0
    multi_discrete: ClassVar[bool] = True

    def validate(self, config: AlgoConfig) -> None:
        validate_normalization(self, config)
        if not self.clip_eps > 0:
            raise ValueError(f"algo_params.clip_eps={self.clip_eps!r} is invalid: it must be > 0.")
        if self.value_clip_eps is not None and not self.value_clip_eps > 0:
            raise ValueError(
                f"algo_params.value_clip_eps={self.value_clip_eps!r} is invalid: use a value > 0 "
                "or None to disable value clipping."
            )
        space = config.env_cfg.action_space
        if not (
            isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
            or (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)
        ):
            raise ValueError(
                f"env_cfg.action_space={space} is not supported by PPO: use Discrete, "
                "MultiDiscrete or a 1-D Box."
            )
        if isinstance(space, gym.spaces.MultiDiscrete):
            check_multi_discrete(space)
        if self.squash_actions and not isinstance(space, gym.spaces.Box):
            raise ValueError(
                f"algo_params.squash_actions=True needs a Box action space, got {space}; set it "
                "to False for discrete actions."
            )


class PPOBatch(NamedTuple):
    """A processed PPO batch (leaves ``[B, ...]``)."""

    observation: Any
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def is_discrete(config: AlgoConfig) -> bool:
    """Discrete or MultiDiscrete actions."""
    return isinstance(config.env_cfg.action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))


def is_squashed(config: AlgoConfig) -> bool:
    return bool(config.algo_params.squash_actions) and not is_discrete(config)


def total_gradient_steps(config: AlgoConfig) -> int:
    """Gradient steps of a run: updates x epochs x minibatches per rollout."""
    u = config.update_cfg
    n_updates = on_policy_update_count(config.train_cfg.n_env_steps, u.max_buffer_size)
    return n_updates * u.n_epochs * (u.max_buffer_size // u.batch_size)


def train_state_ppo_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """One TrainState for the actor-critic; the learning rate anneals over the true number of
    gradient steps when ``update_cfg.learning_rate_annealing``. With ``normalize_observations``
    or ``normalize_rewards`` it is a :class:`~kitae.normalization.NormalizedTrainState`."""
    p: PPOParams = config.algo_params
    network = actor_critic_factory(
        config.env_cfg.observation_space,
        config.env_cfg.action_space,
        hidden_sizes=p.hidden_sizes,
        activation=p.activation,
        shared_encoder=config.update_cfg.shared_encoder,
        state_dependent_std=p.state_dependent_std,
        log_std_init=p.log_std_init,
        preprocess_fn=preprocess_fn,
        encoder=network_encoder(config, preprocess_fn),
    )
    params = init_params(key, network, [config.env_cfg.observation_space], tabulate)
    state = TrainState.create(
        apply_fn=network.apply,
        params=params,
        tx=make_optimizer(config.update_cfg, total_gradient_steps(config), eps=1e-5),
    )
    return normalization_from_params(state, config, p.gamma)


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], greedy=False) -> (actions, log_probs [B])``.

    Continuous actions are returned unclipped (the log-probability is theirs); the agent clips
    them to the action bounds only when sending them to the env. With ``squash_actions`` they
    are the pre-squash samples ``u`` (``greedy``: the mean) and the log-probabilities are those
    of the squashed, rescaled actions. A state with observation statistics
    (``normalize_observations``) normalises the observations first; acting never updates them.
    """
    discrete = is_discrete(config)
    if is_squashed(config):
        bounds = action_bounds(config.env_cfg.action_space, "PPO with squash_actions")

        def squashed_explore_fn(
            state: TrainState,
            key: jax.Array,
            observations: jax.Array,
            greedy: bool | jax.Array = False,
        ) -> tuple[jax.Array, jax.Array]:
            observations = normalize_observation(state, observations)
            (mean, log_std), _ = state.apply_fn(state.params, observations)
            dist = squashed_gaussian(mean, log_std, bounds)
            u = jnp.where(greedy, mean, dist.distribution.sample(seed=key))
            return u, squashed_log_prob(dist, u)

        return squashed_explore_fn

    def explore_fn(state: TrainState, key: jax.Array, observations: jax.Array, greedy=False):
        mask = action_mask(observations)
        observations = normalize_observation(state, observations)
        policy_output, _ = state.apply_fn(state.params, observations)
        dist = action_distribution(policy_output, discrete, mask)
        sampled, log_probs = dist.sample_and_log_prob(seed=key)
        mode = dist.mode()
        actions = jnp.where(greedy, mode, sampled)
        return actions, dist.log_prob(actions) if discrete else jnp.where(
            greedy, dist.log_prob(mode), log_probs
        )

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [T, ...]) -> PPOBatch`` for one env's
    trajectory: values of observations and true next observations, then GAE."""
    p: PPOParams = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> PPOBatch:
        del key
        _, values = state.apply_fn(state.params, experience.observation)
        _, next_values = state.apply_fn(state.params, experience.next_observation)
        advantages, targets = compute_gae(
            experience.reward.astype(jnp.float32),
            values,
            next_values,
            experience.done,
            experience.truncated,
            p.gamma,
            p.gae_lambda,
        )
        return PPOBatch(
            experience.observation,
            experience.action,
            experience.log_prob,
            values,
            advantages,
            targets,
        )

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, PPOBatch) -> (state, info)``: one minibatch gradient step on
    ``policy_loss + value_coef * value_loss - entropy_coef * entropy``."""
    p: PPOParams = config.algo_params
    discrete = is_discrete(config)
    squashed = is_squashed(config)
    if squashed:
        bounds = action_bounds(config.env_cfg.action_space, "PPO with squash_actions")
    n_steps_total = max(total_gradient_steps(config), 1)

    def update_step_fn(state: TrainState, key: jax.Array, batch: PPOBatch):
        advantages = batch.advantage
        if p.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        clip_eps = p.clip_eps
        if p.clip_eps_annealing:
            clip_eps = p.clip_eps * jnp.maximum(1.0 - state.step / n_steps_total, 0.0)

        def loss_fn(params: Params):
            policy_output, values = state.apply_fn(params, batch.observation)
            if squashed:
                squashed_dist = squashed_gaussian(*policy_output, bounds)
                log_probs = squashed_log_prob(squashed_dist, batch.action)
                entropy = squashed_entropy(squashed_dist, key).mean()
            else:
                dist = action_distribution(policy_output, discrete, action_mask(batch.observation))
                log_probs = dist.log_prob(batch.action)
                entropy = dist.entropy().mean()
            policy_loss, approx_kl = loss_policy_ppo(
                log_probs, batch.log_prob, advantages, clip_eps
            )
            value_loss = loss_value_clip(values, batch.target, batch.value, p.value_clip_eps)
            loss = policy_loss + p.value_coef * value_loss - p.entropy_coef * entropy
            return loss, {
                "loss": loss,
                "loss_policy": policy_loss,
                "loss_value": value_loss,
                "entropy": entropy,
                "approx_kl": approx_kl,
            }

        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), info

    return update_step_fn


class PPO(OnPolicyAgent):
    """PPO agent (see :class:`PPOParams`). ``explore`` samples the policy; ``select_action``
    takes its mode. Continuous actions are clipped to the env bounds when stepping the env, or,
    with ``squash_actions``, squashed into them. With ``normalize_observations`` /
    ``normalize_rewards`` each update starts with :func:`kitae.normalization.normalize_rollout`."""

    prepare_rollout_fn = staticmethod(normalize_rollout)

    params_type = PPOParams
    default_n_envs = 4
    factories = (
        train_state_ppo_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )
    default_update_cfg = UpdateConfig(
        learning_rate=2.5e-4,
        learning_rate_annealing=True,
        max_grad_norm=0.5,
        max_buffer_size=512,
        batch_size=128,
        n_epochs=4,
    )

    def select_action(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, True
        )

    def on_env_reset(self) -> None:
        super().on_env_reset()
        self.state = reset_returns(self.state)  # the new env's episodes start over

    @functools.cached_property
    def bounds(self) -> ActionBounds | None:
        """The env's action bounds (``None`` for discrete actions)."""
        space = self.config.env_cfg.action_space
        return action_bounds(space, "PPO") if isinstance(space, gym.spaces.Box) else None

    def to_env_action(self, actions):
        if self.bounds is None:
            return actions
        if self.config.algo_params.squash_actions:
            return squash_to_bounds(actions, self.bounds)
        return clip_to_bounds(actions, self.bounds)
