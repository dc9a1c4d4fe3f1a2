"""The minimal model interface: something that picks an action, and may train from its memory.

An agent in a (possibly multi-agent, turn-based) simulation owns a model. Each turn it asks
``model.take_action(obs)`` for an action, then stores the step with
``model.memory.add(obs, action, reward, done)``; once per epoch it may call
``model.train_step()``. ``start_epoch_action`` / ``end_epoch_action`` run around each epoch.

The constructor, attributes and extra members of Sorrel's ``BaseModel`` are accepted as they
are (``BaseModel(input_size, action_space, memory_size, epsilon)``, ``epsilon_decay``,
``reset``, ``save``, ``model_name``), beside kitae's own names (``obs_shape``, ``n_actions``,
``n_frames``...), so code written for Sorrel runs unchanged.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kitae.config import check_int
from kitae.models.memory import FrameStackMemory

FORMAT = "kitae.models"
"""The ``format`` entry of the metadata of the safetensors files :meth:`BaseModel.save` writes."""


def resolve_alias(
    sorrel_name: str, sorrel_value: Any, kitae_name: str, kitae_value: Any, required: bool = True
) -> Any:
    """The value given under Sorrel's name or kitae's name for the same argument.

    Args:
        sorrel_name: Sorrel's name of the argument (e.g. ``"input_size"``).
        sorrel_value: what was passed under it (``None``: not given).
        kitae_name: kitae's name (e.g. ``"obs_shape"``).
        kitae_value: what was passed under it (``None``: not given).
        required: raise when neither is given.

    Returns:
        The given value, or ``None`` when neither is given and not ``required``.

    Raises:
        TypeError: if both names are given, or neither while ``required``.
    """
    if sorrel_value is not None and kitae_value is not None:
        raise TypeError(
            f"{sorrel_name} and {kitae_name} name the same argument (Sorrel's and kitae's "
            f"names): give one of them, not both."
        )
    if sorrel_value is None and kitae_value is None and required:
        raise TypeError(f"missing argument: {sorrel_name} (or {kitae_name}).")
    return kitae_value if sorrel_value is None else sorrel_value


class BaseModel(abc.ABC):
    """Abstract model: override :meth:`take_action`; the rest has working defaults.

    Sorrel's signature ``BaseModel(input_size, action_space, memory_size, epsilon=0.0)`` and
    kitae's keyword names are both accepted. The rule: the first four positional parameters are
    Sorrel's (the **fourth is** ``epsilon``); ``n_frames`` and every other kitae setting are
    keyword-only. ``obs_shape=`` is kitae's name for ``input_size`` and ``n_actions=`` for
    ``action_space``; giving both names of one argument raises ``TypeError``.

    Args:
        input_size: shape of one observation (one frame), an ``int`` or a sequence of ints.
        action_space: number of discrete actions.
        memory_size: frames held by :attr:`memory`.
        epsilon: exploration rate, for models that explore (see :meth:`set_epsilon`).
        n_frames: frames stacked into the model's input (:attr:`stacked_size` values).
        seed: seed of the memory's sampling generator and of the model's exploration.
        mask_partial_stacks: see :class:`~kitae.models.memory.FrameStackMemory`.
        valid_rule: the memory's ``valid`` mask, ``"transition"`` (kitae's) or
            ``"episode_boundary"`` (Sorrel's), see :meth:`FrameStackMemory.gather`.
        obs_shape: kitae's name for ``input_size``.
        n_actions: kitae's name for ``action_space``.

    Attributes:
        input_size: the observation shape as given (Sorrel's attribute; assignable, the memory
            keeps the shape it was built with, :attr:`obs_shape`).
        action_space: number of actions (:attr:`n_actions` is the same attribute).
        memory: the model's :class:`~kitae.models.memory.FrameStackMemory`.
        epsilon: the current exploration rate.
        rng: numpy generator for host-side randomness (exploration).

    Raises:
        TypeError: if an argument is given under both its names, or not at all.
        ValueError: if a count is not a positive integer or ``epsilon`` is not in ``[0, 1]``.
    """

    input_size: int | Sequence[int]
    action_space: int
    memory: FrameStackMemory
    epsilon: float

    def __init__(
        self,
        input_size: int | Sequence[int] | None = None,
        action_space: int | None = None,
        memory_size: int = 1024,
        epsilon: float = 0.0,
        *,
        n_frames: int = 1,
        seed: int | None = None,
        mask_partial_stacks: bool = False,
        valid_rule: str = "transition",
        obs_shape: int | Sequence[int] | None = None,
        n_actions: int | None = None,
    ):
        input_size = resolve_alias("input_size", input_size, "obs_shape", obs_shape)
        action_space = resolve_alias("action_space", action_space, "n_actions", n_actions)
        check_int("action_space", action_space, 1)
        self.input_size = input_size
        self.action_space = int(action_space)
        shape = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        self.memory = FrameStackMemory(
            memory_size,
            shape,
            n_frames,
            mask_partial_stacks=mask_partial_stacks,
            seed=seed,
            valid_rule=valid_rule,
        )
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        self.epsilon = 0.0
        self.set_epsilon(epsilon)

    @property
    def n_actions(self) -> int:
        """Number of discrete actions (kitae's name of :attr:`action_space`)."""
        return self.action_space

    @n_actions.setter
    def n_actions(self, value: int) -> None:
        self.action_space = value

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation (frame), as the memory stores it."""
        return self.memory.obs_shape

    @property
    def n_frames(self) -> int:
        """Frames per stacked input."""
        return self.memory.n_frames

    @property
    def memory_size(self) -> int:
        """Frames the memory holds (its capacity)."""
        return self.memory.capacity

    @property
    def stacked_size(self) -> int:
        """Size of the flattened stacked input: ``n_frames * prod(obs_shape)``."""
        return self.memory.n_frames * self.memory.frame_size

    @property
    def model_name(self) -> str:
        """The name of the model's class."""
        return type(self).__name__

    @abc.abstractmethod
    def take_action(self, state: Any) -> int:
        """Picks an action for ``state``. Must be implemented by every model.

        Args:
            state: the observation the agent just made. Built-in models accept one frame
                (``obs_shape``, stacked here with the memory's previous frames, see
                :meth:`stacked_state`) or an already stacked input of :attr:`stacked_size`
                values (any shape, e.g. Sorrel's ``[1, stacked_size]``).

        Returns:
            The action, an ``int`` in ``[0, n_actions)``.
        """

    def train_step(self) -> float | np.ndarray | Any:
        """Trains the model from its memory; returns the loss (0 for models that do not train).

        Implementations may return a float, a numpy or JAX array, a torch tensor, or a sequence
        of such values.
        """
        return np.array(0.0, np.float32)

    def state_value(self, state: Any) -> float:
        """The model's estimate of the value of ``state`` (for Q models, ``max_a Q(s, a)``).

        Args:
            state: as for :meth:`take_action`.

        Raises:
            NotImplementedError: for models without a value estimate (the default).
        """
        del state
        raise NotImplementedError(f"{self.model_name} has no value estimate.")

    def set_epsilon(self, new_epsilon: float) -> None:
        """Replaces the exploration rate.

        Raises:
            ValueError: if ``new_epsilon`` is not in ``[0, 1]``.
        """
        if not 0.0 <= float(new_epsilon) <= 1.0:
            raise ValueError(
                f"epsilon={new_epsilon!r} is invalid: it must be in [0, 1] (BaseModel's fourth "
                "positional argument is epsilon, as in Sorrel; pass n_frames by keyword)."
            )
        self.epsilon = float(new_epsilon)

    def epsilon_decay(self, decay_rate: float) -> None:
        """Decays the exploration rate: ``epsilon *= 1 - decay_rate`` (Sorrel's rule).

        Raises:
            ValueError: if ``decay_rate`` is not in ``[0, 1]``.
        """
        if not 0.0 <= float(decay_rate) <= 1.0:
            raise ValueError(f"decay_rate={decay_rate!r} is invalid: it must be in [0, 1].")
        self.set_epsilon(self.epsilon * (1.0 - float(decay_rate)))

    def reset(self) -> None:
        """Resets what starts anew with an epoch. The default starts a new episode in
        :attr:`memory` (as :meth:`start_epoch_action` does); the weights are kept."""
        self.memory.new_episode()

    def start_epoch_action(self, **kwargs: Any) -> None:
        """Runs before each epoch. The default starts a new episode in :attr:`memory` (so the
        first stacked state of the epoch is zero-padded); overrides should call it.

        Args:
            **kwargs: whatever the loop passes (Sorrel's passes ``epoch``).
        """
        del kwargs
        self.memory.new_episode()

    def end_epoch_action(self, **kwargs: Any) -> None:
        """Runs after each epoch (e.g. a target-network update); does nothing by default."""
        del kwargs

    # ---- weights --------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`save` writes, by name (none by default: a model without weights).

        Models with weights override it and :meth:`load_state_arrays`.
        """
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replaces the model's arrays by those of ``arrays`` (as :meth:`state_arrays` names
        them).

        Raises:
            ValueError: if the names do not match (the default holds no array).
        """
        if arrays:
            raise ValueError(f"{self.model_name} holds no arrays; the file has {sorted(arrays)}.")

    def save(self, file_path: str | os.PathLike) -> None:
        """Writes the model's weights (:meth:`state_arrays`) to a safetensors file, creating
        its folder if needed. The file's metadata names the model class.

        Args:
            file_path: the file's full path, extension included.

        Raises:
            ImportError: if safetensors is not installed (``pip install kitae[torch]``).
        """
        save_file, _ = _safetensors()
        path = Path(file_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.array(v, order="C") for k, v in self.state_arrays().items()}
        save_file(arrays, str(path), metadata={"format": FORMAT, "model": self.model_name})

    def load(self, file_path: str | os.PathLike) -> None:
        """Reads weights written by :meth:`save` into this model (built with the same
        architecture).

        Args:
            file_path: the file :meth:`save` wrote.

        Raises:
            ValueError: if the file was written by another model class, or its arrays do not
                match this model's names and shapes.
        """
        _, safe_open = _safetensors()
        with safe_open(str(file_path), framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
        written_by = metadata.get("model")
        if metadata.get("format") != FORMAT or written_by != self.model_name:
            raise ValueError(
                f"{file_path} was not written by {self.model_name}.save (its metadata: {metadata})."
            )
        self.load_state_arrays(arrays)

    # ---- stacking and exploration ---------------------------------------------------------
    def stacked_state(self, state: Any) -> np.ndarray:
        """The model input for ``state``: ``float32[stacked_size]``.

        One frame (``prod(obs_shape)`` values) is stacked on top of the memory's previous
        frames of the current episode (:meth:`FrameStackMemory.current_state`); an input of
        :attr:`stacked_size` values is taken as already stacked.

        Raises:
            ValueError: if ``state`` has neither size.
        """
        x = np.asarray(state, np.float32).reshape(-1)
        if x.size == self.memory.frame_size:
            return self.memory.current_state(x)
        if x.size == self.stacked_size:
            return x
        raise ValueError(
            f"state has {x.size} values: expected one frame of shape {self.obs_shape} "
            f"({self.memory.frame_size} values) or a stack of {self.n_frames} frames "
            f"({self.stacked_size} values)."
        )

    def explores(self) -> bool:
        """Draws whether this step explores: ``True`` with probability :attr:`epsilon`."""
        return self.epsilon > 0.0 and bool(self.rng.random() < self.epsilon)

    def random_action(self) -> int:
        """A uniformly random action."""
        return int(self.rng.integers(self.n_actions))


def _safetensors() -> tuple[Callable[..., None], Callable[..., Any]]:
    """``(safetensors.numpy.save_file, safetensors.safe_open)``, or an ``ImportError`` naming
    the extra to install."""
    try:
        from safetensors import safe_open
        from safetensors.numpy import save_file
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "saving and loading models needs safetensors: `pip install kitae[torch]`."
        ) from error
    return save_file, safe_open
