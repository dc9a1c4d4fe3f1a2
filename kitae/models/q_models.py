"""Pre-built Q-learning models: :class:`DDQNModel` (double DQN) and :class:`IQNModel`.

Both are :class:`~kitae.models.agent_model.AgentModel` s around kitae's own agents
(:class:`~kitae.algos.dqn.DQN`, :class:`~kitae.algos.iqn.IQN`) built for the model's stacked
input: acting, targets, losses and target updates are the agents' factories, jitted once.
``take_action`` is epsilon-greedy on the current stacked state; ``train_step`` samples the
memory and takes masked gradient steps (samples that are not ``valid`` carry no weight).
Both accept Sorrel's flat constructor arguments beside kitae's params dataclasses, and save and
load their agent's state as safetensors.

The agent's observation space is the stack of frames laid out as images where the frames are
images (see :func:`stacked_observation_shape`), so its networks take their encoder through
:func:`~kitae.modules.encoders.network_encoder` like every agent: ``algo_params.encoder``
(``"auto"``: the MinAtar CNN for 10x10xC frames, the Nature CNN for 84x84 ones, ``flatten``
otherwise).

See "Human-level control through deep reinforcement learning", Mnih et al., 2015;
"Deep Reinforcement Learning with Double Q-learning", van Hasselt et al., 2016;
"Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al., 2018.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from kitae.algos.dqn import DQN, DQNParams, QLearningParams
from kitae.algos.iqn import IQN, IQNParams, sampled_q_values
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, check_int
from kitae.models.agent_model import AgentModel, check_one_step_uniform_replay
from kitae.models.base import resolve_alias
from kitae.models.memory import VALID_RULES
from kitae.modules.encoders import image_layout


@dataclass
class QModelParams:
    """Model settings of :class:`DDQNModel` and :class:`IQNModel` (the algorithm's own
    hyperparameters are in ``algo_params``: ``gamma``, ``tau``, ``target_update_period``,
    ``double_q``, ``hidden_sizes``...).

    Attributes:
        memory_size: frames held by the memory.
        n_frames: frames stacked into the network's input.
        batch_size: samples per gradient step.
        n_updates: gradient steps per ``train_step``.
        min_transitions: ``train_step`` waits until the memory can sample this many
            transitions; ``-1``: ``batch_size``.
        learning_rate: Adam step size.
        max_grad_norm: global-norm gradient clipping (``None``: none).
        epsilon: initial exploration rate (change it with ``set_epsilon``).
        seed: network initialisation, exploration, memory sampling and update keys.
        mask_partial_stacks: see :class:`~kitae.models.memory.FrameStackMemory`.
        valid_rule: the memory's ``valid`` mask, ``"transition"`` or ``"episode_boundary"``
            (see :meth:`~kitae.models.memory.FrameStackMemory.gather`).
    """

    memory_size: int = 1024
    n_frames: int = 1
    batch_size: int = 64
    n_updates: int = 1
    min_transitions: int = -1
    learning_rate: float = 1e-3
    max_grad_norm: float | None = 10.0
    epsilon: float = 0.9
    seed: int = 0
    mask_partial_stacks: bool = False
    valid_rule: str = "transition"

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid field."""
        check_int("params.n_frames", self.n_frames, 1)
        check_int("params.memory_size", self.memory_size, self.n_frames + 1)
        check_int("params.batch_size", self.batch_size, 1)
        check_int("params.n_updates", self.n_updates, 1)
        if self.min_transitions != -1:
            check_int("params.min_transitions", self.min_transitions, 1)
        check_int("params.seed", self.seed, 0)
        if not _positive(self.learning_rate):
            raise ValueError(
                f"params.learning_rate={self.learning_rate!r} is invalid: it must be > 0."
            )
        if self.max_grad_norm is not None and not _positive(self.max_grad_norm):
            raise ValueError(
                f"params.max_grad_norm={self.max_grad_norm!r} is invalid: it must be > 0 or None."
            )
        if not (_real(self.epsilon) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"params.epsilon={self.epsilon!r} is invalid: it must be in [0, 1].")
        if self.valid_rule not in VALID_RULES:
            raise ValueError(
                f"params.valid_rule={self.valid_rule!r} is invalid: use one of {VALID_RULES}."
            )


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _positive(x: object) -> bool:
    return _real(x) and x > 0  # type: ignore[operator]


def stacked_observation_shape(obs_shape: tuple[int, ...] | int, n_frames: int) -> tuple[int, ...]:
    """The shape of ``n_frames`` stacked frames of ``obs_shape`` as the model's agent sees them.

    The memory stacks frames oldest first, each flattened; this is the shape that reads them
    back as images where the frames are images (the layouts of
    :func:`~kitae.modules.encoders.image_layout`), frames stacked on the channel axis:
    ``obs_shape`` itself for one frame; ``(n, H, W)`` for ``(H, W)`` frames; ``(n * C, H, W)``
    for ``(C, H, W)`` frames; ``(n, H, W, C)`` for ``(H, W, C)`` frames; ``(n * S, H, W, C)``
    for ``(S, H, W, C)`` frames; ``(n * prod(obs_shape),)`` for other frames (vectors).

    Args:
        obs_shape: shape of one frame.
        n_frames: frames per stack.

    Returns:
        The shape of one stacked state (``n_frames * prod(obs_shape)`` values).
    """
    frame = (obs_shape,) if isinstance(obs_shape, int) else tuple(int(n) for n in obs_shape)
    if n_frames == 1:
        return frame
    layout = image_layout(frame)
    if layout in ("chw", "shwc"):
        return (n_frames * frame[0], *frame[1:])
    if layout in ("hw", "hwc"):
        return (n_frames, *frame)
    return (n_frames * int(np.prod(frame, dtype=np.int64)),)


def model_config(
    obs_shape: tuple[int, ...] | int,
    n_actions: int,
    params: QModelParams,
    algo_params: QLearningParams,
    task_name: str = "model",
) -> AlgoConfig:
    """The :class:`~kitae.config.AlgoConfig` of the agent behind a Q model: observations are
    the stacks ``Box(stacked_observation_shape(obs_shape, n_frames))`` of float32 frames (the
    memory's dtype: scale pixels to ``[0, 1]`` before handing them to the model), actions
    ``Discrete(n_actions)``. The networks' encoder is ``algo_params.encoder`` resolved against
    that space.

    Raises:
        ValueError: naming the field, for invalid ``params`` or ``algo_params``, and for
            ``algo_params.n_step != 1`` or ``algo_params.prioritized`` (the memory holds
            one-step transitions sampled uniformly).
    """
    params.validate()
    check_int("n_actions", n_actions, 1)
    check_one_step_uniform_replay(algo_params)
    shape = stacked_observation_shape(obs_shape, params.n_frames)
    return AlgoConfig(
        seed=params.seed,
        algo_params=algo_params,
        update_cfg=UpdateConfig(
            learning_rate=params.learning_rate,
            max_grad_norm=params.max_grad_norm,
            max_buffer_size=params.memory_size,
            batch_size=min(params.batch_size, params.memory_size),
            n_epochs=params.n_updates,
        ),
        train_cfg=TrainConfig(progress_bar=False, loggers=()),
        env_cfg=EnvConfig(
            task_name,
            gym.spaces.Box(-np.inf, np.inf, shape, np.float32),
            gym.spaces.Discrete(n_actions),
        ),
    )


SORREL_ARGS = (
    "layer_size",
    "epsilon",
    "device",
    "seed",
    "n_frames",
    "n_step",
    "sync_freq",
    "model_update_freq",
    "batch_size",
    "memory_size",
    "LR",
    "TAU",
    "GAMMA",
)
"""Sorrel's flat arguments of its Q models after ``input_size, action_space``, in its positional
order (the IQN adds ``n_quantiles``)."""

SORREL_DEFAULTS: dict[str, Any] = {
    "layer_size": None,
    "epsilon": None,
    "device": None,
    "seed": 0,
    "n_frames": 1,
    "n_step": 3,
    "sync_freq": 200,
    "model_update_freq": 4,
    "batch_size": 64,
    "memory_size": 1024,
    "LR": 0.001,
    "TAU": 0.001,
    "GAMMA": 0.99,
    "n_quantiles": 12,
}
"""Sorrel's defaults; ``None``: kitae's default (Sorrel requires these arguments)."""


def resolve_device(device: Any) -> jax.Device | None:
    """The JAX device of Sorrel's ``device`` argument.

    ``"cpu"`` is JAX's CPU device; ``"cuda"``, ``"cuda:i"``, ``"gpu"``, ``"gpu:i"`` JAX's GPU
    ``i`` (0 by default); a ``torch.device`` is read by its name; a ``jax.Device`` is itself;
    ``None`` is JAX's default device (returned as ``None``).

    Raises:
        ValueError: for another name, or a device JAX does not have here.
    """
    if device is None or isinstance(device, jax.Device):
        return device
    name = str(device).strip().lower()
    kind, _, index = name.partition(":")
    platform = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(kind)
    if platform is None or not (index == "" or index.isdigit()):
        raise ValueError(
            f"device={device!r} is invalid: use 'cpu', 'cuda', 'cuda:<i>', 'gpu' or a jax.Device."
        )
    try:
        devices = jax.devices(platform)
    except RuntimeError as error:
        raise ValueError(f"device={device!r}: JAX has no {platform} device here.") from error
    i = int(index or 0)
    if i >= len(devices):
        raise ValueError(f"device={device!r}: JAX has {len(devices)} {platform} device(s).")
    return devices[i]


def sorrel_seed(seed: int | None) -> int:
    """A kitae seed (in ``[0, 2**31)``) for Sorrel's ``seed``: ``seed % 2**31`` (Sorrel passes
    ``torch.random.seed()``, up to 64 bits); ``None`` draws one."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**31)
    check_int("seed", seed, 0)
    return int(seed) % 2**31


class _QModel(AgentModel):
    """A Q-learning agent of class ``agent_type`` built for the model's input.

    Constructed either kitae's way, ``(obs_shape, n_actions, params, algo_params)``, or
    Sorrel's, ``(input_size, action_space, layer_size, epsilon, device, seed, n_frames, ...)``
    with Sorrel's flat arguments (by keyword or in Sorrel's positional order): see
    :meth:`sorrel_settings` for how each maps onto kitae's settings.
    """

    agent_type: type[DQN] = DQN
    default_algo_params: type[QLearningParams] = DQNParams
    sorrel_args: tuple[str, ...] = SORREL_ARGS
    sorrel_aliases: dict[str, str] = {}

    def __init__(
        self,
        input_size: int | Sequence[int] | None = None,
        action_space: int | None = None,
        *args: Any,
        obs_shape: int | Sequence[int] | None = None,
        n_actions: int | None = None,
        params: QModelParams | None = None,
        algo_params: QLearningParams | None = None,
        **sorrel_kwargs: Any,
    ):
        obs_shape = resolve_alias("input_size", input_size, "obs_shape", obs_shape)
        n_actions = resolve_alias("action_space", action_space, "n_actions", n_actions)
        if args and (args[0] is None or isinstance(args[0], QModelParams)):
            if len(args) > 2:
                raise TypeError(
                    f"{type(self).__name__} takes (obs_shape, n_actions, params, algo_params): "
                    f"{len(args) + 2} positional arguments given."
                )
            given = dict(zip(("params", "algo_params"), args, strict=False))
            for name in given:
                if {"params": params, "algo_params": algo_params}[name] is not None:
                    raise TypeError(f"{name} is given both by position and by keyword.")
            params = given.get("params", params)
            algo_params = given.get("algo_params", algo_params)
        elif args:
            if len(args) > len(self.sorrel_args):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(self.sorrel_args) + 2} positional "
                    f"arguments in Sorrel's order (input_size, action_space, "
                    f"{', '.join(self.sorrel_args)}): {len(args) + 2} given."
                )
            for name, value in zip(self.sorrel_args, args, strict=False):
                if name in sorrel_kwargs:
                    raise TypeError(f"{name} is given both by position and by keyword.")
                sorrel_kwargs[name] = value
        sorrel = self.sorrel_settings(sorrel_kwargs)
        if sorrel is not None and (params is not None or algo_params is not None):
            raise TypeError(
                f"give either params/algo_params (kitae's settings) or Sorrel's flat arguments "
                f"({', '.join(sorted(sorrel_kwargs))}), not both."
            )
        self.sync_freq: int | None = None
        self.model_update_freq: int | None = None
        self.device: jax.Device | None = None
        if sorrel is not None:
            params, algo_params = sorrel.pop("params"), sorrel.pop("algo_params")
            self.sync_freq = sorrel["sync_freq"]
            self.model_update_freq = sorrel["model_update_freq"]
            self.device = sorrel["device"]
        params = QModelParams() if params is None else params
        algo_params = self.default_algo_params() if algo_params is None else algo_params
        config = model_config(obs_shape, n_actions, params, algo_params, type(self).__name__)
        self.params = params
        super().__init__(
            self.agent_type(type(self).__name__, config),
            obs_shape,
            params.memory_size,
            n_frames=params.n_frames,
            batch_size=params.batch_size,
            n_updates=params.n_updates,
            min_transitions=None if params.min_transitions == -1 else params.min_transitions,
            epsilon=params.epsilon,
            seed=params.seed,
            mask_partial_stacks=params.mask_partial_stacks,
            valid_rule=params.valid_rule,
        )
        if self.device is not None and self.device != jax.devices()[0]:
            self.set_agent_state(jax.device_put(self.agent.state, self.device))
        self._q_values_fn = jax.jit(self.q_values_factory())

    def sorrel_settings(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """kitae's settings for Sorrel's flat arguments (``None`` when none is given).

        The mapping (Sorrel's defaults fill the arguments not given; ``layer_size`` and
        ``epsilon`` default to kitae's):

        * ``layer_size`` -> ``algo_params.hidden_sizes = (layer_size,)`` (and the IQN's
          ``head_hidden_sizes``);
        * ``epsilon`` -> ``params.epsilon``; ``seed`` -> ``params.seed`` (see :func:`sorrel_seed`);
        * ``n_frames``, ``batch_size``, ``memory_size`` -> the ``params`` fields of the same name;
        * ``LR`` -> ``params.learning_rate``;
        * ``GAMMA``, ``n_step`` -> ``algo_params.gamma = GAMMA ** n_step``: Sorrel's models
          discount the bootstrap of their one-step transitions by ``GAMMA ** n_step``; the
          memory holds one-step transitions, so ``algo_params.n_step`` stays 1;
        * ``TAU`` -> ``algo_params.tau`` with ``target_update_period = 1`` (a Polyak update after
          every gradient step, as Sorrel's soft update);
        * ``sync_freq`` -> a hard copy of the online network into the target network in
          :meth:`start_epoch_action` when ``epoch % sync_freq == 0`` (Sorrel's sync);
        * ``model_update_freq`` -> kept as :attr:`model_update_freq`, without effect (Sorrel's
          models store it without using it);
        * ``device`` -> the JAX device the agent's state lives on (see :func:`resolve_device`);
        * ``n_quantiles`` (IQN) -> ``N = N' = K = n_quantiles``.

        Sorrel's models also clip gradients to a global norm of 1 (``params.max_grad_norm``) and
        take one gradient step per ``train_step`` (``params.n_updates``); kitae's networks have
        no noisy layers.

        Args:
            kwargs: the flat arguments given, by Sorrel's names (and :attr:`sorrel_aliases`).

        Returns:
            ``{"params", "algo_params", "sync_freq", "model_update_freq", "device"}`` or ``None``.

        Raises:
            TypeError: for an argument this model does not know, or given under two names.
            ValueError: naming the argument, for an invalid value.
        """
        known = set(self.sorrel_args) | set(self.sorrel_aliases)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown keyword argument(s) {', '.join(unknown)}; "
                f"it accepts input_size/obs_shape, action_space/n_actions, params, algo_params, "
                f"or Sorrel's {', '.join(self.sorrel_args)}"
                + (f" (or {', '.join(self.sorrel_aliases)})." if self.sorrel_aliases else ".")
            )
        if not kwargs:
            return None
        kwargs = dict(kwargs)
        for alias, name in self.sorrel_aliases.items():
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f"{alias} and {name} name the same argument: give one.")
                kwargs[name] = kwargs.pop(alias)
        a = {**{n: SORREL_DEFAULTS[n] for n in self.sorrel_args}, **kwargs}
        for name in ("n_step", "sync_freq", "model_update_freq"):
            check_int(name, a[name], 1)
        if not (_real(a["GAMMA"]) and 0.0 <= a["GAMMA"] <= 1.0):
            raise ValueError(f"GAMMA={a['GAMMA']!r} is invalid: it must be in [0, 1].")
        defaults = QModelParams()
        params = QModelParams(
            memory_size=a["memory_size"],
            n_frames=a["n_frames"],
            batch_size=a["batch_size"],
            n_updates=1,
            learning_rate=a["LR"],
            max_grad_norm=1.0,
            epsilon=defaults.epsilon if a["epsilon"] is None else a["epsilon"],
            seed=sorrel_seed(a["seed"]),
        )
        algo = {
            "gamma": float(a["GAMMA"]) ** a["n_step"],
            "tau": a["TAU"],
            "target_update_period": 1,
            "double_q": True,
        }
        if a["layer_size"] is not None:
            check_int("layer_size", a["layer_size"], 1)
            algo.update(self.layer_size_fields(int(a["layer_size"])))
        if "n_quantiles" in a:
            check_int("n_quantiles", a["n_quantiles"], 1)
            n = int(a["n_quantiles"])
            algo.update(n_tau_samples=n, n_tau_prime_samples=n, n_quantile_samples=n)
        return {
            "params": params,
            "algo_params": self.default_algo_params(**algo),
            "sync_freq": int(a["sync_freq"]),
            "model_update_freq": int(a["model_update_freq"]),
            "device": resolve_device(a["device"]),
        }

    def layer_size_fields(self, layer_size: int) -> dict[str, Any]:
        """The ``algo_params`` fields Sorrel's ``layer_size`` sets."""
        return {"hidden_sizes": (layer_size,)}

    def q_values_factory(self) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        """``q_values_fn(state, key, observations [B, ...]) -> [B, n_actions]``."""

        def q_values_fn(state: Any, key: jax.Array, observations: jax.Array) -> jax.Array:
            del key
            return state.apply_fn(state.params, observations)

        return q_values_fn

    def q_values(self, state: Any) -> np.ndarray:
        """The agent's Q-values ``float32[n_actions]`` for ``state`` (one frame, stacked with
        the memory, or a stacked input)."""
        stacked = self.stacked_state(state).reshape(1, *self.observation_shape)
        key = self.agent.interact_keys(stacked)
        return np.asarray(self._q_values_fn(self.agent.acting_state, key, stacked))[0]

    def state_value(self, state: Any) -> float:
        """``max_a Q(state, a)`` (see :meth:`q_values`)."""
        return float(np.max(self.q_values(state)))

    def start_epoch_action(self, **kwargs: Any) -> None:
        """Starts a new episode in the memory; with Sorrel's ``sync_freq``, also copies the
        online network into the target network when ``epoch % sync_freq == 0``.

        Args:
            **kwargs: ``epoch`` (Sorrel's loop passes it), and anything else (ignored).
        """
        super().start_epoch_action(**kwargs)
        epoch = kwargs.get("epoch")
        if self.sync_freq is not None and epoch is not None and epoch % self.sync_freq == 0:
            self.sync_target()

    def sync_target(self) -> None:
        """Copies the online parameters into the target parameters (a hard update)."""
        state = self.agent.state
        self.set_agent_state(state.replace(target_params=state.params))


class DDQNModel(_QModel):
    """Double DQN model: the online network picks the bootstrap action, the target network
    evaluates it, ``y = r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``.

    Built on :class:`~kitae.algos.dqn.DQN` with ``algo_params`` (a
    :class:`~kitae.algos.dqn.DQNParams`, ``double_q=True`` by default). Target updates follow
    ``algo_params.tau`` (1: hard copy, < 1: Polyak averaging) every
    ``algo_params.target_update_period`` gradient steps.

    See "Deep Reinforcement Learning with Double Q-learning", van Hasselt et al., 2016.

    Built kitae's way, ``DDQNModel(obs_shape, n_actions, params, algo_params)``, or Sorrel's,
    with its flat arguments (``layer_size, epsilon, device, seed, n_frames, n_step, sync_freq,
    model_update_freq, batch_size, memory_size, LR, TAU, GAMMA``, also ``lr`` and ``gamma``) by
    keyword or in that positional order after ``input_size, action_space``; see
    :meth:`sorrel_settings` for the mapping.

    Args:
        input_size: shape of one observation (frame); ``obs_shape=`` is the same argument.
        action_space: number of discrete actions; ``n_actions=`` is the same argument.
        *args: ``params, algo_params`` (kitae's) or Sorrel's arguments, by position.
        params: model settings (:class:`QModelParams`).
        algo_params: DQN hyperparameters; ``n_step`` must be 1 and ``prioritized`` False.
        **sorrel_kwargs: Sorrel's flat arguments (not together with ``params`` or
            ``algo_params``).

    Raises:
        TypeError: for an unknown keyword, an argument given twice, or Sorrel's arguments mixed
            with ``params``/``algo_params``.
        ValueError: naming the field, for any invalid setting (``algo_params.encoder`` included:
            a convolutional encoder needs image frames).
    """

    agent_type = DQN
    default_algo_params = DQNParams
    sorrel_aliases = {"lr": "LR", "gamma": "GAMMA"}


class IQNModel(_QModel):
    """Implicit quantile network model: quantile Huber loss between ``N`` online and ``N'``
    target quantiles at sampled levels; actions and (double-Q) bootstrap actions from Q-values
    estimated with ``K`` sampled levels.

    Built on :class:`~kitae.algos.iqn.IQN` with ``algo_params`` (an
    :class:`~kitae.algos.iqn.IQNParams`); target updates as in :class:`DDQNModel`.

    See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al.,
    2018.

    Built kitae's way, ``IQNModel(obs_shape, n_actions, params, algo_params)``, or as Sorrel's
    IQN, with its flat arguments (``layer_size, epsilon, device, seed, n_frames, n_step,
    sync_freq, model_update_freq, batch_size, memory_size, LR, TAU, GAMMA, n_quantiles``) by
    keyword or in that positional order after ``input_size, action_space``; see
    :meth:`sorrel_settings` for the mapping (kitae's IQN has no noisy or dueling layers).

    Args:
        input_size: shape of one observation (frame); ``obs_shape=`` is the same argument.
        action_space: number of discrete actions; ``n_actions=`` is the same argument.
        *args: ``params, algo_params`` (kitae's) or Sorrel's arguments, by position.
        params: model settings (:class:`QModelParams`).
        algo_params: IQN hyperparameters; ``n_step`` must be 1 and ``prioritized`` False.
        **sorrel_kwargs: Sorrel's flat arguments (not together with ``params`` or
            ``algo_params``).

    Raises:
        TypeError: for an unknown keyword, an argument given twice, or Sorrel's arguments mixed
            with ``params``/``algo_params``.
        ValueError: naming the field, for any invalid setting (``algo_params.encoder`` included:
            a convolutional encoder needs image frames).
    """

    agent_type = IQN
    default_algo_params = IQNParams
    sorrel_args = (*SORREL_ARGS, "n_quantiles")

    def layer_size_fields(self, layer_size: int) -> dict[str, Any]:
        """Sorrel's ``layer_size`` is the width of the torso and of the layer after the
        quantile embedding: ``hidden_sizes = head_hidden_sizes = (layer_size,)``."""
        return {"hidden_sizes": (layer_size,), "head_hidden_sizes": (layer_size,)}

    def q_values_factory(self) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        """Q-values estimated from ``K`` sampled quantile levels, as the agent acts."""
        n_taus = self.agent.config.algo_params.n_quantile_samples

        def q_values_fn(state: Any, key: jax.Array, observations: jax.Array) -> jax.Array:
            return sampled_q_values(state, state.params, key, observations, n_taus)

        return q_values_fn
