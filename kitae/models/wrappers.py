"""Models around networks written in plain JAX/flax or in PyTorch.

Both pick the argmax of the network's outputs (Q-values or logits) on the stacked state,
epsilon-greedy with the model's :attr:`~kitae.models.base.BaseModel.epsilon`, and train only
through an optional user ``train_fn``. A kitae agent is wrapped by
:class:`~kitae.models.agent_model.AgentModel`. torch is imported only by :class:`TorchModel`
(install the ``kitae[torch]`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kitae.models.base import BaseModel
from kitae.models.memory import MemoryBatch
from kitae.models.weights import tree_arrays, tree_from_arrays
from kitae.types import Params


class FlaxModel(BaseModel):
    """A flax network ``module.apply(variables, x [B, stacked_size]) -> [B, n_actions]`` as a
    model; acting is one jitted call (compiled once). :meth:`save` writes :attr:`variables`.

    Args:
        module: the flax module.
        variables: its variables (``module.init(...)``); replace :attr:`variables` to update.
        obs_shape: shape of one frame.
        n_actions: number of discrete actions (the network's output size).
        memory_size: frames held by the memory.
        n_frames: frames per stacked input (keyword-only).
        train_fn: optional ``train_fn(variables, batch: MemoryBatch) -> (variables, loss)``
            that :meth:`train_step` calls on a memory sample of ``batch_size``.
        batch_size: samples passed to ``train_fn``.
        epsilon: exploration rate.
        seed: seed of the exploration and memory sampling.
    """

    def __init__(
        self,
        module: nn.Module,
        variables: Params,
        obs_shape: tuple[int, ...] | int,
        n_actions: int,
        memory_size: int = 1024,
        *,
        n_frames: int = 1,
        train_fn: Callable[[Params, MemoryBatch], tuple[Params, Any]] | None = None,
        batch_size: int = 64,
        epsilon: float = 0.0,
        seed: int | None = None,
    ):
        super().__init__(obs_shape, n_actions, memory_size, epsilon, n_frames=n_frames, seed=seed)
        self.module = module
        self.variables = variables
        self.train_fn = train_fn
        self.batch_size = batch_size

        def greedy_fn(variables: Params, x: jax.Array) -> jax.Array:
            return jnp.argmax(module.apply(variables, x), axis=-1)

        self.greedy_fn = jax.jit(greedy_fn)

    def take_action(self, state: Any) -> int:
        """Epsilon-greedy on the network's outputs for the stacked ``state``."""
        if self.explores():
            return self.random_action()
        x = self.stacked_state(state)[None]
        return int(self.greedy_fn(self.variables, x)[0])

    def state_value(self, state: Any) -> float:
        """The largest network output for the stacked ``state`` (``max_a Q(s, a)`` when the
        network outputs Q-values)."""
        x = self.stacked_state(state)[None]
        return float(np.max(np.asarray(self.module.apply(self.variables, x))))

    def state_arrays(self) -> dict[str, np.ndarray]:
        """:attr:`variables` as named arrays (see :func:`~kitae.models.weights.tree_arrays`)."""
        return tree_arrays(self.variables)

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replaces :attr:`variables` by ``arrays`` (names and shapes must match)."""
        self.variables = tree_from_arrays(self.variables, arrays)

    def train_step(self) -> Any:
        """Calls ``train_fn`` on a memory sample (0 without ``train_fn`` or data)."""
        if self.train_fn is None or self.memory.n_transitions() == 0:
            return np.array(0.0, np.float32)
        self.variables, loss = self.train_fn(self.variables, self.memory.sample(self.batch_size))
        return loss


class TorchModel(BaseModel):
    """A ``torch.nn.Module`` mapping ``float32[B, stacked_size] -> [B, n_actions]`` as a model.

    Acting runs the module in eval mode under ``torch.no_grad`` and takes the argmax.
    :meth:`save` writes the module's ``state_dict`` (torch names).

    Args:
        module: the torch module (on the CPU).
        obs_shape: shape of one frame.
        n_actions: number of discrete actions.
        memory_size: frames held by the memory.
        n_frames: frames per stacked input (keyword-only).
        train_fn: optional ``train_fn(module, batch: MemoryBatch) -> loss`` that
            :meth:`train_step` calls on a memory sample of ``batch_size``.
        batch_size: samples passed to ``train_fn``.
        epsilon: exploration rate.
        seed: seed of the exploration and memory sampling.

    Raises:
        ImportError: if torch is not installed (``pip install kitae[torch]``).
    """

    def __init__(
        self,
        module: Any,
        obs_shape: tuple[int, ...] | int,
        n_actions: int,
        memory_size: int = 1024,
        *,
        n_frames: int = 1,
        train_fn: Callable[[Any, MemoryBatch], Any] | None = None,
        batch_size: int = 64,
        epsilon: float = 0.0,
        seed: int | None = None,
    ):
        self._torch = import_torch()
        super().__init__(obs_shape, n_actions, memory_size, epsilon, n_frames=n_frames, seed=seed)
        self.module = module
        self.train_fn = train_fn
        self.batch_size = batch_size

    def q_values(self, states: np.ndarray) -> np.ndarray:
        """The module's outputs ``float32[B, n_actions]`` for stacked
        ``states [B, stacked_size]``."""
        torch = self._torch
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                out = self.module(torch.as_tensor(np.asarray(states, np.float32)))
        finally:
            self.module.train(was_training)
        return out.detach().cpu().numpy()

    def take_action(self, state: Any) -> int:
        """Epsilon-greedy on the module's outputs for the stacked ``state``."""
        if self.explores():
            return self.random_action()
        return int(np.argmax(self.q_values(self.stacked_state(state)[None])[0]))

    def state_value(self, state: Any) -> float:
        """The largest module output for the stacked ``state`` (``max_a Q(s, a)`` when the
        module outputs Q-values)."""
        return float(np.max(self.q_values(self.stacked_state(state)[None])[0]))

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The module's ``state_dict`` as numpy arrays (torch names)."""
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads ``arrays`` into the module (strict: the names and shapes must match).

        Raises:
            ValueError: if they do not.
        """
        torch = self._torch
        try:
            self.module.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        except RuntimeError as error:
            raise ValueError(f"the arrays do not match the module: {error}") from error

    def train_step(self) -> Any:
        """Calls ``train_fn`` on a memory sample (0 without ``train_fn`` or data)."""
        if self.train_fn is None or self.memory.n_transitions() == 0:
            return np.array(0.0, np.float32)
        return self.train_fn(self.module, self.memory.sample(self.batch_size))


def import_torch() -> Any:
    """Imports torch, or raises an ``ImportError`` naming the extra to install."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "PyTorch models need torch: install it with `pip install kitae[torch]`."
        ) from error
    return torch
