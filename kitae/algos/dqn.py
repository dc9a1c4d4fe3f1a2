"""Deep Q-Network, with double-Q, dueling, hard or Polyak targets and Huber or MSE loss.

See "Human-level control through deep reinforcement learning", Mnih et al., 2015, and
"Deep Reinforcement Learning with Double Q-learning", van Hasselt et al., 2016.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import distrax
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.base import OffPolicyAgent
from kitae.buffer import Experience
from kitae.config import AlgoConfig, AlgoParams, UpdateConfig
from kitae.loss import loss_huber, loss_mean_squared_error
from kitae.modules.modules import init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.qvalue import qvalue_factory
from kitae.modules.train_state import TrainState
from kitae.schedules import LinearSchedule, off_policy_update_count
from kitae.timesteps import compute_td_targets
from kitae.types import Params

LOSSES = {"huber": loss_huber, "mse": loss_mean_squared_error}


@dataclass
class DQNParams(AlgoParams):
    """DQN hyperparameters.

    The defaults, with ``DQN.default_update_cfg`` and 4 envs, are kitae's CartPole-v1 setting,
    chosen for reliability over seeds: double DQN with an MSE loss, Polyak targets (tau 0.01 every
    gradient step), 2 gradient steps of 128 every 4 transitions and a learning rate annealed to 0
    (results in ``benchmarks/README.md``). The RL-Zoo configuration is in
    ``benchmarks/dqn_cartpole.py``.

    Attributes:
        gamma: discount.
        exploration_start: epsilon at the first step.
        exploration_end: epsilon after the decay.
        exploration_fraction: fraction of ``train_cfg.n_env_steps`` over which epsilon decays
            linearly.
        double_q: choose the bootstrap action with the online network, evaluate it with the
            target network.
        dueling: dueling Q head.
        loss: ``"huber"`` or ``"mse"``.
        tau: target update rate: 1 copies the online params (hard update), < 1 is Polyak averaging.
        target_update_period: gradient steps between two target updates.
        skip_steps: transitions between two updates (each of ``update_cfg.n_epochs``
            gradient steps).
        start_step: transitions collected before the first update (-1: as soon as a batch fits).
        hidden_sizes: Q-network torso.
        activation: torso activation.
    """

    gamma: float = 0.99
    exploration_start: float = 1.0
    exploration_end: float = 0.02
    exploration_fraction: float = 0.1
    double_q: bool = True
    dueling: bool = False
    loss: str = "mse"
    tau: float = 0.01
    target_update_period: int = 1
    skip_steps: int = 4
    start_step: int = 1000
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"

    def validate(self, config: AlgoConfig) -> None:
        for name in ("exploration_start", "exploration_end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"algo_params.{name}={value!r} is invalid: it must be in [0, 1].")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(
                f"algo_params.exploration_fraction={self.exploration_fraction!r} is invalid: it "
                "must be in (0, 1]."
            )
        if self.loss not in LOSSES:
            raise ValueError(
                f"algo_params.loss={self.loss!r} is invalid: use one of {list(LOSSES)}."
            )
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"algo_params.tau={self.tau!r} is invalid: it must be in (0, 1].")
        if (
            isinstance(self.target_update_period, bool)
            or not isinstance(self.target_update_period, int)
            or self.target_update_period < 1
        ):
            raise ValueError(
                f"algo_params.target_update_period={self.target_update_period!r} is invalid: it "
                "must be an integer >= 1."
            )
        if not isinstance(config.env_cfg.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"env_cfg.action_space={config.env_cfg.action_space} is not supported by DQN: it "
                "needs a gymnasium.spaces.Discrete action space."
            )


class DQNBatch(NamedTuple):
    """A processed DQN batch: observations ``[B, ...]``, actions ``[B]``, TD targets ``[B]``."""

    observation: jax.Array
    action: jax.Array
    target: jax.Array


def total_gradient_steps(config: AlgoConfig) -> int:
    """Gradient steps of a whole run of ``config.train_cfg.n_env_steps``."""
    p = config.algo_params
    n_updates = off_policy_update_count(
        config.train_cfg.n_env_steps,
        config.env_cfg.n_envs,
        p.skip_steps,
        p.start_step,
        config.update_cfg.batch_size,
    )
    return n_updates * config.update_cfg.n_epochs


def train_state_dqn_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The Q-network's TrainState; ``target_params`` start equal to ``params``."""
    p: DQNParams = config.algo_params
    qvalue = qvalue_factory(
        config.env_cfg.observation_space,
        config.env_cfg.action_space,
        hidden_sizes=p.hidden_sizes,
        activation=p.activation,
        dueling=p.dueling,
        preprocess_fn=preprocess_fn,
    )
    params = init_params(key, qvalue, [config.env_cfg.observation_space.shape], tabulate)
    return TrainState.create(
        apply_fn=qvalue.apply,
        params=params,
        target_params=params,
        tx=make_optimizer(config.update_cfg, total_gradient_steps(config)),
    )


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy with ``epsilon = exploration``."""
    del config

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = state.apply_fn(state.params, observations)
        return distrax.EpsilonGreedy(qvalues, exploration).sample_and_log_prob(seed=key)

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B]) -> DQNBatch`` with TD targets
    ``r + gamma * (1 - done) * Q_target(s', a*)``, ``a*`` from the online net when double-Q."""
    p: DQNParams = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> DQNBatch:
        del key
        next_q_target = state.apply_fn(state.target_params, experience.next_observation)
        if p.double_q:
            next_q_online = state.apply_fn(state.params, experience.next_observation)
            next_actions = jnp.argmax(next_q_online, axis=-1)
        else:
            next_actions = jnp.argmax(next_q_target, axis=-1)
        next_values = jnp.take_along_axis(next_q_target, next_actions[:, None], axis=-1)[:, 0]
        discounts = p.gamma * (1.0 - experience.done.astype(jnp.float32))
        targets = compute_td_targets(experience.reward.astype(jnp.float32), discounts, next_values)
        return DQNBatch(experience.observation, experience.action, targets)

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, DQNBatch) -> (state, info)``: one gradient step on the TD
    loss, then the periodic target update."""
    p: DQNParams = config.algo_params
    td_loss = LOSSES[p.loss]

    def update_step_fn(state: TrainState, key: jax.Array, batch: DQNBatch):
        del key

        def loss_fn(params: Params):
            qvalues = state.apply_fn(params, batch.observation)
            q_taken = jnp.take_along_axis(qvalues, batch.action[:, None].astype(jnp.int32), -1)[
                :, 0
            ]
            loss = td_loss(q_taken, batch.target)
            return loss, {"loss_qvalue": loss, "qvalue_mean": q_taken.mean()}

        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads)
        state = state.update_target(p.tau, p.target_update_period)
        return state, info

    return update_step_fn


class DQN(OffPolicyAgent):
    """DQN agent (see :class:`DQNParams`).

    ``explore`` is epsilon-greedy with the linear schedule of ``DQNParams``;
    ``select_action`` is greedy.
    """

    params_type = DQNParams
    default_n_envs = 4
    default_update_cfg = UpdateConfig(
        learning_rate=2.3e-3,
        learning_rate_annealing=True,
        max_grad_norm=10.0,
        max_buffer_size=50_000,
        batch_size=128,
        n_epochs=2,
    )

    factories = (
        train_state_dqn_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )

    def __init__(self, run_name: str, config: AlgoConfig, **kwargs):
        super().__init__(run_name, config, **kwargs)
        p: DQNParams = config.algo_params
        self.exploration = LinearSchedule(
            p.exploration_start,
            p.exploration_end,
            p.exploration_fraction * config.train_cfg.n_env_steps,
        )

    def explore(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        schedule = self.exploration
        if "exploration_start" in self.hyperparams or "exploration_end" in self.hyperparams:
            # Compiled sweeps pass traced epsilon values.
            schedule = dataclasses.replace(
                schedule,
                start=self.hyperparams.get("exploration_start", schedule.start),
                end=self.hyperparams.get("exploration_end", schedule.end),
            )
        epsilon = schedule(self.env_steps)
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, exploration=epsilon
        )

    def select_action(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, exploration=0.0
        )
