"""AlphaZero: a policy-value network improved by Monte-Carlo tree search over a JAX env's true
dynamics.

Acting runs one ``mctx`` search per env from a clone of its state
(:func:`kitae.planning.search.run_search`, terminal states absorbing inside the tree); the
agent acts with the search and stores the search policy. Learning is on-policy, one rollout of
``T = max_buffer_size // n_envs`` steps at a time: the policy head is trained toward the stored
search policy (cross-entropy), the value head (scalar, or categorical two-hot over a fixed
support) toward λ-returns or Monte-Carlo returns of the rollout.

It runs on the compiled path unchanged: the env is a :class:`~kitae.planning.search.PlanningEnv`
whose observations carry the env state, and the search policy travels in
:class:`~kitae.buffer.Experience`'s ``log_prob`` field as ``log π_search(·|s)`` ``[N, A]``.
:func:`make_train` builds the pure ``train(key)``; :class:`AlphaZero` is the agent shell
(``agent.train(env)`` on the env it plans with, logging through its logger).

See "Mastering the game of Go without human knowledge", Silver et al., 2017; "A general
reinforcement learning algorithm that masters chess, shogi, and Go through self-play",
Silver et al., 2018; "Policy improvement by planning with Gumbel", Danihelka et al., 2022.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import rlax

from kitae import compiled
from kitae.algos.ppo import total_gradient_steps
from kitae.buffer import Experience
from kitae.config import AlgoConfig, AlgoParams, EncoderParams, UpdateConfig, check_int_param
from kitae.modules.encoders import FLATTEN, Encoder, EncoderSpec, network_encoder
from kitae.modules.modules import MLP, init_params
from kitae.modules.optimizer import make_optimizer
from kitae.modules.train_state import TrainState
from kitae.on_policy import OnPolicyAgent
from kitae.planning.search import (
    SEARCH_KINDS,
    PlanningEnv,
    SearchObservation,
    SearchParams,
    planning_env,
    run_search,
)
from kitae.timesteps import compute_lambda_returns
from kitae.types import Params

VALUE_TARGETS = ("lambda", "monte_carlo")
VALUE_HEADS = ("scalar", "categorical")


@dataclass
class AlphaZeroParams(AlgoParams, EncoderParams):
    """AlphaZero hyperparameters.

    Attributes:
        num_simulations: search simulations per acting step.
        search: ``"gumbel"`` (Gumbel MuZero root selection, sound with few simulations) or
            ``"puct"`` (AlphaZero's PUCT with Dirichlet root noise).
        max_depth: maximum search depth (``None``: unbounded).
        gamma: discount, in the tree and in the value targets.
        value_target: ``"lambda"`` (λ-returns of the rollout) or ``"monte_carlo"`` (discounted
            returns to the episode end, bootstrapped only where the rollout or a time limit
            cuts the episode).
        td_lambda: λ of the λ-returns.
        value_head: ``"scalar"`` (MSE) or ``"categorical"`` (cross-entropy to the two-hot
            target over ``value_support_size`` bins spanning ``[value_min, value_max]``).
        value_support_size: categorical: number of bins.
        value_min: categorical: lowest bin.
        value_max: categorical: highest bin.
        value_rescaling: categorical: two-hot of ``h(target)`` with the signed hyperbolic
            ``h`` (the support then spans ``h``-values).
        dirichlet_alpha: PUCT: root noise concentration.
        dirichlet_fraction: PUCT: root noise weight.
        pb_c_init: PUCT: exploration constant.
        temperature: PUCT: acting samples ``visits ** (1 / temperature)``.
        gumbel_scale: Gumbel: noise scale while exploring.
        max_num_considered_actions: Gumbel: root actions kept by sequential halving.
        policy_coef: weight of the policy loss.
        value_coef: weight of the value loss.
        hidden_sizes: shared torso widths (an MLP on the encoder's features).
        activation: torso activation.
        encoder: observation encoder (keyword-only, see :class:`~kitae.config.EncoderParams`).
    """

    num_simulations: int = 16
    search: str = "gumbel"
    max_depth: int | None = None
    gamma: float = 0.99
    value_target: str = "lambda"
    td_lambda: float = 0.95
    value_head: str = "scalar"
    value_support_size: int = 51
    value_min: float = -10.0
    value_max: float = 10.0
    value_rescaling: bool = False
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    pb_c_init: float = 1.25
    temperature: float = 1.0
    gumbel_scale: float = 1.0
    max_num_considered_actions: int = 16
    policy_coef: float = 1.0
    value_coef: float = 1.0
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"

    def validate(self, config: AlgoConfig) -> None:
        check_int_param(self, "num_simulations", 1)
        check_int_param(self, "max_num_considered_actions", 1)
        check_int_param(self, "value_support_size", 2)
        if self.max_depth is not None:
            check_int_param(self, "max_depth", 1)
        for name, choices in (
            ("search", SEARCH_KINDS),
            ("value_target", VALUE_TARGETS),
            ("value_head", VALUE_HEADS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"algo_params.{name}={getattr(self, name)!r} is invalid: use one of "
                    f"{list(choices)}."
                )
        if not self.value_min < self.value_max:
            raise ValueError(
                f"algo_params.value_max={self.value_max!r} is invalid: it must be > "
                f"value_min={self.value_min!r}."
            )
        for name in ("dirichlet_alpha", "pb_c_init"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"algo_params.{name}={getattr(self, name)!r} is invalid: it must be > 0."
                )
        for name in ("temperature", "gumbel_scale"):
            if not getattr(self, name) >= 0:
                raise ValueError(
                    f"algo_params.{name}={getattr(self, name)!r} is invalid: it must be >= 0."
                )
        if not 0.0 <= self.dirichlet_fraction <= 1.0:
            raise ValueError(
                f"algo_params.dirichlet_fraction={self.dirichlet_fraction!r} is invalid: it must "
                "be in [0, 1]."
            )
        if not isinstance(config.env_cfg.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"env_cfg.action_space={config.env_cfg.action_space} is not supported by "
                "AlphaZero: it needs a gymnasium.spaces.Discrete action space."
            )

    def search_params(self) -> SearchParams:
        """The :class:`~kitae.planning.search.SearchParams` of these hyperparameters."""
        return SearchParams(
            num_simulations=self.num_simulations,
            gamma=self.gamma,
            kind=self.search,
            max_depth=self.max_depth,
            dirichlet_alpha=self.dirichlet_alpha,
            dirichlet_fraction=self.dirichlet_fraction,
            pb_c_init=self.pb_c_init,
            temperature=self.temperature,
            gumbel_scale=self.gumbel_scale,
            max_num_considered_actions=self.max_num_considered_actions,
        )


class AlphaZeroNetwork(nn.Module):
    """Shared torso (observation encoder and MLP) with a policy head (``A`` logits) and a value
    head.

    Attributes:
        n_actions: number of actions ``A``.
        value_size: 1 for a scalar value (returned as ``[B]``), else the number of value bins.
        hidden_sizes: torso widths.
        activation: torso activation.
        preprocess_fn: applied to the observations first.
        encoder: the observation encoder (see :mod:`kitae.modules.encoders`).
    """

    n_actions: int
    value_size: int = 1
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    preprocess_fn: Callable | None = None
    encoder: EncoderSpec = FLATTEN

    @nn.compact
    def __call__(self, observations: Any) -> tuple[jax.Array, jax.Array]:
        """``observations [B, ...] -> (logits [B, A], value [B] or value logits [B, K])``."""
        if self.preprocess_fn is not None:
            observations = self.preprocess_fn(observations)
        x = Encoder(self.encoder)(observations)
        x = MLP(tuple(self.hidden_sizes), self.activation)(x)
        logits = nn.Dense(self.n_actions)(x)
        value = nn.Dense(self.value_size)(x)
        return logits, value[:, 0] if self.value_size == 1 else value


def decode_value(p: AlphaZeroParams, value_output: jax.Array) -> jax.Array:
    """Scalar values ``[B]`` from the value head's output (``[B]`` or logits ``[B, K]``).

    The categorical head uses ``rlax.transform_from_2hot`` (and ``rlax.signed_parabolic`` with
    ``value_rescaling``), the inverse of the target transform in :func:`value_loss`.
    """
    if p.value_head == "scalar":
        return value_output
    value = rlax.transform_from_2hot(
        jax.nn.softmax(value_output), p.value_min, p.value_max, p.value_support_size
    )
    return rlax.signed_parabolic(value) if p.value_rescaling else value


def value_loss(p: AlphaZeroParams, value_output: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean value loss: ``0.5 * (v - target)^2`` (scalar head) or the cross-entropy between
    the value logits ``[B, K]`` and ``rlax.transform_to_2hot(target)`` (categorical head)."""
    if p.value_head == "scalar":
        chex.assert_equal_shape([value_output, targets])
        return 0.5 * jnp.mean(jnp.square(value_output - targets))
    if p.value_rescaling:
        targets = rlax.signed_hyperbolic(targets)
    two_hot = rlax.transform_to_2hot(targets, p.value_min, p.value_max, p.value_support_size)
    return -jnp.mean(jnp.sum(two_hot * jax.nn.log_softmax(value_output), axis=-1))


class AlphaZeroBatch(NamedTuple):
    """A processed AlphaZero batch.

    Attributes:
        observation: env observations ``[B, ...]``.
        search_policy: the search's improved policy ``[B, A]``.
        target: value targets ``[B]``.
    """

    observation: Any
    search_policy: jax.Array
    target: jax.Array


def make_predict_fn(p: AlphaZeroParams, apply_fn: Callable) -> Callable:
    """``predict_fn(net_params, observations [B, ...]) -> (logits [B, A], values [B])``."""

    def predict_fn(net_params: Params, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits, value_output = apply_fn(net_params, observations)
        return logits, decode_value(p, value_output)

    return predict_fn


def train_state_alphazero_factory(
    key: jax.Array,
    config: AlgoConfig,
    *,
    preprocess_fn: Callable | None = None,
    tabulate: bool = False,
) -> TrainState:
    """The policy-value network's TrainState (no target network); Adam over the run's gradient
    steps."""
    p: AlphaZeroParams = config.algo_params
    network = AlphaZeroNetwork(
        n_actions=int(config.env_cfg.action_space.n),
        value_size=p.value_support_size if p.value_head == "categorical" else 1,
        hidden_sizes=tuple(p.hidden_sizes),
        activation=p.activation,
        preprocess_fn=preprocess_fn,
        encoder=network_encoder(config, preprocess_fn),
    )
    params = init_params(key, network, [config.env_cfg.observation_space], tabulate)
    return TrainState.create(
        apply_fn=network.apply,
        params=params,
        tx=make_optimizer(config.update_cfg, total_gradient_steps(config)),
    )


def explore_factory(config: AlgoConfig, env: PlanningEnv | str | Any | None = None) -> Callable:
    """``explore_fn(state, key, observations, greedy=False) -> (actions [B], log π_search [B, A])``.

    Args:
        config: the agent's config.
        env: the env the search steps (default: ``env_cfg.task_name`` as a gymnax id); its
            observations are :class:`~kitae.planning.search.SearchObservation` ``[B, ...]``.
    """
    p: AlphaZeroParams = config.algo_params
    env = planning_env(config.env_cfg.task_name if env is None else env)
    search_params = p.search_params()

    def explore_fn(
        state: TrainState,
        key: jax.Array,
        observations: SearchObservation,
        greedy: bool | jax.Array = False,
    ) -> tuple[jax.Array, jax.Array]:
        predict_fn = make_predict_fn(p, state.apply_fn)
        output = run_search(env, predict_fn, search_params, state.params, key, observations, greedy)
        weights = output.action_weights
        return output.action, jnp.log(jnp.maximum(weights, jnp.finfo(weights.dtype).tiny))

    return explore_fn


def process_experience_factory(config: AlgoConfig) -> Callable:
    """``process_experience_fn(state, key, experience [T, ...]) -> AlphaZeroBatch`` for one env's
    rollout: the stored search policies and the value targets
    (:func:`kitae.timesteps.compute_lambda_returns`)."""
    p: AlphaZeroParams = config.algo_params
    lambda_ = p.td_lambda if p.value_target == "lambda" else 1.0

    def process_experience_fn(
        state: TrainState, key: jax.Array, experience: Experience
    ) -> AlphaZeroBatch:
        del key
        _, next_values = state.apply_fn(state.params, experience.next_observation.observation)
        targets = compute_lambda_returns(
            experience.reward,
            decode_value(p, next_values),
            experience.done,
            experience.truncated,
            p.gamma,
            lambda_,
        )
        return AlphaZeroBatch(
            experience.observation.observation, jnp.exp(experience.log_prob), targets
        )

    return process_experience_fn


def update_step_factory(config: AlgoConfig) -> Callable:
    """``update_step_fn(state, key, AlphaZeroBatch) -> (state, info)``: one gradient step on
    ``policy_coef * CE(search policy, policy) + value_coef * value_loss``."""
    p: AlphaZeroParams = config.algo_params

    def update_step_fn(state: TrainState, key: jax.Array, batch: AlphaZeroBatch):
        del key

        def loss_fn(params: Params):
            logits, value_output = state.apply_fn(params, batch.observation)
            log_policy = jax.nn.log_softmax(logits)
            policy_loss = -jnp.mean(jnp.sum(batch.search_policy * log_policy, axis=-1))
            loss_value = value_loss(p, value_output, batch.target)
            loss = p.policy_coef * policy_loss + p.value_coef * loss_value
            entropy = -jnp.mean(jnp.sum(jnp.exp(log_policy) * log_policy, axis=-1))
            return loss, {
                "loss": loss,
                "loss_policy": policy_loss,
                "loss_value": loss_value,
                "entropy": entropy,
                "value_mean": decode_value(p, value_output).mean(),
                "target_mean": batch.target.mean(),
            }

        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), info

    return update_step_fn


def make_train(
    config: AlgoConfig,
    env: str | Any,
    *,
    n_env_steps: int | None = None,
    log_interval: int | None = None,
    log_callback: Callable[[compiled.Metrics], None] | None = None,
) -> compiled.CompiledTrain:
    """AlphaZero's ``train(key, hyperparams=None) -> (runner, metrics)`` on a JAX env.

    The four factories run through :func:`kitae.compiled.make_train` as an on-policy agent:
    rollouts of ``max_buffer_size // n_envs`` steps acting with the search, then ``n_epochs``
    passes of minibatches of ``batch_size``. ``jax.jit(jax.vmap(train))(keys)`` trains one agent
    per key.

    Args:
        config: an AlphaZero config describing ``env`` (see
            :func:`kitae.compiled.config_for_jax_env`).
        env: a gymnax id, gymnax env, JaxEnv or PlanningEnv; it is both acted in and searched.
        n_env_steps: transitions to train for (default ``config.train_cfg.n_env_steps``).
        log_interval: transitions per metrics row.
        log_callback: called on the host with each metrics row.
    """
    env = planning_env(env)
    return compiled.make_train(
        config,
        env,
        train_state_alphazero_factory,
        functools.partial(explore_factory, env=env),
        process_experience_factory,
        update_step_factory,
        algo_type="on_policy",
        n_env_steps=n_env_steps,
        log_interval=log_interval,
        log_callback=log_callback,
    )


class AlphaZero(OnPolicyAgent):
    """AlphaZero agent (see :class:`AlphaZeroParams`); JAX envs only.

    ``explore`` acts with the search (Gumbel noise or Dirichlet noise and temperature);
    ``select_action`` with the noiseless search. ``train(env)`` runs the compiled path on the
    env the agent plans with.

    Args:
        run_name: name of the run.
        config: its config.
        env: the env searched and trained on (default: ``env_cfg.task_name`` as a gymnax id).
        **kwargs: as :class:`~kitae.base.BaseAgent`.
    """

    params_type = AlphaZeroParams
    default_n_envs = 16
    factories = (
        train_state_alphazero_factory,
        explore_factory,
        process_experience_factory,
        update_step_factory,
    )
    default_update_cfg = UpdateConfig(
        learning_rate=1e-3,
        max_grad_norm=1.0,
        max_buffer_size=256,
        batch_size=64,
        n_epochs=2,
    )

    def __init__(self, run_name: str, config: AlgoConfig, env: str | Any = None, **kwargs: Any):
        self.planning_env = planning_env(config.env_cfg.task_name if env is None else env)
        self._given_env = env
        kwargs.setdefault(
            "explore_factory", functools.partial(explore_factory, env=self.planning_env)
        )
        super().__init__(run_name, config, **kwargs)

    def select_action(self, observation: SearchObservation) -> tuple[jax.Array, jax.Array]:
        return self.explore_fn(
            self.acting_state, self.interact_keys(observation), observation, True
        )

    def as_jax_env(self, env: Any = None) -> PlanningEnv:
        """The env the agent plans with, for ``env``: ``None``, that env, its source, or another
        instance of the same gymnax env (same id and env class).

        Raises:
            ValueError: if ``env`` is another env.
        """
        if env is None or env is self._given_env or env is self.planning_env:
            return self.planning_env
        name = env if isinstance(env, str) else getattr(env, "name", None)
        inner = getattr(env, "env", env)
        if name == self.planning_env.name and (
            isinstance(env, str) or type(inner) is type(self.planning_env.env)
        ):
            return self.planning_env
        raise ValueError(
            f"env must be the env AlphaZero was built with ({self.planning_env.name}, which it "
            "searches with) or None."
        )

    def train(self, env: Any = None, n_env_steps: int | None = None, **kwargs: Any):
        """Trains on the env the agent plans with (``env``: see :meth:`as_jax_env`).

        Raises:
            ValueError: if ``env`` is another env.
        """
        return super().train(self.as_jax_env(env), n_env_steps, **kwargs)
