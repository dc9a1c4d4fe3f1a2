"""R2D2: recurrent Q-learning from replayed sequences with stored core states and burn-in.

The Q-network is an MLP torso, an LSTM or GRU core and a Q head
(:class:`~kitae.modules.recurrent.RecurrentQNetwork`). Acting carries the core state from one
env step to the next, zeroed where the previous step ended an episode; every stored transition
keeps the core state it was acted from (``Experience.actor_state``), so a replayed window of
``sequence_length`` steps restarts from the state stored at its first step. The first
``burn_in`` steps of a window only unroll the online and target cores from that state (no
gradient, no loss); the loss covers the remaining steps with n-step or Q(lambda) targets,
double-Q action choice, optional value rescaling, episode boundaries respected (the core resets
after an episode end, a termination stops bootstrapping, a time-limit truncation bootstraps from
the final observation without continuing into the next episode). With prioritized replay a
window's priority is ``eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|``.

See "Recurrent Experience Replay in Distributed Reinforcement Learning", Kapturowski et al.,
2019; "Observe and Look Further: Achieving Consistent Performance on Atari", Pohlen et al., 2018
(value rescaling); "Rainbow", Hessel et al., 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import rlax

from kitae.algos.dqn import (
    LOSSES,
    BootstrapTransition,
    QLearningParams,
    build_q_network,
    check_sequence_params,
    epsilon_greedy,
    epsilon_schedule,
    q_learning_update_step,
    traced_epsilon,
)
from kitae.algos.q_acting import QActingAgent
from kitae.buffer import Experience
from kitae.config import AlgoConfig, UpdateConfig, check_int_param
from kitae.masking import action_mask, masked_argmax
from kitae.modules.encoders import FLATTEN, dummy_observation
from kitae.modules.optimizer import make_optimizer
from kitae.modules.recurrent import (
    CELLS,
    RecurrentOutput,
    RecurrentQNetwork,
    core_state_size,
    recurrent_qvalue_factory,
)
from kitae.modules.train_state import TrainState
from kitae.schedules import off_policy_gradient_steps
from kitae.timesteps import compute_n_step_return
from kitae.types import Params

TARGETS = ("n_step", "q_lambda")


@dataclass
class R2D2Params(QLearningParams):
    """R2D2 hyperparameters (see :class:`~kitae.algos.dqn.QLearningParams` for the shared ones).

    The defaults suit small memory tasks (a few thousand env steps per minute on a CPU).

    Attributes:
        cell: recurrent core, ``"lstm"`` or ``"gru"``.
        core_size: hidden units of the core.
        sequence_length: steps per replayed window (burn-in included).
        burn_in: leading steps of each window that only warm the cores up from the stored state.
        target: ``"n_step"`` (n-step double-Q returns) or ``"q_lambda"`` (Peng's Q(lambda)
            returns bootstrapped with double-Q values).
        td_lambda: lambda of ``"q_lambda"``.
        value_rescaling: learn ``h(Q)`` with the signed hyperbolic ``h`` of Pohlen et al. (2018).
        priority_mix: ``eta`` of a window's priority ``eta * max|delta| + (1 - eta) *
            mean|delta|``.
        loss: ``"mse"`` or ``"huber"``, per step, averaged over the window.
    """

    cell: str = "lstm"
    core_size: int = 64
    sequence_length: int = 20
    burn_in: int = 4
    target: str = "n_step"
    n_step: int = 3
    td_lambda: float = 0.9
    value_rescaling: bool = False
    priority_mix: float = 0.9
    prioritized: bool = True
    priority_exponent: float = 0.9
    importance_exponent: float = 0.6
    loss: str = "mse"
    hidden_sizes: Sequence[int] = (64,)
    start_step: int = 1000
    skip_steps: int = 4

    def validate(self, config: AlgoConfig) -> None:
        super().validate(config)
        if self.cell not in CELLS:
            raise ValueError(f"algo_params.cell={self.cell!r} is invalid: use one of {CELLS}.")
        if self.target not in TARGETS:
            raise ValueError(
                f"algo_params.target={self.target!r} is invalid: use one of {TARGETS}."
            )
        if self.loss not in LOSSES:
            raise ValueError(
                f"algo_params.loss={self.loss!r} is invalid: use one of {list(LOSSES)}."
            )
        check_int_param(self, "core_size", 1)
        check_sequence_params(self, config)
        if not 0.0 <= self.td_lambda <= 1.0:
            raise ValueError(
                f"algo_params.td_lambda={self.td_lambda!r} is invalid: it must be in [0, 1]."
            )
        if not 0.0 <= self.priority_mix <= 1.0:
            raise ValueError(
                f"algo_params.priority_mix={self.priority_mix!r} is invalid: it must be in [0, 1]."
            )


class R2D2Batch(NamedTuple):
    """Replayed windows for :func:`update_step_factory`, batch-major.

    Attributes:
        observation: ``[B, L, ...]``.
        action: ``int32[B, L]``.
        reward: ``float32[B, L]``.
        terminated: ``bool[B, L]``, the episode terminated after step ``t``.
        truncated: ``bool[B, L]``, the episode hit its time limit after step ``t``.
        next_observation: ``[B, L, ...]``, the true next observation of step ``t``.
        core_state: ``[B, D]``, the stored core state before step 0.
        weight: ``[B]`` importance weights (ones without prioritized replay).
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_observation: Any
    core_state: jax.Array
    weight: jax.Array


def build_recurrent_q_network(
    config: AlgoConfig, preprocess_fn: Callable | None = None
) -> RecurrentQNetwork:
    """The :class:`RecurrentQNetwork` that ``config.algo_params`` describes."""
    p: R2D2Params = config.algo_params
    return build_q_network(
        config, recurrent_qvalue_factory, preprocess_fn, core_size=p.core_size, cell=p.cell
    )


def recurrent_q_config(config: AlgoConfig) -> AlgoConfig:
    """The R2D2 config that runs a Q-learning agent with ``torso="lstm"`` (e.g.
    ``DQNParams(torso="lstm")``): its shared Q-learning fields, an LSTM core of ``lstm_size``
    units, its ``sequence_length``, ``burn_in`` and ``loss`` (``"mse"`` for params without one,
    e.g. the distributional agents', whose losses are their own), ``n_step`` double-Q targets (when
    ``double_q``) without value rescaling, and R2D2's default window-priority mix.

    This is how the feed-forward agents' factories serve their recurrent variant: one sequence
    machinery (this module's factories), whatever agent's params describe it.
    """
    p = config.algo_params
    shared = {f.name: getattr(p, f.name) for f in dataclasses.fields(QLearningParams) if f.init}
    params = R2D2Params(
        **shared,
        cell="lstm",
        core_size=p.lstm_size,
        sequence_length=p.sequence_length,
        burn_in=p.burn_in,
        target="n_step",
        value_rescaling=False,
        loss=getattr(p, "loss", "mse"),
    )
    return dataclasses.replace(config, algo_params=params)


def init_recurrent_q_network(
    key: jax.Array,
    config: AlgoConfig,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> tuple[RecurrentQNetwork, Params]:
    """The :class:`RecurrentQNetwork` of ``config`` and its params, initialised from ``key`` on a
    one-step unroll of one observation."""
    network = build_recurrent_q_network(config, preprocess_fn)
    observations = dummy_observation(config.env_cfg.observation_space, (1, 1))
    inputs = (observations, jnp.zeros((1, 1), bool), network.initial_state(1), observations)
    if tabulate:
        print(network.tabulate(key, *inputs, console_kwargs={"width": 120}))
    return network, network.init(key, *inputs)


def train_state_r2d2_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The recurrent Q-network's TrainState; ``target_params`` start equal to ``params``."""
    network, params = init_recurrent_q_network(key, config, preprocess_fn, tabulate)
    return TrainState.create(
        apply_fn=network.apply,
        params=params,
        target_params=params,
        tx=make_optimizer(config.update_cfg, off_policy_gradient_steps(config)),
    )


def explore_factory(config: AlgoConfig) -> Callable:
    """``explore_fn(state, key, observations [N, ...], core_state [N, D], exploration) ->
    (actions [N], log_probs [N], core_state [N, D])``: epsilon-greedy on one core step.

    ``core_state`` is the state before ``observations`` (already zero for envs whose episode
    starts here); the returned one is the state after them.
    """
    del config

    def explore_fn(
        state: TrainState,
        key: jax.Array,
        observations: jax.Array,
        core_state: jax.Array,
        exploration: float | jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        mask = action_mask(observations)
        observations = jax.tree.map(lambda x: jnp.asarray(x)[None], observations)
        resets = jnp.zeros(jax.tree.leaves(observations)[0].shape[:2], bool)
        out = state.apply_fn(state.params, observations, resets, jnp.asarray(core_state))
        actions, log_probs = epsilon_greedy(key, out.q[0], exploration, mask)
        return actions, log_probs, out.states[0]

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [B, L]) -> R2D2Batch``: the replayed
    windows with their stored start core states (targets need the online unroll, so they are
    computed in the update step)."""
    del config

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> R2D2Batch:
        del state, key
        if experience.actor_state is None:
            raise ValueError(
                "R2D2 needs the core state stored with every transition (Experience.actor_state)."
            )
        truncated = experience.truncated
        if truncated is None:
            truncated = jnp.zeros_like(experience.done)
        reward = experience.reward.astype(jnp.float32)
        return R2D2Batch(
            observation=experience.observation,
            action=experience.action.astype(jnp.int32),
            reward=reward,
            terminated=experience.done.astype(bool),
            truncated=truncated.astype(bool),
            next_observation=experience.next_observation,
            core_state=experience.actor_state[:, 0],
            weight=jnp.ones(reward.shape[:1], jnp.float32),
        )

    return process_experience_fn


def sequence_targets(
    r_t: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    v_t: jax.Array,
    *,
    gamma: float,
    target: str,
    n_step: int,
    td_lambda: float,
    value_rescaling: bool,
) -> jax.Array:
    """Return targets of one window, ``[T]``, with gradients stopped.

    Hand-composed from ``rlax.transformed_n_step_returns`` / ``rlax.transformed_lambda_returns``
    rather than ``rlax.transformed_n_step_q_learning`` / ``rlax.transformed_q_lambda`` because
    those have no per-step lambda to stop a return at a time-limit truncation, and
    ``transformed_q_lambda`` bootstraps with ``max_a q`` (no double-Q).

    Args:
        r_t: ``[T]`` reward of transition ``t``.
        terminated_t: ``[T]``, the episode terminated after transition ``t`` (no bootstrap).
        truncated_t: ``[T]``, the episode was truncated after ``t``: bootstrap from ``v_t[t]``
            and do not continue the return into the next episode.
        v_t: ``[T]`` bootstrap value of transition ``t``'s true next observation, in the
            network's (possibly rescaled) value space.
        gamma: discount.
        target: ``"n_step"`` or ``"q_lambda"``.
        n_step: steps of ``"n_step"`` (fewer near the window's end).
        td_lambda: lambda of ``"q_lambda"``.
        value_rescaling: ``v_t`` and the targets are ``h(.)`` of values (signed hyperbolic).
    """
    chex.assert_rank([r_t, terminated_t, truncated_t, v_t], 1)
    chex.assert_equal_shape([r_t, terminated_t, truncated_t, v_t])
    tx = rlax.SIGNED_HYPERBOLIC_PAIR if value_rescaling else rlax.IDENTITY_PAIR
    discount_t = gamma * (1.0 - terminated_t.astype(jnp.float32))
    cut_t = 1.0 - truncated_t.astype(jnp.float32)
    r_t, v_t = r_t.astype(jnp.float32), v_t.astype(jnp.float32)
    if target == "n_step":
        targets = rlax.transformed_n_step_returns(tx, r_t, discount_t, v_t, n_step, lambda_t=cut_t)
    else:
        targets = rlax.transformed_lambda_returns(tx, r_t, discount_t, v_t, td_lambda * cut_t)
    return jax.lax.stop_gradient(targets)


class SequenceLosses(NamedTuple):
    """Per-window results of :func:`r2d2_sequence_losses`.

    Attributes:
        losses: ``[B]`` TD loss averaged over each window's learned steps.
        priorities: ``[B]`` ``eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|``.
        td_error: ``[T - burn_in, B]`` TD errors of the learned steps.
        q_taken: ``[T - burn_in, B]`` online Q-values of the taken actions.
    """

    losses: jax.Array
    priorities: jax.Array
    td_error: jax.Array
    q_taken: jax.Array


def time_major(x: jax.Array) -> jax.Array:
    """``x [B, T, ...]`` as ``[T, B, ...]`` (and back)."""
    return jnp.swapaxes(x, 0, 1)


def tail(tree: Any, burn_in: int) -> Any:
    """The leaves of a time-major ``tree`` (``[T, ...]``) after their first ``burn_in`` steps."""
    return jax.tree.map(lambda x: x[burn_in:], tree)


def unroll_windows(
    apply_fn: Callable,
    params: Params,
    target_params: Params,
    batch: R2D2Batch,
    burn_in: int,
    method: str | None = None,
) -> tuple[RecurrentOutput, RecurrentOutput]:
    """Online and target unrolls of replayed windows after their burn-in.

    Both cores start from ``batch.core_state`` and reset after every episode end in the window
    (terminated or truncated). The first ``burn_in`` steps are unrolled without gradient and give
    no output; the rest are unrolled with ``batch.next_observation`` too (``q_next``).

    Args:
        apply_fn: the recurrent network's ``apply``.
        params: online params (differentiated after the burn-in).
        target_params: target params (no gradient).
        batch: windows of ``L`` steps (see :class:`R2D2Batch`).
        burn_in: warm-up steps.
        method: the network's method to unroll (``None``: ``__call__``; ``"features"`` for the
            core outputs of a :class:`RecurrentHeadNetwork`).

    Returns:
        ``(online, target)`` :class:`~kitae.modules.recurrent.RecurrentOutput` of the ``L -
        burn_in`` learned steps, time-major.
    """
    observations = jax.tree.map(time_major, batch.observation)
    next_observations = jax.tree.map(time_major, batch.next_observation)
    ended = time_major(batch.terminated) | time_major(batch.truncated)
    resets = jnp.concatenate([jnp.zeros_like(ended[:1]), ended[:-1]], axis=0)
    head = lambda tree: jax.tree.map(lambda x: x[:burn_in], tree)  # noqa: E731

    which = {} if method is None else {"method": method}

    def unroll(net_params: Params) -> RecurrentOutput:
        state = batch.core_state
        if burn_in > 0:
            warm = apply_fn(net_params, head(observations), resets[:burn_in], state, **which)
            state = jax.lax.stop_gradient(warm.states[-1])
        return apply_fn(
            net_params,
            tail(observations, burn_in),
            resets[burn_in:],
            state,
            tail(next_observations, burn_in),
            **which,
        )

    return unroll(params), unroll(jax.lax.stop_gradient(target_params))


def r2d2_sequence_losses(
    apply_fn: Callable,
    params: Params,
    target_params: Params,
    batch: R2D2Batch,
    p: R2D2Params,
) -> SequenceLosses:
    """TD losses of replayed windows: burn-in, then double-Q n-step or Q(lambda) targets.

    Both cores start from ``batch.core_state`` and reset after every episode end in the window.
    The first ``p.burn_in`` steps are unrolled without gradient and excluded from the loss.

    Args:
        apply_fn: the :class:`~kitae.modules.recurrent.RecurrentQNetwork`'s ``apply``.
        params: online params (differentiated).
        target_params: target params.
        batch: windows of ``L = p.sequence_length`` steps (see :class:`R2D2Batch`).
        p: the params (``burn_in``, ``gamma``, ``double_q``, ``target``, ``n_step``,
            ``td_lambda``, ``value_rescaling``, ``priority_mix``, ``loss``).
    """
    online, target = unroll_windows(apply_fn, params, target_params, batch, p.burn_in)
    burn = p.burn_in
    terminated, truncated = time_major(batch.terminated), time_major(batch.truncated)
    next_observations = jax.tree.map(time_major, batch.next_observation)
    q_next_target = jax.lax.stop_gradient(target.q_next)
    selector = jax.lax.stop_gradient(online.q_next) if p.double_q else q_next_target
    next_actions = masked_argmax(selector, action_mask(tail(next_observations, burn)))
    v_t = jnp.take_along_axis(q_next_target, next_actions[..., None], axis=-1)[..., 0]
    targets = jax.vmap(
        lambda r, term, trunc, v: sequence_targets(
            r,
            term,
            trunc,
            v,
            gamma=p.gamma,
            target=p.target,
            n_step=p.n_step,
            td_lambda=p.td_lambda,
            value_rescaling=p.value_rescaling,
        ),
        in_axes=1,
        out_axes=1,
    )(time_major(batch.reward)[burn:], terminated[burn:], truncated[burn:], v_t)
    actions = time_major(batch.action)[burn:]
    q_taken = jnp.take_along_axis(online.q, actions[..., None], axis=-1)[..., 0]
    td_loss = jax.vmap(jax.vmap(LOSSES[p.loss]))(q_taken, targets)
    td_error = targets - q_taken
    priorities = window_priorities(jnp.abs(td_error), p.priority_mix)
    return SequenceLosses(td_loss.mean(axis=0), priorities, td_error, q_taken)


def window_priorities(errors: jax.Array, priority_mix: float) -> jax.Array:
    """Window priorities ``eta * max_t e_t + (1 - eta) * mean_t e_t`` (gradients stopped).

    Args:
        errors: ``[T, B]`` non-negative per-step errors (``|TD error|`` or per-step losses).
        priority_mix: ``eta``.

    Returns:
        ``[B]``.
    """
    errors = jax.lax.stop_gradient(errors)
    return priority_mix * errors.max(axis=0) + (1.0 - priority_mix) * errors.mean(axis=0)


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, R2D2Batch) -> (state, info)``: one gradient step on the
    importance-weighted window losses (:func:`r2d2_sequence_losses`), then the periodic target
    update; priorities are the windows' max/mean mixes of ``|TD error|``."""
    return q_learning_update_step(config.algo_params, r2d2_sample_losses(config))


def r2d2_sample_losses(config: AlgoConfig) -> Callable:
    """``sample_losses(state, params, key, R2D2Batch) -> (losses [B], priorities [B], info)``:
    the window losses of the online ``params`` (:func:`r2d2_sequence_losses`), the loss
    :func:`update_step_factory` minimises."""
    p: R2D2Params = config.algo_params

    def sample_losses(state: TrainState, params: Params, key: jax.Array, batch: R2D2Batch):
        del key
        out = r2d2_sequence_losses(state.apply_fn, params, state.target_params, batch, p)
        info = {"qvalue_mean": out.q_taken.mean(), "td_error_abs": jnp.abs(out.td_error).mean()}
        return out.losses, out.priorities, info

    return sample_losses


# ---- the LSTM torso of the distributional agents -----------------------------------------------


class RecurrentHeadNetwork(RecurrentQNetwork):
    """A :class:`~kitae.modules.recurrent.RecurrentQNetwork` whose Q head is a feed-forward
    network on the core's outputs: C51's, QR-DQN's or IQN's network built on ``[B, F]`` features
    (no torso of its own), so that the agent's feed-forward losses apply step by step.

    Attributes:
        head: ``head(features [B, F], *head_args) -> [B, A, ...]`` (submodule ``head``).
    """

    head: nn.Module | None = None

    def features(
        self, observations: Any, resets: jax.Array, state: jax.Array, next_observations: Any = None
    ) -> RecurrentOutput:
        """Unrolls the torso and core over ``T`` steps (arguments as ``RecurrentQNetwork``'s).

        Returns:
            A :class:`RecurrentOutput` whose ``q`` and ``q_next`` hold the core outputs
            ``[T, B, F]`` of the observations and of the next observations.
        """
        x = self._features(observations)
        x_next = None if next_observations is None else self._features(next_observations)
        _, (y, y_next, states) = self.core(state, (x, resets.astype(bool), x_next))
        return RecurrentOutput(y, states, y_next)

    def head_values(self, features: jax.Array, *head_args: jax.Array) -> jax.Array:
        """The head on core outputs ``[B, F]`` (and its per-row ``head_args``, e.g. IQN's
        ``taus [B, N]``): ``[B, A, ...]``."""
        return self.head(features, *head_args)

    def __call__(
        self,
        observations: Any,
        resets: jax.Array,
        state: jax.Array,
        next_observations: Any = None,
        *head_args: jax.Array,
    ) -> RecurrentOutput:
        """One unroll with the head on every step's core output.

        Args:
            observations: as ``RecurrentQNetwork``'s.
            resets: as ``RecurrentQNetwork``'s.
            state: as ``RecurrentQNetwork``'s.
            next_observations: as ``RecurrentQNetwork``'s.
            head_args: per-row arguments of the head for the ``T * B`` steps, time-major
                (``[T * B, ...]``, e.g. IQN's ``taus``).

        Returns:
            A :class:`RecurrentOutput` with ``q`` the head's outputs ``[T, B, A, ...]`` and
            ``q_next`` the next observations' core outputs ``[T, B, F]`` (or ``None``).
        """
        out = self.features(observations, resets, state, next_observations)
        t, b = out.q.shape[:2]
        values = self.head_values(out.q.reshape((t * b, -1)), *head_args)
        return out._replace(q=values.reshape((t, b, *values.shape[1:])))


def build_recurrent_head_network(
    config: AlgoConfig,
    head_factory: Callable[..., nn.Module],
    preprocess_fn: Callable | None = None,
    **head_kwargs: Any,
) -> RecurrentHeadNetwork:
    """The :class:`RecurrentHeadNetwork` of a ``torso="lstm"`` config: R2D2's encoder, MLP torso
    and LSTM core (:func:`recurrent_q_config`), and ``head_factory(features_space, action_space,
    hidden_sizes=(), activation=..., dueling=..., encoder=FLATTEN, **head_kwargs)`` on the core's
    ``lstm_size`` outputs."""
    base = build_recurrent_q_network(recurrent_q_config(config), preprocess_fn)
    p = config.algo_params
    features_space = gym.spaces.Box(-1.0, 1.0, (p.lstm_size,), np.float32)
    head = head_factory(
        features_space,
        config.env_cfg.action_space,
        hidden_sizes=(),
        activation=p.activation,
        dueling=p.dueling,
        encoder=FLATTEN,
        **head_kwargs,
    )
    return RecurrentHeadNetwork(
        base.n_actions,
        base.hidden_sizes,
        base.core_size,
        base.cell,
        base.activation,
        base.dueling,
        base.preprocess_fn,
        base.encoder,
        head=head,
    )


def train_state_recurrent_head(
    key: jax.Array,
    config: AlgoConfig,
    network: RecurrentHeadNetwork,
    head_shapes: Sequence[Sequence[int]] = (),
    tabulate: bool = False,
) -> TrainState:
    """The TrainState of a :class:`RecurrentHeadNetwork`, initialised on a one-step unroll of one
    observation (with float32 zero head arguments of ``head_shapes``, without the batch axis);
    ``target_params`` start equal to ``params``."""
    observations = dummy_observation(config.env_cfg.observation_space, (1, 1))
    head_args = [jnp.zeros((1, *shape), jnp.float32) for shape in head_shapes]
    inputs = (observations, jnp.zeros((1, 1), bool), network.initial_state(1), observations)
    if tabulate:
        print(network.tabulate(key, *inputs, *head_args, console_kwargs={"width": 120}))
    params = network.init(key, *inputs, *head_args)
    return TrainState.create(
        apply_fn=network.apply,
        params=params,
        target_params=params,
        tx=make_optimizer(config.update_cfg, off_policy_gradient_steps(config)),
    )


def head_state(state: TrainState) -> TrainState:
    """``state`` whose ``apply_fn(params, features [B, F], *head_args)`` applies only the head of
    its :class:`RecurrentHeadNetwork` (what the feed-forward distributional functions call)."""
    apply_fn = state.apply_fn
    return state.replace(
        apply_fn=lambda params, x, *args: apply_fn(params, x, *args, method="head_values")
    )


def recurrent_head_explore_factory(q_values_fn: Callable) -> Callable:
    """``explore_fn(state, key, observations [N, ...], core_state [N, D], exploration) ->
    (actions [N], log_probs [N], core_state [N, D])``: epsilon-greedy on one core step, with
    the Q-values of the head on the core outputs.

    Args:
        q_values_fn: ``(state, params, key, features [N, F]) -> [N, A]``, the feed-forward
            agent's Q-values (called with :func:`head_state`).
    """

    def explore_fn(
        state: TrainState,
        key: jax.Array,
        observations: jax.Array,
        core_state: jax.Array,
        exploration: float | jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        k_values, k_act = jax.random.split(key)
        mask = action_mask(observations)
        observations = jax.tree.map(lambda x: jnp.asarray(x)[None], observations)
        resets = jnp.zeros(jax.tree.leaves(observations)[0].shape[:2], bool)
        out = state.apply_fn(
            state.params, observations, resets, jnp.asarray(core_state), method="features"
        )
        qvalues = q_values_fn(head_state(state), state.params, k_values, out.q[0])
        actions, log_probs = epsilon_greedy(k_act, qvalues, exploration, mask)
        return actions, log_probs, out.states[0]

    return explore_fn


def window_n_step_returns(
    r_t: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    gamma: float,
    n_step: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The n-step return of every step of one window, with fewer steps near its end.

    Step ``t``'s return runs over at most ``n_step`` transitions, cut after an episode end (see
    :func:`kitae.timesteps.compute_n_step_return`) and at the window's last step, from whose
    next observation it then bootstraps.

    Args:
        r_t: ``[T]`` rewards.
        terminated_t: ``bool[T]``, the episode terminated after step ``t`` (no bootstrap).
        truncated_t: ``bool[T]``, the episode was truncated after step ``t``.
        gamma: discount.
        n_step: most transitions per return.

    Returns:
        ``(returns [T], discounts [T], last [T])``: the discounted reward sums, the bootstrap
        discounts (``gamma^k``, 0 after a termination) and the index of the step whose next
        observation each return bootstraps from.
    """
    chex.assert_rank([r_t, terminated_t, truncated_t], 1)
    chex.assert_equal_shape([r_t, terminated_t, truncated_t])
    length = r_t.shape[0]
    index = jnp.arange(length)[:, None] + jnp.arange(n_step)[None, :]  # [T, n]
    valid = index < length
    clipped = jnp.minimum(index, length - 1)
    rewards = jnp.where(valid, r_t[clipped].astype(jnp.float32), 0.0)
    terminated = valid & terminated_t[clipped].astype(bool)
    truncated = (valid & truncated_t[clipped].astype(bool)) | (index == length - 1)
    returns, discounts, last = jax.vmap(compute_n_step_return, in_axes=(0, 0, 0, None))(
        rewards, terminated, truncated, gamma
    )
    return returns, discounts, jnp.arange(length) + last


def recurrent_head_sample_losses(
    config: AlgoConfig, batch_fn: Callable, sample_losses: Callable
) -> Callable:
    """``sample_losses(state, params, key, R2D2Batch) -> (losses [B], priorities [B], info)``:
    a feed-forward agent's per-sample losses on the learned steps of replayed windows.

    Both networks are unrolled from the stored core states (:func:`unroll_windows`, burn-in
    without loss or gradient); every learned step becomes a transition of the core outputs with
    its n-step return (:func:`window_n_step_returns`); the agent's ``batch_fn`` bootstraps it from
    the online and target core outputs of the next observation it reaches, and its
    ``sample_losses`` gives the per-step losses, averaged over each window. Priorities mix the
    per-step losses' max and mean (:func:`window_priorities`, R2D2's default ``eta``).

    Args:
        config: a ``torso="lstm"`` config (``gamma``, ``n_step``, ``burn_in``).
        batch_fn: ``(state, key, t: BootstrapTransition, next_target, mask_tp1) -> batch``: the
            feed-forward agent's targets, the online network evaluated at ``t.next_observation``
            and the target one at ``next_target`` (called with :func:`head_state`).
        sample_losses: the feed-forward agent's ``(state, params, key, batch) -> (losses [B'],
            priorities [B'], info)`` (called with :func:`head_state` on ``B' = T' * B`` steps).
    """
    p = config.algo_params
    priority_mix = R2D2Params.priority_mix

    def window_losses(state: TrainState, params: Params, key: jax.Array, batch: R2D2Batch):
        k_batch, k_loss = jax.random.split(key)
        online, target = unroll_windows(
            state.apply_fn, params, state.target_params, batch, p.burn_in, method="features"
        )
        burn = p.burn_in
        returns, discounts, last = jax.vmap(
            window_n_step_returns, in_axes=(1, 1, 1, None, None), out_axes=1
        )(
            time_major(batch.reward)[burn:],
            time_major(batch.terminated)[burn:],
            time_major(batch.truncated)[burn:],
            p.gamma,
            p.n_step,
        )  # [T', B]
        steps, width = returns.shape

        def flat(x: jax.Array) -> jax.Array:  # [T', B, ...] -> [T' * B, ...]
            return x.reshape((steps * width, *x.shape[2:]))

        def at_last(x: jax.Array) -> jax.Array:  # x[last[t, b], b] of every learned step, flat
            index = last.reshape((*last.shape, *[1] * (x.ndim - 2)))
            return flat(jnp.take_along_axis(x, index, axis=0))

        next_observations = tail(jax.tree.map(time_major, batch.next_observation), burn)
        mask = action_mask(next_observations)
        t = BootstrapTransition(
            observation=flat(online.q),
            action=flat(time_major(batch.action)[burn:]),
            reward=flat(returns),
            discount=flat(discounts),
            next_observation=jax.lax.stop_gradient(at_last(online.q_next)),
        )
        heads = head_state(state)
        next_target = jax.lax.stop_gradient(at_last(target.q_next))
        mask_tp1 = None if mask is None else at_last(mask)
        step_batch = batch_fn(heads, k_batch, t, next_target, mask_tp1)
        losses, _, info = sample_losses(heads, params, k_loss, step_batch)
        losses = losses.reshape((steps, width))
        return losses.mean(axis=0), window_priorities(losses, priority_mix), info

    return window_losses


class R2D2(QActingAgent):
    """R2D2 agent (see :class:`R2D2Params`).

    ``explore`` is epsilon-greedy with the linear schedule of the params, ``select_action``
    greedy; both carry the recurrent core state of the ``N`` envs between calls. The gymnasium
    loop resets it where an episode ended (:meth:`store_transition`) and when training starts on
    a new env; the compiled loop carries it in ``RunnerState.actor_state``. Evaluation
    (``kitae.evaluation.evaluate``, inside :meth:`preserved_keys`) acts from a fresh core state
    and leaves the training one untouched; call :meth:`reset_actor_state` when driving
    ``select_action`` by hand across episodes.

    Checkpoints: the stored core states are part of the replay buffer, and the compiled loop's
    carry (with its core state) is saved whole. A gymnasium run resumes with fresh episodes, so
    its core state restarts from zeros.
    """

    params_type = R2D2Params
    default_n_envs = 4
    traced_hyperparams = ("exploration_start", "exploration_end")
    default_update_cfg = UpdateConfig(
        learning_rate=1e-3,
        learning_rate_annealing=False,
        max_grad_norm=10.0,
        max_buffer_size=20_000,
        batch_size=32,
        n_epochs=1,
    )

    factories = (
        train_state_r2d2_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )

    def __init__(self, run_name: str, config: AlgoConfig, **kwargs: Any):
        super().__init__(run_name, config, **kwargs)
        self.exploration = epsilon_schedule(config.algo_params, config.train_cfg.n_env_steps)

    @property
    def recurrent(self) -> bool:
        return True

    @property
    def core_state_width(self) -> int:
        p: R2D2Params = self.config.algo_params
        return core_state_size(p.cell, p.core_size)

    def _epsilon(self) -> float | jax.Array:
        return traced_epsilon(self.exploration, self.hyperparams, self.env_steps)


__all__ = [
    "R2D2",
    "R2D2Params",
    "R2D2Batch",
    "RecurrentHeadNetwork",
    "SequenceLosses",
    "build_recurrent_head_network",
    "explore_factory",
    "head_state",
    "init_recurrent_q_network",
    "process_experience_factory",
    "r2d2_sample_losses",
    "r2d2_sequence_losses",
    "recurrent_head_explore_factory",
    "recurrent_head_sample_losses",
    "recurrent_q_config",
    "sequence_targets",
    "train_state_r2d2_factory",
    "train_state_recurrent_head",
    "unroll_windows",
    "update_step_factory",
    "window_n_step_returns",
    "window_priorities",
]
