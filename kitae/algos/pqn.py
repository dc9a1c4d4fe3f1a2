"""Parallelised Q-Network: Q(λ) over parallel envs, without replay buffer or target network.

Each update collects a rollout of ``T = max_buffer_size // n_envs`` epsilon-greedy steps of the
``n_envs`` envs, computes Q(λ) returns once from the rollout's Q-values (the online network's:
there is no target network), then regresses ``Q(s_t, a_t)`` on them for ``n_epochs`` shuffled
passes of minibatches of ``batch_size``. LayerNorm in the torso keeps this stable without a
target network or a replay buffer. Action masks (:mod:`kitae.masking`) are honoured in acting
and in the bootstrap maximum.

The returns are Peng's Q(λ): the traces are not cut at exploratory actions.

See "Simplifying Deep Temporal Difference Learning", Gallici et al., 2024 (arXiv 2407.04811),
and "Incremental Multi-Step Q-Learning", Peng and Williams, 1996.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.algos.dqn import check_exploration, epsilon_schedule, traced_epsilon
from kitae.buffer import Experience
from kitae.config import AlgoConfig, AlgoParams, EncoderParams, UpdateConfig
from kitae.loss import loss_mean_squared_error
from kitae.masking import action_mask, apply_mask
from kitae.masking import epsilon_greedy as masked_epsilon_greedy
from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, network_encoder
from kitae.modules.modules import get_activation, init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.train_state import TrainState
from kitae.on_policy import OnPolicyAgent
from kitae.schedules import on_policy_update_count
from kitae.timesteps import compute_lambda_returns
from kitae.types import Params


@dataclass
class PQNParams(AlgoParams, EncoderParams):
    """PQN hyperparameters.

    The defaults, with ``PQN.default_update_cfg`` and 32 envs, are purejaxql's CartPole setting
    (``purejaxql/config/alg/pqn_cartpole.yaml`` of mttga/purejaxql): 32 envs x 64 steps, 4
    epochs of 16 minibatches, lr 1e-4 annealed linearly to 0, gradient norm 10, gamma 0.99,
    lambda 0.95, epsilon 1 -> 0.2 over the first 20% of the run, rewards scaled by 0.1, two
    256-unit ReLU layers with LayerNorm, 500k steps. (purejaxql optimises with RAdam, kitae with
    Adam; its epsilon steps once per rollout, kitae's once per env step.)

    Attributes:
        gamma: discount.
        q_lambda: λ of the Q(λ) returns (0: one-step Q-learning; 1: Monte-Carlo returns,
            bootstrapped only at truncations and at the end of the rollout).
        exploration_start: epsilon at the first step.
        exploration_end: epsilon after the decay.
        exploration_fraction: fraction of ``train_cfg.n_env_steps`` over which epsilon decays
            linearly.
        reward_scale: rewards are multiplied by it in the targets (the logged returns are the
            env's).
        hidden_sizes: Q-network torso (an MLP on the encoder's features).
        activation: torso activation.
        layer_norm: LayerNorm after each torso layer, before the activation.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`).
    """

    gamma: float = 0.99
    q_lambda: float = 0.95
    exploration_start: float = 1.0
    exploration_end: float = 0.2
    exploration_fraction: float = 0.2
    reward_scale: float = 0.1
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = True

    def validate(self, config: AlgoConfig) -> None:
        check_exploration(self, unit_fields=("gamma", "q_lambda"))
        if not self.reward_scale > 0.0:
            raise ValueError(
                f"algo_params.reward_scale={self.reward_scale!r} is invalid: it must be > 0."
            )
        if not isinstance(config.env_cfg.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"env_cfg.action_space={config.env_cfg.action_space} is not supported by PQN: "
                "it needs a gymnasium.spaces.Discrete action space."
            )


class PQNBatch(NamedTuple):
    """A processed PQN batch.

    Attributes:
        observation: ``[B, ...]``.
        action: ``int32[B]``.
        target: Q(λ) returns ``[B]``.
    """

    observation: Any
    action: jax.Array
    target: jax.Array


class PQNNetwork(nn.Module):
    """``Q(o, .)``: the observation encoder, ``Dense -> LayerNorm -> activation`` per torso
    layer (no LayerNorm when ``layer_norm`` is off) and one output per action.

    Attributes:
        n_actions: number of discrete actions.
        hidden_sizes: torso widths.
        activation: torso activation.
        layer_norm: normalise each torso layer's pre-activations.
        preprocess_fn: applied to observations before the encoder.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_actions: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = True
    preprocess_fn: Callable[[Any], Any] | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> jax.Array:
        """Args: observations ``[B, ...]`` (or a dict of them). Returns: ``[B, n_actions]``."""
        x = observations if self.preprocess_fn is None else self.preprocess_fn(observations)
        x = Encoder(self.encoder)(x)
        x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
        act = get_activation(self.activation)
        for size in self.hidden_sizes:
            x = nn.Dense(size)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.n_actions)(x)


def total_gradient_steps(config: AlgoConfig) -> int:
    """Gradient steps of a run: updates x epochs x minibatches per rollout."""
    u = config.update_cfg
    n_updates = on_policy_update_count(config.train_cfg.n_env_steps, u.max_buffer_size)
    return n_updates * u.n_epochs * (u.max_buffer_size // u.batch_size)


def train_state_pqn_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The Q-network's TrainState, without target params; Adam with the global-norm clipping
    and linear annealing of ``update_cfg`` over the run's gradient steps."""
    p: PQNParams = config.algo_params
    network = PQNNetwork(
        int(config.env_cfg.action_space.n),
        tuple(p.hidden_sizes),
        p.activation,
        p.layer_norm,
        preprocess_fn,
        network_encoder(config, preprocess_fn),
    )
    params = init_params(key, network, [config.env_cfg.observation_space], tabulate)
    return TrainState.create(
        apply_fn=network.apply,
        params=params,
        tx=make_optimizer(config.update_cfg, total_gradient_steps(config)),
    )


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions int32[B],
    log_probs [B])``: epsilon-greedy with ``epsilon = exploration`` among the valid actions of
    an action mask."""
    del config

    def explore_fn(
        state: TrainState, key: jax.Array, observations: Any, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = state.apply_fn(state.params, observations)
        return masked_epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def bootstrap_values(state: TrainState, next_observations: Any) -> jax.Array:
    """The bootstrap values ``max_a Q(s_{t+1}, a)`` of the current network.

    Args:
        state: the Q-network's state.
        next_observations: ``[T, ...]`` (or a dict of them), the true final observation where
            an episode ended; an action mask in them limits the maximum to the valid actions.

    Returns:
        ``float32[T]``.
    """
    qvalues = state.apply_fn(state.params, next_observations)
    return apply_mask(qvalues, action_mask(next_observations)).max(axis=-1)


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [T, ...]) -> PQNBatch`` for one env's
    rollout: Q(λ) returns from the current network's Q-values.

    ``G_t = c r_t + gamma_t [(1 - λ_t) max_a Q(s_{t+1}, a) + λ_t G_{t+1}]`` with ``c`` the
    reward scale, ``gamma_t = gamma (1 - terminated_t)`` and ``λ_t = λ`` except 0 where the
    episode ended: a terminated step does not bootstrap, a truncated one bootstraps from its
    final observation, the rollout's last step from its next observation's maximum
    (:func:`kitae.timesteps.compute_lambda_returns`, i.e. ``rlax.lambda_returns`` with these
    per-step discounts and λs).
    """
    p: PQNParams = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> PQNBatch:
        del key
        truncated = experience.truncated
        if truncated is None:
            truncated = jnp.zeros_like(experience.done)
        targets = compute_lambda_returns(
            p.reward_scale * experience.reward.astype(jnp.float32),
            bootstrap_values(state, experience.next_observation),
            experience.done,
            truncated,
            p.gamma,
            p.q_lambda,
        )
        return PQNBatch(experience.observation, experience.action.astype(jnp.int32), targets)

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, PQNBatch) -> (state, info)``: one gradient step on
    ``0.5 * mean((Q(s, a) - G)^2)`` (the ``0.5`` as in the paper's code)."""
    del config

    def update_step_fn(state: TrainState, key: jax.Array, batch: PQNBatch):
        del key

        def loss_fn(params: Params):
            qvalues = state.apply_fn(params, batch.observation)
            q_taken = jnp.take_along_axis(qvalues, batch.action[:, None], axis=-1)[:, 0]
            loss = 0.5 * loss_mean_squared_error(q_taken, batch.target)
            return loss, {"loss_qvalue": loss, "qvalue_mean": q_taken.mean()}

        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), info

    return update_step_fn


class PQN(OnPolicyAgent):
    """PQN agent (see :class:`PQNParams`).

    ``explore`` is epsilon-greedy with the linear schedule of ``PQNParams`` (over env steps);
    ``select_action`` is greedy. ``update_cfg.max_buffer_size`` is the rollout size
    (``n_steps * n_envs``), ``batch_size`` the minibatch size (rollout / minibatches).
    """

    params_type = PQNParams
    default_n_envs = 32
    traced_hyperparams = ("exploration_start", "exploration_end")
    default_update_cfg = UpdateConfig(
        learning_rate=1e-4,
        learning_rate_annealing=True,
        max_grad_norm=10.0,
        max_buffer_size=32 * 64,
        batch_size=32 * 64 // 16,
        n_epochs=4,
    )
    factories = (
        train_state_pqn_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )

    def __init__(self, run_name: str, config: AlgoConfig, **kwargs: Any):
        super().__init__(run_name, config, **kwargs)
        self.exploration = epsilon_schedule(config.algo_params, config.train_cfg.n_env_steps)

    def explore(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        epsilon = traced_epsilon(self.exploration, self.hyperparams, self.env_steps)
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, exploration=epsilon
        )

    def select_action(self, observation: Any) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, exploration=0.0
        )
