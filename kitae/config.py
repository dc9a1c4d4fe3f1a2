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
import numbers
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def validate_config(config: AlgoConfig) -> None:
    """Checks the generic parts of a config; raises ``ValueError`` naming the bad field.

    Checks sizes and rates of ``update_cfg`` / ``train_cfg`` / ``env_cfg``, the usual fields of
    ``algo_params`` when present (``gamma``, ``skip_steps``, ``start_step``, ``exploration``,
    ``encoder``'s name, and any field ending in ``_lambda`` or ``coef``), MultiDiscrete actions
    and action masks (:func:`kitae.masking.validate_action_mask`), then calls
    ``algo_params.validate(config)`` when the params define it.
    """
    if not isinstance(config, AlgoConfig):
        raise TypeError(f"config must be a kitae.config.AlgoConfig, got {type(config).__name__}.")
    check_int("seed", config.seed, 0)

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
    from kitae.guards import check_non_finite_mode

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


def import_class(path: str) -> type:
    """The class named ``"module:qualname"`` (see :func:`class_path`).

    Raises:
        ValueError: if the module or the class cannot be found.
    """
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import the class {path!r}: {error}") from error
    if not isinstance(obj, type):
        raise ValueError(f"{path!r} names a {type(obj).__name__}, not a class.")
    return obj


def _array_to_json(x: Any) -> dict[str, Any]:
    x = np.asarray(x)
    out: dict[str, Any] = {_TAG: "ndarray", "dtype": x.dtype.name, "shape": list(x.shape)}
    flat = x.reshape(-1)
    if flat.size and bool(np.all(flat == flat[0])):
        out["fill"] = flat[0].item()
    else:
        out["data"] = flat.tolist()
    return out


def _array_from_json(data: dict[str, Any]) -> np.ndarray:
    dtype, shape = np.dtype(data["dtype"]), tuple(data["shape"])
    if "fill" in data:
        return np.full(shape, data["fill"], dtype)
    return np.asarray(data["data"], dtype).reshape(shape)


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


def _space_from_json(kind: str, data: dict[str, Any], path: str) -> gym.Space:
    spaces = gym.spaces
    if kind == "Box":
        return spaces.Box(
            _array_from_json(data["low"]),
            _array_from_json(data["high"]),
            tuple(data["shape"]),
            np.dtype(data["dtype"]),
        )
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"], dtype=np.dtype(data["dtype"]))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(
            _array_from_json(data["nvec"]),
            dtype=np.dtype(data["dtype"]),
            start=_array_from_json(data["start"]),
        )
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "Tuple":
        return spaces.Tuple([_from_json(s, f"{path}[{i}]") for i, s in enumerate(data["spaces"])])
    return spaces.Dict({k: _from_json(s, f"{path}.{k}") for k, s in data["spaces"]})


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


def _from_json(data: Any, path: str) -> Any:
    if isinstance(data, list):
        return [_from_json(x, f"{path}[{i}]") for i, x in enumerate(data)]
    if not isinstance(data, dict):
        return data
    kind = data.get(_TAG)
    if kind is None:
        return {k: _from_json(v, f"{path}.{k}" if path else k) for k, v in data.items()}
    if kind == "dataclass":
        cls = import_class(data["class"])
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
            **{k: _from_json(v, f"{path}.{k}" if path else k) for k, v in data["fields"].items()}
        )
    if kind == "tuple":
        return tuple(_from_json(x, f"{path}[{i}]") for i, x in enumerate(data["items"]))
    if kind == "dict":
        return {_from_json(k, path): _from_json(v, f"{path}[{k!r}]") for k, v in data["items"]}
    if kind == "scalar":
        return np.dtype(data["dtype"]).type(data["value"])
    if kind == "ndarray":
        return _array_from_json(data)
    if kind in ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Tuple", "Dict"):
        return _space_from_json(kind, data, path)
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


def config_from_json(data: dict[str, Any]) -> AlgoConfig:
    """Rebuilds the config written by :func:`config_to_json` (classes are imported by name).

    Args:
        data: the JSON form.

    Returns:
        The config.

    Raises:
        ValueError: if a class cannot be imported, a field no longer exists, or a value was
            stored as text only.
    """
    config = _from_json(data, "")
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
