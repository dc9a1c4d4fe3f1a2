"""The minimal model interface: something that picks an action, and may train from its memory.

An agent in a (possibly multi-agent, turn-based) simulation owns a model. Each turn it asks
``model.take_action(obs)`` for an action, then stores the step with
``model.memory.add(obs, action, reward, done)``; once per epoch it may call
``model.train_step()``. ``start_epoch_action`` / ``end_epoch_action`` run around each epoch.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from kitae.config import check_int
from kitae.models.memory import FrameStackMemory


class BaseModel(abc.ABC):
    """Abstract model: override :meth:`take_action`; the rest has working defaults.

    Args:
        obs_shape: shape of one observation (one frame).
        n_actions: number of discrete actions.
        memory_size: frames held by :attr:`memory`.
        n_frames: frames stacked into the model's input (``n_frames * prod(obs_shape)`` values).
        epsilon: exploration rate, for models that explore (see :meth:`set_epsilon`).
        seed: seed of the memory's sampling generator and of the model's exploration.
        mask_partial_stacks: see :class:`~kitae.models.memory.FrameStackMemory`.

    Attributes:
        memory: the model's :class:`~kitae.models.memory.FrameStackMemory`.
        epsilon: the current exploration rate.
        rng: numpy generator for host-side randomness (exploration).
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...] | int,
        n_actions: int,
        memory_size: int = 1024,
        n_frames: int = 1,
        *,
        epsilon: float = 0.0,
        seed: int | None = None,
        mask_partial_stacks: bool = False,
    ):
        check_int("n_actions", n_actions, 1)
        self.n_actions = int(n_actions)
        self.memory = FrameStackMemory(
            memory_size, obs_shape, n_frames, mask_partial_stacks=mask_partial_stacks, seed=seed
        )
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        self.epsilon = 0.0
        self.set_epsilon(epsilon)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation (frame)."""
        return self.memory.obs_shape

    @property
    def n_frames(self) -> int:
        """Frames per stacked input."""
        return self.memory.n_frames

    @property
    def input_size(self) -> int:
        """Size of the flattened stacked input: ``n_frames * prod(obs_shape)``."""
        return self.memory.n_frames * self.memory.frame_size

    @abc.abstractmethod
    def take_action(self, state: Any) -> int:
        """Picks an action for ``state``. Must be implemented by every model.

        Args:
            state: the observation the agent just made. Built-in models accept one frame
                (``obs_shape``, stacked here with the memory's previous frames, see
                :meth:`stacked_state`) or an already stacked input of ``input_size`` values.

        Returns:
            The action, an ``int`` in ``[0, n_actions)``.
        """

    def train_step(self) -> float | np.ndarray | Any:
        """Trains the model from its memory; returns the loss (0 for models that do not train).

        Implementations may return a float, a numpy or JAX array, a torch tensor, or a sequence
        of such values.
        """
        return np.array(0.0, np.float32)

    def set_epsilon(self, new_epsilon: float) -> None:
        """Replaces the exploration rate.

        Raises:
            ValueError: if ``new_epsilon`` is not in ``[0, 1]``.
        """
        if not 0.0 <= float(new_epsilon) <= 1.0:
            raise ValueError(f"epsilon={new_epsilon!r} is invalid: it must be in [0, 1].")
        self.epsilon = float(new_epsilon)

    def start_epoch_action(self, **kwargs: Any) -> None:
        """Runs before each epoch. The default starts a new episode in :attr:`memory` (so the
        first stacked state of the epoch is zero-padded); overrides should call it."""
        del kwargs
        self.memory.new_episode()

    def end_epoch_action(self, **kwargs: Any) -> None:
        """Runs after each epoch (e.g. a target-network update); does nothing by default."""
        del kwargs

    def stacked_state(self, state: Any) -> np.ndarray:
        """The model input for ``state``: ``float32[input_size]``.

        One frame (``prod(obs_shape)`` values) is stacked on top of the memory's previous
        frames of the current episode (:meth:`FrameStackMemory.current_state`); an input of
        ``input_size`` values is taken as already stacked.

        Raises:
            ValueError: if ``state`` has neither size.
        """
        x = np.asarray(state, np.float32).reshape(-1)
        if x.size == self.memory.frame_size:
            return self.memory.current_state(x)
        if x.size == self.input_size:
            return x
        raise ValueError(
            f"state has {x.size} values: expected one frame of shape {self.obs_shape} "
            f"({self.memory.frame_size} values) or a stack of {self.n_frames} frames "
            f"({self.input_size} values)."
        )

    def explores(self) -> bool:
        """Draws whether this step explores: ``True`` with probability :attr:`epsilon`."""
        return self.epsilon > 0.0 and bool(self.rng.random() < self.epsilon)

    def random_action(self) -> int:
        """A uniformly random action."""
        return int(self.rng.integers(self.n_actions))
