"""Deep Q-Network with the Rainbow options: double-Q, dueling, n-step returns, prioritized
replay, hard or Polyak targets, Huber or MSE loss.

The distributional agents (:mod:`kitae.algos.c51`, :mod:`kitae.algos.qrdqn`,
:mod:`kitae.algos.iqn`) reuse this module's params, transition reduction and agent class.

See "Human-level control through deep reinforcement learning", Mnih et al., 2015;
"Deep Reinforcement Learning with Double Q-learning", van Hasselt et al., 2016;
"Dueling Network Architectures for Deep Reinforcement Learning", Wang et al., 2016;
"Prioritized Experience Replay", Schaul et al., 2016; "Rainbow", Hessel et al., 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp

from kitae.algos.q_acting import QActingAgent
from kitae.buffer import Experience
from kitae.config import (
    AlgoConfig,
    AlgoParams,
    EncoderParams,
    UpdateConfig,
    check_int_param,
    check_tau,
)
from kitae.loss import loss_huber, loss_mean_squared_error
from kitae.masking import action_mask, masked_argmax
from kitae.masking import epsilon_greedy as masked_epsilon_greedy
from kitae.modules.encoders import network_encoder
from kitae.modules.modules import init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.qvalue import qvalue_factory
from kitae.modules.recurrent import core_state_size
from kitae.modules.train_state import TrainState
from kitae.schedules import LinearSchedule, off_policy_gradient_steps
from kitae.timesteps import compute_n_step_return, compute_td_targets
from kitae.types import Params

LOSSES = {"huber": loss_huber, "mse": loss_mean_squared_error}


@dataclass
class QLearningParams(AlgoParams, EncoderParams):
    """Hyperparameters shared by the Q-learning agents (DQN, C51, QR-DQN, IQN).

    The defaults, with ``DQN.default_update_cfg`` and 4 envs, are kitae's CartPole-v1 setting,
    chosen for reliability over seeds (see :class:`DQNParams`).

    Attributes:
        gamma: discount.
        exploration_start: epsilon at the first step.
        exploration_end: epsilon after the decay.
        exploration_fraction: fraction of ``train_cfg.n_env_steps`` over which epsilon decays
            linearly.
        double_q: choose the bootstrap action with the online network, evaluate it with the
            target network.
        dueling: dueling Q head.
        n_step: bootstrap after ``n_step`` transitions (cut at episode ends); 1 is one-step TD.
        prioritized: proportional prioritized replay (priorities: ``|TD error|`` for DQN, the
            per-sample loss for the distributional agents).
        priority_exponent: prioritized replay's ``alpha``.
        importance_exponent: prioritized replay's initial ``beta``, annealed to 1 over the run.
        priority_eps: added to ``|TD error|`` so that no priority is 0.
        tau: target update rate: 1 copies the online params (hard update), < 1 is Polyak averaging.
        target_update_period: gradient steps between two target updates.
        skip_steps: transitions between two updates (each of ``update_cfg.n_epochs``
            gradient steps).
        start_step: transitions collected before the first update (-1: as soon as a batch fits).
        hidden_sizes: Q-network torso (an MLP on the encoder's features).
        activation: torso activation.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`).
    """

    gamma: float = 0.99
    exploration_start: float = 1.0
    exploration_end: float = 0.02
    exploration_fraction: float = 0.1
    double_q: bool = True
    dueling: bool = False
    n_step: int = 1
    prioritized: bool = False
    priority_exponent: float = 0.6
    importance_exponent: float = 0.4
    priority_eps: float = 1e-6
    tau: float = 0.01
    target_update_period: int = 1
    skip_steps: int = 4
    start_step: int = 1000
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"

    def validate(self, config: AlgoConfig) -> None:
        check_exploration(self)
        check_int_param(self, "n_step", 1)
        if self.n_step > config.update_cfg.max_buffer_size // config.env_cfg.n_envs:
            raise ValueError(
                f"algo_params.n_step={self.n_step} is longer than the replay buffer's "
                f"{config.update_cfg.max_buffer_size // config.env_cfg.n_envs} slots per env; "
                "lower n_step or raise update_cfg.max_buffer_size."
            )
        if not self.priority_exponent >= 0.0:
            raise ValueError(
                f"algo_params.priority_exponent={self.priority_exponent!r} is invalid: it must "
                "be >= 0."
            )
        if not 0.0 <= self.importance_exponent <= 1.0:
            raise ValueError(
                f"algo_params.importance_exponent={self.importance_exponent!r} is invalid: it "
                "must be in [0, 1]."
            )
        if not self.priority_eps > 0.0:
            raise ValueError(
                f"algo_params.priority_eps={self.priority_eps!r} is invalid: it must be > 0."
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"algo_params.gamma={self.gamma!r} is invalid: it must be in [0, 1].")
        check_tau(self)
        check_int_param(self, "target_update_period", 1)
        if not isinstance(config.env_cfg.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"env_cfg.action_space={config.env_cfg.action_space} is not supported by "
                f"{type(self).__name__}: it needs a gymnasium.spaces.Discrete action space."
            )


@dataclass
class TorsoParams(QLearningParams):
    """Q-learning params with a choice of torso, feed-forward or LSTM (DQN, C51, QR-DQN, IQN).

    ``torso="lstm"`` makes the agent recurrent (an LSTM core between the MLP torso and the Q
    head, as in R2D2): acting carries the core state of each env, zeroed at episode starts, every
    stored transition keeps the state it was acted from, and training replays windows of
    ``sequence_length`` steps that restart from the stored state, warm the cores up for
    ``burn_in`` steps, then learn from the agent's own ``n_step`` targets on the remaining steps
    (see :mod:`kitae.algos.r2d2`).

    Attributes:
        torso: ``"mlp"`` (feed-forward) or ``"lstm"`` (recurrent).
        lstm_size: hidden units of the LSTM core (``torso="lstm"``).
        sequence_length: steps per replayed window, burn-in included (``torso="lstm"`` only;
            ``None`` there means 20).
        burn_in: leading steps of each window that only warm the cores up (``torso="lstm"``).
    """

    torso: str = "mlp"
    lstm_size: int = 64
    sequence_length: int | None = None
    burn_in: int = 4

    def __post_init__(self) -> None:
        if self.torso == "lstm" and self.sequence_length is None:
            self.sequence_length = 20

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        check_torso(self, config)


@dataclass
class DQNParams(TorsoParams):
    """DQN hyperparameters (see :class:`QLearningParams` and :class:`TorsoParams` for the shared
    ones).

    The defaults, with ``DQN.default_update_cfg`` and 4 envs, are kitae's CartPole-v1 setting,
    chosen for reliability over seeds: double DQN with an MSE loss, Polyak targets (tau 0.01 every
    gradient step), 2 gradient steps of 128 every 4 transitions and a learning rate annealed to 0
    (results in ``benchmarks/README.md``). The RL-Zoo configuration is in
    ``benchmarks/dqn_cartpole.py``.

    With ``torso="lstm"`` the agent learns from double-Q (``double_q``) ``n_step`` returns on
    the replayed windows: it runs :mod:`kitae.algos.r2d2`'s factories on the equivalent R2D2
    params (see :func:`kitae.algos.r2d2.recurrent_q_config`).

    Attributes:
        loss: ``"huber"`` or ``"mse"``.
    """

    loss: str = "mse"

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        if self.loss not in LOSSES:
            raise ValueError(
                f"algo_params.loss={self.loss!r} is invalid: use one of {list(LOSSES)}."
            )


TORSOS = ("mlp", "lstm")


def check_torso(params: TorsoParams, config: AlgoConfig) -> None:
    """Validates ``torso``, ``lstm_size``, ``sequence_length`` and ``burn_in`` of ``params``.

    Raises:
        ValueError: naming the field: an unknown ``torso``; with ``"lstm"`` a ``lstm_size`` below
            1, a ``sequence_length`` below 2 or longer than the replay buffer's slots per env, a
            ``burn_in`` below 0 or not shorter than ``sequence_length``; with ``"mlp"`` a
            ``sequence_length`` (windows of a feed-forward agent come from ``n_step``).
    """
    if params.torso not in TORSOS:
        raise ValueError(f"algo_params.torso={params.torso!r} is invalid: use one of {TORSOS}.")
    if params.torso == "mlp":
        if params.sequence_length is not None:
            raise ValueError(
                f"algo_params.sequence_length={params.sequence_length!r} is only read with "
                "torso='lstm': set torso='lstm', or leave it None (n_step sets the windows of a "
                "feed-forward agent)."
            )
        return
    check_int_param(params, "lstm_size", 1)
    check_sequence_params(params, config)


def check_sequence_params(params: Any, config: AlgoConfig) -> None:
    """Validates the stored sequences of a recurrent Q-learner: ``sequence_length`` (>= 2, at
    most the replay buffer's slots per env) and ``burn_in`` (>= 0, shorter than the sequence).

    Raises:
        ValueError: naming the field.
    """
    check_int_param(params, "sequence_length", 2)
    check_int_param(params, "burn_in", 0)
    if params.burn_in >= params.sequence_length:
        raise ValueError(
            f"algo_params.burn_in={params.burn_in} must be smaller than "
            f"algo_params.sequence_length={params.sequence_length}: no step would be learned."
        )
    slots = config.update_cfg.max_buffer_size // config.env_cfg.n_envs
    if params.sequence_length > slots:
        raise ValueError(
            f"algo_params.sequence_length={params.sequence_length} is longer than the replay "
            f"buffer's {slots} slots per env; lower it or raise update_cfg.max_buffer_size."
        )


def is_recurrent(config: AlgoConfig) -> bool:
    """Whether ``config`` describes a Q-learning agent with the LSTM torso."""
    return getattr(config.algo_params, "torso", "mlp") == "lstm"


class DQNBatch(NamedTuple):
    """A processed DQN batch.

    Attributes:
        observation: ``[B, ...]``.
        action: ``[B]``.
        target: TD targets ``[B]``.
        weight: per-sample loss weights ``[B]`` (prioritized replay's importance weights).
    """

    observation: Any
    action: jax.Array
    target: jax.Array
    weight: jax.Array


class BootstrapTransition(NamedTuple):
    """A transition reduced to what a Q-learning target needs, each field ``[B, ...]``.

    Attributes:
        observation: ``o_t``.
        action: ``a_t``.
        reward: the (n-step discounted) reward sum.
        discount: the bootstrap discount, ``gamma^k`` or 0 after a termination.
        next_observation: the observation bootstrapped from.
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_observation: Any


def bootstrap_transition(experience: Experience, gamma: float) -> BootstrapTransition:
    """Reduces sampled experience to :class:`BootstrapTransition`.

    Args:
        experience: single transitions (leaves ``[B, ...]``), or windows of ``n`` consecutive
            transitions of one env (leaves ``[B, n, ...]``, from ``algo_params.n_step > 1``),
            which are cut at the first episode end (see
            :func:`kitae.timesteps.compute_n_step_return`).
        gamma: discount.
    """
    if jnp.ndim(experience.reward) == 1:
        return BootstrapTransition(
            experience.observation,
            experience.action,
            experience.reward.astype(jnp.float32),
            gamma * (1.0 - experience.done.astype(jnp.float32)),
            experience.next_observation,
        )
    truncated = experience.truncated
    if truncated is None:
        truncated = jnp.zeros_like(experience.done)
    n_return, discount, last = jax.vmap(compute_n_step_return, in_axes=(0, 0, 0, None))(
        experience.reward, experience.done.astype(bool), truncated.astype(bool), gamma
    )
    batch = jnp.arange(last.shape[0])
    return BootstrapTransition(
        jax.tree.map(lambda x: x[:, 0], experience.observation),
        experience.action[:, 0],
        n_return,
        discount,
        jax.tree.map(lambda x: x[batch, last], experience.next_observation),
    )


def select_bootstrap_actions(
    q_online_tp1: jax.Array | None,
    q_target_tp1: jax.Array,
    double_q: bool,
    mask_tp1: jax.Array | None = None,
) -> jax.Array:
    """``int32[B]`` bootstrap actions: the online argmax (double-Q) or the target argmax, over
    the valid actions of the next observations.

    Args:
        q_online_tp1: online Q-values of the next observations ``[B, A]`` (double-Q only).
        q_target_tp1: target Q-values of the next observations ``[B, A]``.
        double_q: select with the online network.
        mask_tp1: ``bool[B, A]`` valid next actions (see :mod:`kitae.masking`), or ``None``.
    """
    q = q_online_tp1 if double_q else q_target_tp1
    return masked_argmax(q, mask_tp1)


def check_exploration(params: Any, unit_fields: tuple[str, ...] = ()) -> None:
    """Validates an epsilon-greedy schedule's fields (and ``unit_fields``) of ``params``.

    Raises:
        ValueError: naming the field: ``exploration_start``, ``exploration_end`` and each of
            ``unit_fields`` outside ``[0, 1]``, or ``exploration_fraction`` outside ``(0, 1]``.
    """
    for name in (*unit_fields, "exploration_start", "exploration_end"):
        value = getattr(params, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"algo_params.{name}={value!r} is invalid: it must be in [0, 1].")
    if not 0.0 < params.exploration_fraction <= 1.0:
        raise ValueError(
            f"algo_params.exploration_fraction={params.exploration_fraction!r} is invalid: it "
            "must be in (0, 1]."
        )


def epsilon_schedule(params: DQNParams, n_env_steps: int) -> LinearSchedule:
    """The linear epsilon schedule of ``params`` over a run of ``n_env_steps``."""
    return LinearSchedule(
        params.exploration_start,
        params.exploration_end,
        params.exploration_fraction * n_env_steps,
    )


def traced_epsilon(
    schedule: LinearSchedule, hyperparams: dict[str, Any], env_steps: int | jax.Array
) -> float | jax.Array:
    """Epsilon at ``env_steps``; the traced ``exploration_start`` / ``exploration_end`` of a
    compiled sweep (in ``hyperparams``) replace the schedule's ends when given."""
    if "exploration_start" in hyperparams or "exploration_end" in hyperparams:
        schedule = dataclasses.replace(
            schedule,
            start=hyperparams.get("exploration_start", schedule.start),
            end=hyperparams.get("exploration_end", schedule.end),
        )
    return schedule(env_steps)


def q_network_train_state(
    key: jax.Array,
    config: AlgoConfig,
    network: nn.Module,
    inputs: Sequence[gym.Space | Sequence[int]],
    tabulate: bool = False,
) -> TrainState:
    """A TrainState for a Q-network initialised on ``inputs`` (see
    :func:`~kitae.modules.modules.init_params`): ``target_params`` start equal to ``params``;
    Adam over the run's gradient steps (:func:`~kitae.schedules.off_policy_gradient_steps`)."""
    params = init_params(key, network, inputs, tabulate)
    return TrainState.create(
        apply_fn=network.apply,
        params=params,
        target_params=params,
        tx=make_optimizer(config.update_cfg, off_policy_gradient_steps(config)),
    )


def build_q_network(
    config: AlgoConfig,
    network_factory: Callable[..., nn.Module],
    preprocess_fn: Callable | None = None,
    **head_kwargs: Any,
) -> nn.Module:
    """A Q-network from ``network_factory(observation_space, action_space, hidden_sizes=...,
    activation=..., dueling=..., preprocess_fn=..., encoder=..., **head_kwargs)`` with the shared
    params; the encoder is :func:`~kitae.modules.encoders.network_encoder`'s."""
    p: QLearningParams = config.algo_params
    return network_factory(
        config.env_cfg.observation_space,
        config.env_cfg.action_space,
        hidden_sizes=p.hidden_sizes,
        activation=p.activation,
        dueling=p.dueling,
        preprocess_fn=preprocess_fn,
        encoder=network_encoder(config, preprocess_fn),
        **head_kwargs,
    )


def train_state_dqn_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The Q-network's TrainState; ``target_params`` start equal to ``params`` (with
    ``torso="lstm"``, R2D2's recurrent Q-network)."""
    if is_recurrent(config):
        from kitae.algos import r2d2

        return r2d2.train_state_r2d2_factory(
            key, r2d2.recurrent_q_config(config), preprocess_fn=preprocess_fn, tabulate=tabulate
        )
    qvalue = build_q_network(config, qvalue_factory, preprocess_fn)
    return q_network_train_state(key, config, qvalue, [config.env_cfg.observation_space], tabulate)


def epsilon_greedy(
    key: jax.Array,
    qvalues: jax.Array,
    epsilon: float | jax.Array,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Epsilon-greedy ``(actions [B], log_probs [B])`` over ``qvalues [B, A]``, among the valid
    actions of ``mask`` (``bool[B, A]``) when given (see :func:`kitae.masking.epsilon_greedy`)."""
    return masked_epsilon_greedy(key, qvalues, epsilon, mask)


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [B, ...], exploration) -> (actions, log_probs)``,
    epsilon-greedy with ``epsilon = exploration`` among the valid actions of an action mask.

    With ``torso="lstm"``: R2D2's ``explore_fn(state, key, observations, core_state,
    exploration) -> (actions, log_probs, core_state)`` (see
    :func:`kitae.algos.r2d2.explore_factory`).
    """
    if is_recurrent(config):
        from kitae.algos import r2d2

        return r2d2.explore_factory(r2d2.recurrent_q_config(config))

    def explore_fn(
        state: TrainState, key: jax.Array, observations: jax.Array, exploration: float | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        qvalues = state.apply_fn(state.params, observations)
        return epsilon_greedy(key, qvalues, exploration, action_mask(observations))

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B] or [B, n]) -> DQNBatch`` with TD
    targets ``R + discount * Q_target(s', a*)``, ``a*`` from the online net when double-Q.

    With ``torso="lstm"``: R2D2's windows ``[B, L]`` with their stored core states (see
    :func:`kitae.algos.r2d2.process_experience_factory`).
    """
    if is_recurrent(config):
        from kitae.algos import r2d2

        return r2d2.process_experience_factory(r2d2.recurrent_q_config(config))
    p: DQNParams = config.algo_params

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> DQNBatch:
        del key
        t = bootstrap_transition(experience, p.gamma)
        next_q_target = state.apply_fn(state.target_params, t.next_observation)
        next_q_online = state.apply_fn(state.params, t.next_observation) if p.double_q else None
        next_actions = select_bootstrap_actions(
            next_q_online, next_q_target, p.double_q, action_mask(t.next_observation)
        )
        next_values = jnp.take_along_axis(next_q_target, next_actions[:, None], axis=-1)[:, 0]
        targets = compute_td_targets(t.reward, t.discount, next_values)
        return DQNBatch(t.observation, t.action, targets, jnp.ones_like(targets))

    return process_experience_fn


def q_learning_update_step(params: QLearningParams, sample_losses: Callable) -> Callable:
    """The update step shared by the Q-learning agents.

    Args:
        params: the agent's params (``tau``, ``target_update_period``, ``prioritized``).
        sample_losses: ``sample_losses(state, params, key, batch) -> (losses [B], priorities [B],
            info)``, the per-sample losses of the online ``params`` and the new priorities.

    Returns:
        ``update_step_fn(state, key, batch) -> (state, info)``: one gradient step on the mean of
        ``batch.weight * losses``, then the periodic target update; with prioritized replay
        ``info["td_error"]`` holds the priorities.
    """

    def update_step_fn(state: TrainState, key: jax.Array, batch: Any):
        def loss_fn(online: Params):
            losses, priorities, info = sample_losses(state, online, key, batch)
            loss = jnp.mean(batch.weight * losses)
            return loss, ({"loss_qvalue": loss, **info}, priorities)

        (_, (info, priorities)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads)
        state = state.update_target(params.tau, params.target_update_period)
        if params.prioritized:
            info = {**info, "td_error": priorities}
        return state, info

    return update_step_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, DQNBatch) -> (state, info)``: one gradient step on the
    (importance-weighted) TD loss, then the periodic target update; priorities are ``|TD error|``.

    With ``torso="lstm"``: R2D2's update on replayed windows (burn-in, n-step double-Q targets;
    see :func:`kitae.algos.r2d2.update_step_factory`).
    """
    if is_recurrent(config):
        from kitae.algos import r2d2

        return r2d2.update_step_factory(r2d2.recurrent_q_config(config))
    return q_learning_update_step(config.algo_params, dqn_sample_losses(config))


def dqn_sample_losses(config: AlgoConfig) -> Callable:
    """``sample_losses(state, params, key, DQNBatch) -> (losses [B], td_errors [B], info)``:
    DQN's per-sample TD losses of the online ``params`` (the loss :func:`update_step_factory`
    minimises, see :func:`q_learning_update_step`)."""
    p: DQNParams = config.algo_params
    td_loss = LOSSES[p.loss]

    def sample_losses(state: TrainState, params: Params, key: jax.Array, batch: DQNBatch):
        del key
        qvalues = state.apply_fn(params, batch.observation)
        actions = batch.action[:, None].astype(jnp.int32)
        q_taken = jnp.take_along_axis(qvalues, actions, -1)[:, 0]
        losses = jax.vmap(td_loss)(q_taken, batch.target)
        return losses, batch.target - q_taken, {"qvalue_mean": q_taken.mean()}

    return sample_losses


class DQN(QActingAgent):
    """DQN agent (see :class:`DQNParams`).

    ``explore`` is epsilon-greedy with the linear schedule of ``DQNParams``;
    ``select_action`` is greedy. With ``torso="lstm"`` both carry the recurrent core state of the
    ``N`` envs between calls, as :class:`~kitae.algos.r2d2.R2D2` does (see
    :class:`~kitae.algos.q_acting.QActingAgent`).
    """

    params_type = DQNParams
    default_n_envs = 4
    traced_hyperparams = ("exploration_start", "exploration_end")
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
        self.exploration = epsilon_schedule(config.algo_params, config.train_cfg.n_env_steps)

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.config)

    @property
    def core_state_width(self) -> int:
        return core_state_size("lstm", self.config.algo_params.lstm_size)

    def _epsilon(self) -> float | jax.Array:
        return traced_epsilon(self.exploration, self.hyperparams, self.env_steps)
