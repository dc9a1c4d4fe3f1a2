"""Configuration dataclasses and their validation.

An agent is configured by one :class:`AlgoConfig` that groups the algorithm's own parameters
(``algo_params``, any dataclass), the update settings, the training-loop settings and a
description of the environment. Every config is validated before anything is built: a bad value
raises :class:`ValueError` naming the field, the value and what would fix it.

Units: every step count in kitae (``n_env_steps``, ``start_step``, ``skip_steps``) counts
environment transitions summed over the vectorized envs, as in Stable-Baselines3's
``total_timesteps``; ``max_buffer_size`` counts transitions too.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass
class AlgoParams:
    """Base class for algorithm parameters; inheriting from it is optional.

    A params dataclass may define ``validate(self, config)`` to check itself against the whole
    config; :func:`validate_config` calls it.
    """


@dataclass
class UpdateConfig:
    """How the agent's networks are updated.

    Attributes:
        learning_rate: optimizer step size.
        learning_rate_annealing: decay the learning rate linearly to 0 over the run's gradient
            steps.
        max_grad_norm: clip gradients to this global norm; ``None`` disables clipping.
        max_buffer_size: off-policy: replay capacity in transitions; on-policy: rollout size in
            transitions (``n_steps * n_envs``).
        batch_size: transitions per gradient step (off-policy) or per minibatch (on-policy).
        n_epochs: off-policy: gradient steps per update, each on a fresh sample; on-policy:
            passes over the rollout per update.
        shared_encoder: share the torso between policy and value heads (actor-critic agents).
    """

    learning_rate: float = 3e-4
    learning_rate_annealing: bool = False
    max_grad_norm: float | None = None
    max_buffer_size: int = 100_000
    batch_size: int = 64
    n_epochs: int = 1
    shared_encoder: bool = False


@dataclass
class TrainConfig:
    """The training loop.

    Attributes:
        n_env_steps: environment transitions to collect (summed over envs).
        save_frequency: checkpoint every this many transitions; ``-1`` disables.
        progress_bar: show a progress bar with steps/s and the recent episode return.
        log_frequency: transitions between two log records (console/CSV) of losses.
    """

    n_env_steps: int = 100_000
    save_frequency: int = -1
    progress_bar: bool = True
    log_frequency: int = 10_000


@dataclass
class EnvConfig:
    """What the agent needs to know about its environment.

    Attributes:
        task_name: the environment id, e.g. ``"CartPole-v1"``.
        observation_space: the space of one env's observations.
        action_space: the space of one env's actions.
        n_envs: number of vectorized envs.
        n_agents: number of agents (1 for single-agent envs).
    """

    task_name: str
    observation_space: gym.Space
    action_space: gym.Space
    n_envs: int = 1
    n_agents: int = 1

    @classmethod
    def from_env(
        cls, env: gym.Env | gym.vector.VectorEnv, task_name: str | None = None
    ) -> EnvConfig:
        """Builds the config of a (vector) env: spaces of one env, and its number of envs."""
        if isinstance(env, gym.vector.VectorEnv):
            obs_space, act_space, n_envs = (
                env.single_observation_space,
                env.single_action_space,
                env.num_envs,
            )
        else:
            obs_space, act_space, n_envs = env.observation_space, env.action_space, 1
        if task_name is None:
            spec = getattr(env, "spec", None)
            if spec is None and isinstance(env, gym.vector.VectorEnv):
                try:  # the sub-envs' registration, for vector envs built without one
                    spec = env.get_attr("spec")[0]
                except (AttributeError, IndexError, NotImplementedError):
                    spec = None
            task_name = spec.id if spec is not None else type(env).__name__
        return cls(task_name, obs_space, act_space, n_envs=n_envs)


@dataclass
class AlgoConfig:
    """Everything that defines a run: one integer ``seed`` determines params, exploration,
    minibatch sampling and env resets."""

    seed: int
    algo_params: Any
    update_cfg: UpdateConfig
    train_cfg: TrainConfig
    env_cfg: EnvConfig
    extras: dict[str, Any] = field(default_factory=dict)


def _fail(name: str, value: Any, fix: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: {fix}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, value, f"it must be an integer >= {minimum}.")
    if value < minimum:
        _fail(name, value, f"it must be >= {minimum}.")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        _fail(name, value, "it must be a number > 0.")


def _check_unit_interval(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        _fail(name, value, "it must be a number in [0, 1].")


def check_int_param(params: Any, name: str, minimum: int) -> None:
    """For ``validate`` methods: raises ``ValueError`` unless ``params.<name>`` is an integer
    ``>= minimum``."""
    _check_int(f"algo_params.{name}", getattr(params, name), minimum)


def check_tau(params: Any) -> None:
    """For ``validate`` methods: raises ``ValueError`` unless the target update rate
    ``params.tau`` is in ``(0, 1]``."""
    tau = params.tau
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 < tau <= 1.0:
        _fail(
            "algo_params.tau",
            tau,
            "it must be in (0, 1] (1: hard copy, < 1: Polyak averaging, e.g. 0.005).",
        )


def validate_config(config: AlgoConfig) -> None:
    """Checks the generic parts of a config; raises ``ValueError`` naming the bad field.

    Checks sizes and rates of ``update_cfg`` / ``train_cfg`` / ``env_cfg``, the usual fields of
    ``algo_params`` when present (``gamma``, ``skip_steps``, ``start_step``, ``exploration``,
    and any field ending in ``_lambda`` or ``coef``), then calls ``algo_params.validate(config)``
    when the params define it.
    """
    if not isinstance(config, AlgoConfig):
        raise TypeError(f"config must be a kitae.config.AlgoConfig, got {type(config).__name__}.")
    _check_int("seed", config.seed, 0)

    u = config.update_cfg
    _check_positive("update_cfg.learning_rate", u.learning_rate)
    if u.max_grad_norm is not None:
        _check_positive("update_cfg.max_grad_norm (use None to disable clipping)", u.max_grad_norm)
    _check_int("update_cfg.max_buffer_size", u.max_buffer_size, 1)
    _check_int("update_cfg.batch_size", u.batch_size, 1)
    _check_int("update_cfg.n_epochs", u.n_epochs, 1)

    t = config.train_cfg
    _check_int("train_cfg.n_env_steps", t.n_env_steps, 1)
    if t.save_frequency != -1:
        _check_int("train_cfg.save_frequency (use -1 to disable)", t.save_frequency, 1)
    _check_int("train_cfg.log_frequency", t.log_frequency, 1)

    e = config.env_cfg
    _check_int("env_cfg.n_envs", e.n_envs, 1)
    _check_int("env_cfg.n_agents", e.n_agents, 1)
    if not isinstance(e.observation_space, gym.Space):
        _fail("env_cfg.observation_space", e.observation_space, "it must be a gymnasium Space.")
    if not isinstance(e.action_space, gym.Space):
        _fail("env_cfg.action_space", e.action_space, "it must be a gymnasium Space.")

    p = config.algo_params
    if dataclasses.is_dataclass(p):
        values = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    else:
        values = dict(vars(p)) if hasattr(p, "__dict__") else {}
    if "gamma" in values:
        _check_unit_interval("algo_params.gamma", values["gamma"])
    if "exploration" in values:
        _check_unit_interval("algo_params.exploration", values["exploration"])
    if "skip_steps" in values:
        _check_int("algo_params.skip_steps", values["skip_steps"], 1)
    if "start_step" in values:
        _check_int(
            "algo_params.start_step (use -1 to start as soon as possible)", values["start_step"], -1
        )
    for name, value in values.items():
        if name.endswith("_lambda") or name == "gae_lambda":
            _check_unit_interval(f"algo_params.{name}", value)
        elif name.endswith("_coef") and (not isinstance(value, numbers.Real) or value < 0):
            _fail(f"algo_params.{name}", value, "it must be a number >= 0.")
    if hasattr(p, "validate"):
        p.validate(config)
