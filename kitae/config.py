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

import contextlib
import copy
import dataclasses
import importlib
import math
import numbers
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import gymnasium as gym
import numpy as np

from kitae.logger import check_backends


@dataclass
class AlgoParams:
    """Base class for algorithm parameters; inheriting from it is optional.

    A params dataclass may define ``validate(self, config)`` to check itself against the whole
    config; :func:`validate_config` calls it.
    """


@dataclass
class EncoderParams:
    """The observation-encoder field shared by the built-in agents' params (a mixin).

    Every built-in train-state factory resolves it with
    :func:`kitae.modules.encoders.network_encoder` against ``env_cfg.observation_space``.
    The field is keyword-only: params classes keep their positional fields.

    Attributes:
        encoder: ``"auto"`` (chosen from the observation space: the Nature CNN for 84x84 frame
            stacks, the MinAtar CNN for 10x10xC grids, one encoder per key of a Dict space,
            ``"flatten"`` otherwise), ``"flatten"``, ``"nature_cnn"``, ``"minatar_cnn"`` or
            ``"impala"`` (see :func:`kitae.modules.encoders.encoder_spec`).
    """

    encoder: str = field(default="auto", kw_only=True)


@dataclass
class UpdateConfig:
    """How the agent's networks are updated.

    The training loops honour ``max_buffer_size``, ``batch_size`` and ``n_epochs`` themselves;
    the other fields are the agent's factories' to honour, while the agent is built:
    ``learning_rate``, ``learning_rate_annealing`` and ``max_grad_norm`` by the optimizer of
    ``train_state_factory`` (:func:`kitae.modules.optimizer.make_optimizer` reads all three),
    ``shared_encoder`` by agents with policy and value heads. Building an agent warns about the
    fields set away from their defaults that it never read (:func:`warn_unread_update_fields`).

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
        frame_stack_replay: off-policy: store frame-stacked observations one frame per step
            (:mod:`kitae.frame_replay`): ``True``, ``False``, or ``"auto"`` when the observation
            space looks like a stack of images (see
            :func:`kitae.frame_replay.frame_stack_from_config`).
        frame_stack_axis: the axis of one observation that stacks its frames, newest last (0 for
            gymnasium's ``FrameStackObservation``).
    """

    learning_rate: float = 3e-4
    learning_rate_annealing: bool = False
    max_grad_norm: float | None = None
    max_buffer_size: int = 100_000
    batch_size: int = 64
    n_epochs: int = 1
    shared_encoder: bool = False
    frame_stack_replay: bool | str = "auto"
    frame_stack_axis: int = 0


@dataclass
class TrainConfig:
    """The training loop.

    Attributes:
        n_env_steps: environment transitions to collect (summed over envs).
        save_frequency: write a checkpoint into the run directory each time the transition
            counter reaches a multiple of this (checked after every vector step of the gymnasium
            loop, after every chunk of the compiled loop), and at the end of ``train``; ``-1``
            disables. Needs the agent's ``run_dir``. See :mod:`kitae.checkpoint`.
        progress_bar: show a progress bar with steps/s and the recent episode return.
        log_frequency: transitions between two log records (console/CSV) of losses.
        save_buffer: checkpoints include the replay buffer (needed to resume exactly).
        keep_checkpoints: keep only this many most recent checkpoints; ``None`` keeps all.
        loggers: where log rows go, names from :data:`kitae.logger.LOGGER_BACKENDS`
            (``"jsonl"``, ``"csv"``, ``"console"``, ``"tensorboard"``, ``"wandb"``); file
            backends write into the run directory only.
        eval_frequency: every this many transitions, evaluate the greedy policy and log
            ``eval_return_mean`` / ``eval_return_std`` to the ``eval`` stream; ``-1`` disables.
            Gymnasium loop: on a separate env built from ``env_cfg.task_name``; compiled loop: on
            the same JAX env, checked after each chunk. Training is unchanged.
        eval_episodes: episodes per periodic evaluation.
        actor_learner: gymnasium loop: step the env in an actor thread while the calling thread
            stores the transitions and runs the updates, so that env steps and updates overlap
            (see :mod:`kitae.actor_learner`). Same factories, checkpoints, logs and evaluations
            as the sequential loop; not for JAX envs (the compiled path) nor for agents with an
            acting state (``init_actor_state``).
        max_staleness: with ``actor_learner``, the bound ``K`` on how old the acting parameters
            may be, in update calls: every transition is acted with the parameters of an update
            count at most ``K`` below the learner's when it stores the transition. Off-policy
            (DQN), the actor runs at most ``K`` update periods (``skip_steps`` transitions each)
            ahead; on-policy (PPO), a rollout is collected with parameters up to ``K`` iterations
            old, and its stored behaviour log-probabilities keep the probability ratio right.
            ``0`` reproduces the sequential loop exactly (no overlap).
        actor_queue_steps: with ``actor_learner``, vector steps the actor may have sent ahead of
            the learner (bounds the memory of the queue; the actor needs about one update
            period of them to overlap an update).
        non_finite: gymnasium loop: what a NaN or infinite observation or reward (a ``None``
            reward reads as NaN) does: ``"raise"`` stops with an error naming the env, the env
            step and the quantity; ``"skip"`` drops the vector step that holds it (not stored
            nor counted; the agent's unfinished trajectories end there). See
            :mod:`kitae.guards`.
    """

    n_env_steps: int = 100_000
    save_frequency: int = -1
    progress_bar: bool = True
    log_frequency: int = 10_000
    save_buffer: bool = True
    keep_checkpoints: int | None = None
    loggers: tuple[str, ...] = ("jsonl",)
    eval_frequency: int = -1
    eval_episodes: int = 10
    actor_learner: bool = False
    max_staleness: int = 1
    actor_queue_steps: int = 1024
    non_finite: str = "raise"


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


LOOP_UPDATE_FIELDS = ("max_buffer_size", "batch_size", "n_epochs")
"""The :class:`UpdateConfig` fields that the agents' training loops honour themselves."""


def _recording_copy(update_cfg: Any, reads: set[str]) -> Any:
    """A shallow copy of the dataclass ``update_cfg`` that adds the name of every field read
    through it to ``reads``; equal to the original and an instance of its class."""
    cls = type(update_cfg)
    ordered = tuple(f.name for f in dataclasses.fields(update_cfg))
    names = frozenset(ordered)

    def __getattribute__(self: Any, name: str) -> Any:
        if name in names:
            reads.add(name)
        return cls.__getattribute__(self, name)

    def __eq__(self: Any, other: Any) -> Any:  # equal to the original class's instances too
        if type(other) not in (cls, recorder):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in ordered)

    recorder = type(
        cls.__name__,
        (cls,),
        {
            "__getattribute__": __getattribute__,
            "__eq__": __eq__,
            "__hash__": cls.__hash__,
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )
    view = copy.copy(update_cfg)
    object.__setattr__(view, "__class__", recorder)
    return view


@contextlib.contextmanager
def recording_update_reads(config: AlgoConfig) -> Iterator[set[str]]:
    """Records which ``config.update_cfg`` fields are read while the block runs.

    Inside the block ``config.update_cfg`` is a recording copy of itself (same class, equal
    values); the original object is put back on exit, also when the block raises. Configs whose
    ``update_cfg`` is not a dataclass are left alone and record nothing.

    Yields:
        The set of field names read so far (filled while the block runs).
    """
    reads: set[str] = set()
    original = config.update_cfg
    if not dataclasses.is_dataclass(original) or isinstance(original, type):
        yield reads
        return
    try:
        config.update_cfg = _recording_copy(original, reads)
    except TypeError:  # a class layout that cannot be recorded (e.g. an extension type)
        yield reads
        return
    try:
        yield reads
    finally:
        config.update_cfg = original


def unread_update_fields(update_cfg: Any, reads: set[str] | frozenset[str]) -> list[str]:
    """The fields of the dataclass ``update_cfg`` set away from their defaults and absent from
    ``reads``, in declaration order (fields without a default count as set)."""
    unread = []
    for f in dataclasses.fields(update_cfg):
        if f.name in reads:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            unread.append(f.name)
            continue
        value = getattr(update_cfg, f.name)
        try:
            same = bool(value == default)
        except (TypeError, ValueError):  # e.g. arrays
            same = False
        if not same:
            unread.append(f.name)
    return unread


def _outside_kitae_stacklevel() -> int:
    """The ``stacklevel`` that points a warning issued by this function's caller at the first
    frame outside the kitae package (the user's code that built the agent)."""
    package = Path(__file__).resolve().parent
    level, frame = 1, sys._getframe(1)
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(package):
        level, frame = level + 1, frame.f_back
    return level


def warn_unread_update_fields(agent_name: str, update_cfg: Any, reads: set[str]) -> None:
    """Warns (``UserWarning``) about the ``update_cfg`` fields set away from their defaults that
    neither the agent ``agent_name`` nor its loop read (:data:`LOOP_UPDATE_FIELDS`): setting them
    has no effect."""
    if not dataclasses.is_dataclass(update_cfg):
        return
    unread = unread_update_fields(update_cfg, set(reads) | set(LOOP_UPDATE_FIELDS))
    if not unread:
        return
    settings = ", ".join(f"{name}={getattr(update_cfg, name)!r}" for name in unread)
    warnings.warn(
        f"{agent_name} ignores update_cfg fields set away from their defaults: {settings}. Its "
        "factories never read them while the agent was built, so they have no effect: honour "
        "them (kitae.modules.optimizer.make_optimizer reads learning_rate, "
        "learning_rate_annealing and max_grad_norm) or leave them at their defaults.",
        UserWarning,
        stacklevel=_outside_kitae_stacklevel(),
    )


def _fail(name: str, value: Any, fix: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: {fix}")


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``value`` is an integer ``>= minimum``."""
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


SEED_LIMIT = 2**62
"""Seeds are integers in ``[0, SEED_LIMIT)``: JAX keys take 64-bit signed seeds, and the seeds
derived from a run's (``seed + 10_000`` for evaluation, ``seed + k`` for a sweep's seeds) must fit
too."""


def check_seed(name: str, value: Any) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``value`` is an integer in
    ``[0, 2**62)`` (:data:`SEED_LIMIT`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, value, "it must be an integer in [0, 2**62).")
    if not 0 <= value < SEED_LIMIT:
        _fail(name, value, "it must be in [0, 2**62) (JAX keys take 64-bit seeds).")


INFINITE_FLOAT_FIELDS: dict[str, str] = {
    "algo_params.clip_observations": "+inf leaves normalised observations unclipped",
    "algo_params.clip_rewards": "+inf leaves normalised rewards unclipped",
}
"""The float fields that may be ``+inf`` (field path -> what it means); every other float field
of a config must be finite (:func:`check_finite_floats`). ``nan`` is refused everywhere."""


def check_finite_floats(section: Any, prefix: str) -> None:
    """Raises ``ValueError`` naming the field unless every float field of the dataclass
    ``section`` (and of the dataclasses it holds) is a finite number; the fields of
    :data:`INFINITE_FLOAT_FIELDS` may also be ``+inf``.

    Args:
        section: a config dataclass (``update_cfg``, ``algo_params``...).
        prefix: its path in the config, e.g. ``"update_cfg"``.
    """
    if not dataclasses.is_dataclass(section) or isinstance(section, type):
        return
    for f in dataclasses.fields(section):
        value, name = getattr(section, f.name), f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_finite_floats(value, name)
            continue
        if isinstance(value, (bool, numbers.Integral)) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(value) or (name in INFINITE_FLOAT_FIELDS and value == math.inf):
            continue
        allowed = ""
        if name in INFINITE_FLOAT_FIELDS:
            allowed = f" or +inf ({INFINITE_FLOAT_FIELDS[name]})"
        _fail(name, value, f"it must be a finite number{allowed}.")


def _type_name(hint: Any) -> str:
    """How an annotation reads in an error message (``int``, ``tuple[int, ...]``...)."""
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint``; annotations it cannot judge (``Any``,
    callables, type variables...) accept everything."""
    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if hint is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if not args:
            return True
        return len(args) == len(value) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is Sequence:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            return False
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and origin is None:
        return isinstance(value, hint)
    return True


def check_field_types(section: Any, prefix: str) -> None:
    """Raises ``ValueError`` naming the first field of the dataclass ``section`` whose value does
    not fit its annotation (a str where an int is expected, a list for a tuple, ``None`` for a
    required number...) or that has an attribute that is not a field (a misspelt name); nested
    dataclasses are checked too. A class whose annotations cannot be resolved is left alone.

    Args:
        section: a config dataclass.
        prefix: its path in the config, e.g. ``"algo_params"``.
    """
    if not dataclasses.is_dataclass(section) or isinstance(section, type):
        return
    try:
        hints = typing.get_type_hints(type(section))
    except (NameError, TypeError):  # annotations naming what only a type checker imports
        return
    names = [f.name for f in dataclasses.fields(section)]
    unknown = sorted(set(getattr(section, "__dict__", {})) - set(names))
    if unknown:
        raise ValueError(
            f"{prefix}.{unknown[0]} is not a field of {type(section).__name__} (a misspelt "
            f"name set as an attribute has no effect): its fields are {', '.join(names)}."
        )
    for f in dataclasses.fields(section):
        value, name = getattr(section, f.name), f"{prefix}.{f.name}"
        hint = hints.get(f.name, Any)
        if not _matches(value, hint):
            example = " (a tuple, e.g. (64, 64))" if typing.get_origin(hint) is tuple else ""
            _fail(
                name,
                value,
                f"it must be of type {_type_name(hint)}{example}, got {type(value).__name__}.",
            )
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_field_types(value, name)


def check_layer_sizes(params: Any) -> None:
    """Raises ``ValueError`` unless every ``hidden_sizes`` / ``*_hidden_sizes`` field of
    ``params`` is a sequence of integers >= 1 (an empty one is allowed: the heads then read the
    encoder's features directly)."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return
    for f in dataclasses.fields(params):
        if f.name != "hidden_sizes" and not f.name.endswith("_hidden_sizes"):
            continue
        sizes = getattr(params, f.name)
        fix = "it must be a tuple of layer widths >= 1, e.g. (64, 64)."
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (tuple, list)):
            _fail(f"algo_params.{f.name}", sizes, fix)
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                _fail(f"algo_params.{f.name}", sizes, fix)


_SECTION_TYPES = {
    "update_cfg": ("UpdateConfig", "UpdateConfig(learning_rate=1e-3, ...)"),
    "train_cfg": ("TrainConfig", "TrainConfig(n_env_steps=50_000, ...)"),
    "env_cfg": ("EnvConfig", "EnvConfig.from_env(env)"),
}


def check_sections(config: AlgoConfig) -> None:
    """Raises ``TypeError`` naming the section of ``config`` that is not a dataclass instance
    (e.g. a dict given for ``update_cfg``), with the class to build it with."""
    for name, (cls_name, example) in _SECTION_TYPES.items():
        value = getattr(config, name)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            raise TypeError(
                f"{name} must be a kitae.config.{cls_name} instance, got "
                f"{type(value).__name__}: build it with {example}."
            )
    params = config.algo_params
    if isinstance(params, (dict, list, tuple, str, numbers.Number, type)) or params is None:
        raise TypeError(
            f"algo_params must be the agent's params dataclass instance (e.g. "
            f"kitae.algos.DQNParams(gamma=0.99)), got {type(params).__name__}."
        )


def check_int_param(params: Any, name: str, minimum: int) -> None:
    """For ``validate`` methods: raises ``ValueError`` unless ``params.<name>`` is an integer
    ``>= minimum``."""
    check_int(f"algo_params.{name}", getattr(params, name), minimum)


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


NON_FINITE_MODES = ("raise", "skip")
"""Values of ``train_cfg.non_finite``."""


def check_non_finite_mode(value: Any) -> None:
    """Raises ``ValueError`` naming ``train_cfg.non_finite`` unless it is a known mode."""
    if not isinstance(value, str) or value not in NON_FINITE_MODES:
        raise ValueError(
            f"train_cfg.non_finite={value!r} is invalid: use 'raise' (stop at a non-finite "
            "observation or reward) or 'skip' (drop the vector steps holding one)."
        )


def validate_config(config: AlgoConfig) -> None:
    """Checks the generic parts of a config; raises ``ValueError`` naming the bad field.

    Checks that the sections are dataclasses, the seed's range, every field's type against its
    annotation (:func:`check_field_types`), that every float field is finite
    (:func:`check_finite_floats`) and the layer widths (:func:`check_layer_sizes`); then the
    sizes and rates of ``update_cfg`` / ``train_cfg`` / ``env_cfg``, the usual fields of
    ``algo_params`` when present (``gamma``, ``skip_steps``, ``start_step``, ``exploration``,
    ``encoder``'s name, and any field ending in ``_lambda`` or ``coef``), MultiDiscrete actions
    and action masks (:func:`kitae.masking.validate_action_mask`), then calls
    ``algo_params.validate(config)`` when the params define it.

    Raises:
        TypeError: if ``config`` is not an :class:`AlgoConfig` or one of its sections is not a
            dataclass instance (e.g. a dict).
        ValueError: naming the first invalid field and what would fix it.
    """
    if not isinstance(config, AlgoConfig):
        raise TypeError(f"config must be a kitae.config.AlgoConfig, got {type(config).__name__}.")
    check_seed("seed", config.seed)
    check_sections(config)
    for section in ("update_cfg", "train_cfg", "env_cfg", "algo_params"):
        check_field_types(getattr(config, section), section)
        check_finite_floats(getattr(config, section), section)
    check_layer_sizes(config.algo_params)

    u = config.update_cfg
    _check_positive("update_cfg.learning_rate", u.learning_rate)
    if u.max_grad_norm is not None:
        _check_positive("update_cfg.max_grad_norm (use None to disable clipping)", u.max_grad_norm)
    check_int("update_cfg.max_buffer_size", u.max_buffer_size, 1)
    check_int("update_cfg.batch_size", u.batch_size, 1)
    check_int("update_cfg.n_epochs", u.n_epochs, 1)

    t = config.train_cfg
    check_int("train_cfg.n_env_steps", t.n_env_steps, 1)
    if t.save_frequency != -1:
        check_int("train_cfg.save_frequency (use -1 to disable)", t.save_frequency, 1)
    check_int("train_cfg.log_frequency", t.log_frequency, 1)
    if not isinstance(t.save_buffer, bool):
        _fail("train_cfg.save_buffer", t.save_buffer, "it must be True or False.")
    if t.keep_checkpoints is not None:
        check_int("train_cfg.keep_checkpoints (use None to keep all)", t.keep_checkpoints, 1)
    check_backends(t.loggers, "train_cfg.loggers")
    if t.eval_frequency != -1:
        check_int("train_cfg.eval_frequency (use -1 to disable)", t.eval_frequency, 1)
    check_int("train_cfg.eval_episodes", t.eval_episodes, 1)
    if not isinstance(t.actor_learner, bool):
        _fail("train_cfg.actor_learner", t.actor_learner, "it must be True or False.")
    check_int("train_cfg.max_staleness", t.max_staleness, 0)
    check_int("train_cfg.actor_queue_steps", t.actor_queue_steps, 1)
    check_non_finite_mode(t.non_finite)

    e = config.env_cfg
    check_int("env_cfg.n_envs", e.n_envs, 1)
    check_int("env_cfg.n_agents", e.n_agents, 1)
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
        check_int("algo_params.skip_steps", values["skip_steps"], 1)
    if "encoder" in values:
        from kitae.modules.encoders import ENCODER_NAMES

        if values["encoder"] not in ENCODER_NAMES:
            _fail("algo_params.encoder", values["encoder"], f"use one of {list(ENCODER_NAMES)}.")
    if "start_step" in values:
        check_int(
            "algo_params.start_step (use -1 to start as soon as possible)", values["start_step"], -1
        )
    for name, value in values.items():
        if name.endswith("_lambda") or name == "gae_lambda":
            _check_unit_interval(f"algo_params.{name}", value)
        elif name.endswith("_coef") and (not isinstance(value, numbers.Real) or value < 0):
            _fail(f"algo_params.{name}", value, "it must be a number >= 0.")
    from kitae.masking import validate_action_mask

    validate_action_mask(config)
    if hasattr(p, "validate"):
        p.validate(config)


# ---- a faithful JSON form of configs (checkpoints) -----------------------------------------------

_TAG = "__kitae__"
"""Key marking the JSON objects that encode something other than a plain dict."""


def class_path(cls: type) -> str:
    """``"module:qualname"`` of a class, as configs and checkpoints name classes."""
    return f"{cls.__module__}:{cls.__qualname__}"


_REGISTERED: dict[str, type] = {}
"""Classes registered with :func:`register_config_classes`, by :func:`class_path`."""

_BUILTIN: dict[str, type] = {}
"""kitae's own agents, their params and the config dataclasses (filled on first use)."""

_UNAVAILABLE: dict[str, str] = {}
"""Built-in agents that could not be loaded (a missing optional dependency): name -> why."""


def _related_classes(cls: type) -> list[type]:
    """``cls``, its ``params_type`` (for an agent class) and the dataclasses its fields are
    annotated with, recursively."""
    found: list[type] = []
    pending = [cls]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        params_type = getattr(current, "params_type", None)
        if isinstance(params_type, type):
            pending.append(params_type)
        if dataclasses.is_dataclass(current):
            try:
                hints = typing.get_type_hints(current)
            except Exception:  # an annotation that names what its module cannot resolve
                hints = {}
            for hint in hints.values():
                pending.extend(
                    h
                    for h in (hint, *typing.get_args(hint))
                    if isinstance(h, type) and dataclasses.is_dataclass(h)
                )
    return found


def register_config_classes(*classes: type) -> None:
    """Lets configs and checkpoints name ``classes`` (see :func:`import_class`): each class,
    an agent class's ``params_type`` and the dataclasses their fields are annotated with.

    Raises:
        TypeError: if one of ``classes`` is not a class.
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"register_config_classes takes classes, not {cls!r}.")
        for related in _related_classes(cls):
            _REGISTERED[class_path(related)] = related


_BUILTIN_SOURCES: list[Callable[[], Mapping[str, type | str]]] = []
"""Functions listing kitae's own agent classes (see :func:`register_builtin_classes`)."""

AGENTS_PACKAGE = "kitae.algos"
"""The package that registers kitae's own agents when it is imported."""


def register_builtin_classes(source: Callable[[], Mapping[str, type | str]]) -> None:
    """Adds ``source`` to kitae's own classes that configs and checkpoints may name.

    :mod:`kitae.algos` calls it when it is imported, so that this module never imports the
    agents above it. ``source()`` maps each class name to the class, or to the reason it cannot
    be loaded (an optional dependency missing), which :func:`import_class` reports.
    """
    _BUILTIN_SOURCES.append(source)
    _BUILTIN.clear()


def _builtin_classes() -> dict[str, type]:
    """kitae's own classes that configs name: the config dataclasses of this module and the
    agents :mod:`kitae.algos` registers, with their params (AlphaZero's when ``mctx`` is
    installed). The package is imported if it was not yet: a fixed module of kitae's own, never
    one named by a file."""
    if AGENTS_PACKAGE not in sys.modules:
        importlib.import_module(AGENTS_PACKAGE)
    if not _BUILTIN:
        classes = [
            obj
            for obj in vars(sys.modules[__name__]).values()
            if isinstance(obj, type)
            and dataclasses.is_dataclass(obj)
            and obj.__module__ == __name__
        ]
        for source in _BUILTIN_SOURCES:
            for name, cls in source().items():
                if isinstance(cls, str):
                    _UNAVAILABLE[name] = cls
                else:
                    classes.append(cls)
        for cls in classes:
            for related in _related_classes(cls):
                _BUILTIN[class_path(related)] = related
    return _BUILTIN


def builtin_agent_classes() -> list[type]:
    """kitae's own agent classes that can be loaded (registered by :mod:`kitae.algos`)."""
    return [
        cls
        for cls in dict.fromkeys(_builtin_classes().values())
        if isinstance(cls, type) and hasattr(cls, "params_type")
    ]


def import_class(path: str, classes: Sequence[type] = ()) -> type:
    """The class named ``"module:qualname"`` (see :func:`class_path`), looked up among known
    classes only: ``classes`` (and their related classes, see :func:`register_config_classes`),
    the registered ones and kitae's own agents, params and config dataclasses. The module named
    is never imported, so a config or checkpoint file cannot choose code to run.

    Args:
        path: the ``"module:qualname"`` name.
        classes: further classes to accept (e.g. a custom agent class).

    Raises:
        ValueError: if ``path`` names no known class.
        TypeError: if ``classes`` holds something other than classes.
    """
    if not isinstance(path, str):
        raise ValueError(f"a class name must be a 'module:qualname' string, not {path!r}.")
    if not all(isinstance(cls, type) for cls in classes):
        raise TypeError(f"classes must be classes, not {list(classes)!r}.")
    given = {class_path(c): c for cls in classes for c in _related_classes(cls)}
    for table in (given, _REGISTERED):
        if path in table:
            return table[path]
    builtin = _builtin_classes()
    if path in builtin:
        return builtin[path]
    qualname = path.partition(":")[2]
    if path.startswith("kitae.algos.") and qualname in _UNAVAILABLE:
        raise ValueError(f"{path!r} cannot be loaded: {_UNAVAILABLE[qualname]}")
    raise ValueError(
        f"{path!r} is not a class kitae knows: configs and checkpoints may name kitae's own "
        "agents and config dataclasses, classes given to restore (e.g. MyAgent.resume(run), "
        "read_config(path, classes=[MyParams])) and classes registered with "
        "kitae.checkpoint.register_agent_class; modules named in a file are never imported."
    )


def _array_to_json(x: Any) -> dict[str, Any]:
    x = np.asarray(x)
    out: dict[str, Any] = {_TAG: "ndarray", "dtype": x.dtype.name, "shape": list(x.shape)}
    flat = x.reshape(-1)
    if flat.size and bool(np.all(flat == flat[0])):
        out["fill"] = flat[0].item()
    else:
        out["data"] = flat.tolist()
    return out


MAX_CONFIG_ARRAY_SIZE = 2**27
"""Most elements an array of a config's JSON form may declare (a space's bounds are arrays):
a larger shape read from a file is refused before anything is allocated."""

_PLAIN_DTYPES = frozenset(
    np.dtype(t).name
    for t in (bool, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)
    + (np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)
)
"""The dtypes arrays and scalars of a config or checkpoint file may declare."""


def _json_dtype(data: dict[str, Any], path: str) -> np.dtype:
    """The dtype a JSON object declares, refused unless it is a plain numeric or bool dtype."""
    name = data.get("dtype")
    if name not in _PLAIN_DTYPES:
        raise ValueError(
            f"config field {path or 'config'} declares the dtype {name!r}: a config file may "
            f"only hold {', '.join(sorted(_PLAIN_DTYPES))}."
        )
    return np.dtype(name)


def _json_shape(data: dict[str, Any], path: str) -> tuple[int, ...]:
    """The shape a JSON object declares, checked to be non-negative integers of at most
    :data:`MAX_CONFIG_ARRAY_SIZE` elements."""
    shape = data.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(
            f"config field {path or 'config'} declares the shape {shape!r}: expected a list of "
            "non-negative integers."
        )
    if int(np.prod(shape, dtype=object)) > MAX_CONFIG_ARRAY_SIZE:
        raise ValueError(
            f"config field {path or 'config'} declares the shape {tuple(shape)}, more than the "
            f"{MAX_CONFIG_ARRAY_SIZE} elements a config array may hold: the file is damaged or "
            "crafted."
        )
    return tuple(shape)


def _array_from_json(data: dict[str, Any], path: str = "") -> np.ndarray:
    dtype, shape = _json_dtype(data, path), _json_shape(data, path)
    if "fill" in data:
        return np.full(shape, data["fill"], dtype)
    values = data.get("data")
    if not isinstance(values, list) or len(values) != int(np.prod(shape, dtype=object)):
        raise ValueError(
            f"config field {path or 'config'} declares the shape {shape} but does not hold "
            "that many values: the file is damaged or crafted."
        )
    return np.asarray(values, dtype).reshape(shape)


def _space_to_json(space: gym.Space) -> dict[str, Any] | None:
    spaces = gym.spaces
    if isinstance(space, spaces.Box):
        return {
            _TAG: "Box",
            "low": _array_to_json(space.low),
            "high": _array_to_json(space.high),
            "shape": list(space.shape),
            "dtype": space.dtype.name,
        }
    if isinstance(space, spaces.Discrete):
        return {
            _TAG: "Discrete",
            "n": int(space.n),
            "start": int(space.start),
            "dtype": space.dtype.name,
        }
    if isinstance(space, spaces.MultiDiscrete):
        return {
            _TAG: "MultiDiscrete",
            "nvec": _array_to_json(space.nvec),
            "start": _array_to_json(space.start),
            "dtype": space.dtype.name,
        }
    if isinstance(space, spaces.MultiBinary):
        return {_TAG: "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Tuple):
        return {_TAG: "Tuple", "spaces": [_to_json(s) for s in space.spaces]}
    if isinstance(space, spaces.Dict):
        return {_TAG: "Dict", "spaces": [[k, _to_json(s)] for k, s in space.spaces.items()]}
    return None


def _space_from_json(
    kind: str, data: dict[str, Any], path: str, classes: Sequence[type] = ()
) -> gym.Space:
    spaces = gym.spaces
    if kind == "Box":
        return spaces.Box(
            _array_from_json(data["low"], f"{path}.low"),
            _array_from_json(data["high"], f"{path}.high"),
            _json_shape(data, path),
            _json_dtype(data, path),
        )
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"], dtype=_json_dtype(data, path))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(
            _array_from_json(data["nvec"], f"{path}.nvec"),
            dtype=_json_dtype(data, path),
            start=_array_from_json(data["start"], f"{path}.start"),
        )
    if kind == "MultiBinary":
        _json_shape({"shape": np.atleast_1d(data["n"]).tolist()}, path)
        return spaces.MultiBinary(data["n"])
    if kind == "Tuple":
        return spaces.Tuple(
            [_from_json(s, f"{path}[{i}]", classes) for i, s in enumerate(data["spaces"])]
        )
    return spaces.Dict({k: _from_json(s, f"{path}.{k}", classes) for k, s in data["spaces"]})


def _to_json(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)) and not isinstance(obj, np.generic):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return {_TAG: "dataclass", "class": class_path(type(obj)), "fields": fields}
    if isinstance(obj, gym.Space):
        encoded = _space_to_json(obj)
        if encoded is not None:
            return encoded
    elif type(obj) is tuple:
        return {_TAG: "tuple", "items": [_to_json(x) for x in obj]}
    elif type(obj) is list:
        return [_to_json(x) for x in obj]
    elif type(obj) is dict:
        if all(isinstance(k, str) for k in obj) and _TAG not in obj:
            return {k: _to_json(v) for k, v in obj.items()}
        return {_TAG: "dict", "items": [[_to_json(k), _to_json(v)] for k, v in obj.items()]}
    elif isinstance(obj, np.generic):
        return {_TAG: "scalar", "dtype": obj.dtype.name, "value": obj.item()}
    elif isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and hasattr(obj, "dtype")):
        return _array_to_json(obj)
    return {_TAG: "repr", "class": class_path(type(obj)), "repr": repr(obj)}


def _from_json(data: Any, path: str, classes: Sequence[type] = ()) -> Any:
    if isinstance(data, list):
        return [_from_json(x, f"{path}[{i}]", classes) for i, x in enumerate(data)]
    if not isinstance(data, dict):
        return data
    kind = data.get(_TAG)
    if kind is None:
        return {k: _from_json(v, f"{path}.{k}" if path else k, classes) for k, v in data.items()}
    if kind == "dataclass":
        cls = import_class(data["class"], classes)
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{path or 'config'}: {data['class']} is not a dataclass.")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data["fields"]) - names)
        if unknown:
            raise ValueError(
                f"{path or 'config'}: the saved {data['class']} has fields {unknown} that the "
                "class no longer defines."
            )
        return cls(
            **{
                k: _from_json(v, f"{path}.{k}" if path else k, classes)
                for k, v in data["fields"].items()
            }
        )
    if kind == "tuple":
        return tuple(_from_json(x, f"{path}[{i}]", classes) for i, x in enumerate(data["items"]))
    if kind == "dict":
        return {
            _from_json(k, path, classes): _from_json(v, f"{path}[{k!r}]", classes)
            for k, v in data["items"]
        }
    if kind == "scalar":
        return _json_dtype(data, path).type(data["value"])
    if kind == "ndarray":
        return _array_from_json(data, path)
    if kind in ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Tuple", "Dict"):
        return _space_from_json(kind, data, path, classes)
    if kind == "repr":
        raise ValueError(
            f"config field {path} was saved as the text {data['repr']!r} (a {data['class']}, "
            "which has no JSON form): rebuild the agent with its config and call "
            "agent.restore(checkpoint) instead."
        )
    raise ValueError(f"config field {path}: unknown encoding {kind!r}.")


def config_to_json(config: AlgoConfig) -> dict[str, Any]:
    """A JSON-compatible form of ``config`` that :func:`config_from_json` loads back equal.

    Dataclasses keep their class (``"module:qualname"``), tuples stay tuples, numpy values keep
    their dtype, and gymnasium ``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``,
    ``Tuple`` and ``Dict`` spaces keep their bounds, shape and dtype. Any other value is stored as
    its ``repr`` (readable, but not loadable).

    Args:
        config: the config.

    Returns:
        Nested dicts, lists, strings, numbers, booleans and ``None``.
    """
    return _to_json(config)


def config_from_json(data: dict[str, Any], classes: Sequence[type] = ()) -> AlgoConfig:
    """Rebuilds the config written by :func:`config_to_json`; the classes it names are looked
    up with :func:`import_class` (never imported by name).

    Args:
        data: the JSON form.
        classes: classes it may name beside kitae's own and the registered ones (e.g. a custom
            agent class: its ``params_type`` is accepted with it).

    Returns:
        The config.

    Raises:
        ValueError: if a class cannot be imported, a field no longer exists, or a value was
            stored as text only.
    """
    config = _from_json(data, "", classes)
    if not isinstance(config, AlgoConfig):
        raise ValueError(f"the saved config is a {type(config).__name__}, not an AlgoConfig.")
    return config


def _render(data: Any, path: str) -> str:
    try:
        text = repr(_from_json(data, path))
    except (ValueError, TypeError, KeyError):
        text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."


def _differences(a: Any, b: Any, path: str) -> list[tuple[str, str, str]]:
    name = path or "config"
    if isinstance(a, dict) and isinstance(b, dict):
        kind_a, kind_b = a.get(_TAG), b.get(_TAG)
        if kind_a == kind_b == "dataclass":
            if a["class"] != b["class"]:
                return [(name, a["class"], b["class"])]
            fields_a, fields_b = a["fields"], b["fields"]
            out = []
            for key in list(fields_a) + [k for k in fields_b if k not in fields_a]:
                sub = f"{path}.{key}" if path else key
                if key not in fields_a or key not in fields_b:
                    out.append(
                        (sub, _render(fields_a.get(key), sub), _render(fields_b.get(key), sub))
                    )
                else:
                    out.extend(_differences(fields_a[key], fields_b[key], sub))
            return out
        if kind_a == kind_b == "repr":
            return [] if a["class"] == b["class"] else [(name, a["class"], b["class"])]
        if kind_a is None and kind_b is None:
            out = []
            for key in list(a) + [k for k in b if k not in a]:
                sub = f"{path}.{key}" if path else key
                if key not in a or key not in b:
                    out.append((sub, _render(a.get(key), sub), _render(b.get(key), sub)))
                else:
                    out.extend(_differences(a[key], b[key], sub))
            return out
    if a == b:
        return []
    return [(name, _render(a, name), _render(b, name))]


def config_differences(
    saved: dict[str, Any], current: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """Where two configs in their JSON form (:func:`config_to_json`) differ.

    Args:
        saved: one config's JSON form (e.g. a checkpoint's).
        current: the other's.

    Returns:
        ``(field, saved value, current value)`` per differing field, e.g.
        ``("algo_params.hidden_sizes", "(64, 64)", "(32, 32)")``; values are short reprs.
    """
    return _differences(saved, current, "")
