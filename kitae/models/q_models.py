"""Pre-built Q-learning models: :class:`DDQNModel` (double DQN) and :class:`IQNModel`.

Both are :class:`~kitae.models.agent_model.AgentModel` s around kitae's own agents
(:class:`~kitae.algos.dqn.DQN`, :class:`~kitae.algos.iqn.IQN`) built for the model's stacked
input: acting, targets, losses and target updates are the agents' factories, jitted once.
``take_action`` is epsilon-greedy on the current stacked state; ``train_step`` samples the
memory and takes masked gradient steps (samples that are not ``valid`` carry no weight).

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
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from kitae.algos.dqn import DQN, DQNParams, QLearningParams
from kitae.algos.iqn import IQN, IQNParams
from kitae.config import AlgoConfig, EnvConfig, TrainConfig, UpdateConfig, check_int
from kitae.models.agent_model import AgentModel, check_one_step_uniform_replay
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


class _QModel(AgentModel):
    """A Q-learning agent of class ``agent_type`` built for the model's input."""

    agent_type: type[DQN] = DQN
    default_algo_params: type[QLearningParams] = DQNParams

    def __init__(
        self,
        obs_shape: tuple[int, ...] | int,
        n_actions: int,
        params: QModelParams | None = None,
        algo_params: QLearningParams | None = None,
    ):
        params = QModelParams() if params is None else params
        algo_params = self.default_algo_params() if algo_params is None else algo_params
        config = model_config(obs_shape, n_actions, params, algo_params, type(self).__name__)
        self.params = params
        super().__init__(
            self.agent_type(type(self).__name__, config),
            obs_shape,
            params.memory_size,
            params.n_frames,
            batch_size=params.batch_size,
            n_updates=params.n_updates,
            min_transitions=None if params.min_transitions == -1 else params.min_transitions,
            epsilon=params.epsilon,
            seed=params.seed,
            mask_partial_stacks=params.mask_partial_stacks,
        )


class DDQNModel(_QModel):
    """Double DQN model: the online network picks the bootstrap action, the target network
    evaluates it, ``y = r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``.

    Built on :class:`~kitae.algos.dqn.DQN` with ``algo_params`` (a
    :class:`~kitae.algos.dqn.DQNParams`, ``double_q=True`` by default). Target updates follow
    ``algo_params.tau`` (1: hard copy, < 1: Polyak averaging) every
    ``algo_params.target_update_period`` gradient steps.

    See "Deep Reinforcement Learning with Double Q-learning", van Hasselt et al., 2016.

    Args:
        obs_shape: shape of one observation (frame).
        n_actions: number of discrete actions.
        params: model settings (:class:`QModelParams`).
        algo_params: DQN hyperparameters; ``n_step`` must be 1 and ``prioritized`` False.

    Raises:
        ValueError: naming the field, for any invalid setting (``algo_params.encoder`` included:
            a convolutional encoder needs image frames).
    """

    agent_type = DQN
    default_algo_params = DQNParams


class IQNModel(_QModel):
    """Implicit quantile network model: quantile Huber loss between ``N`` online and ``N'``
    target quantiles at sampled levels; actions and (double-Q) bootstrap actions from Q-values
    estimated with ``K`` sampled levels.

    Built on :class:`~kitae.algos.iqn.IQN` with ``algo_params`` (an
    :class:`~kitae.algos.iqn.IQNParams`); target updates as in :class:`DDQNModel`.

    See "Implicit Quantile Networks for Distributional Reinforcement Learning", Dabney et al.,
    2018.

    Args:
        obs_shape: shape of one observation (frame).
        n_actions: number of discrete actions.
        params: model settings (:class:`QModelParams`).
        algo_params: IQN hyperparameters; ``n_step`` must be 1 and ``prioritized`` False.

    Raises:
        ValueError: naming the field, for any invalid setting (``algo_params.encoder`` included:
            a convolutional encoder needs image frames).
    """

    agent_type = IQN
    default_algo_params = IQNParams
