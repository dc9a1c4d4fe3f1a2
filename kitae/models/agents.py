"""An agent of a simulation that owns a model and takes one transition per turn.

:class:`Agent` is the flow of Sorrel's ``Agent.transition(world)``: observe the world
(:meth:`Agent.pov`), pick an action (:meth:`Agent.get_action`), act on the world
(:meth:`Agent.act`, which returns the reward), tell whether the agent is done
(:meth:`Agent.is_done`) and store the step in the model's memory (:meth:`Agent.add_memory`).
A subclass says how to observe, act and end; the model says which action to take.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from kitae.models.base import BaseModel


class Agent(abc.ABC):
    """An entity of a world that acts through its :attr:`model`, one transition per turn.

    Override :meth:`pov`, :meth:`act` and :meth:`is_done`; :meth:`get_action`,
    :meth:`add_memory` and :meth:`reset` have working defaults.

    Args:
        model: the model that picks the actions and stores the steps.

    Attributes:
        model: the agent's :class:`~kitae.models.base.BaseModel`.
    """

    def __init__(self, model: BaseModel):
        self.model = model

    @abc.abstractmethod
    def pov(self, world: Any) -> np.ndarray:
        """The agent's observation of ``world``: one frame, of the model's ``obs_shape`` (or as
        many values)."""

    @abc.abstractmethod
    def act(self, world: Any, action: int) -> float:
        """Carries out ``action`` in ``world``; returns the reward it earned."""

    @abc.abstractmethod
    def is_done(self, world: Any) -> bool:
        """Whether the agent's episode terminated with its last action (stored as ``done``)."""

    def get_action(self, state: np.ndarray) -> int:
        """The model's action for the observation ``state``. The default asks
        ``model.take_action(state)``; kitae's models stack it with the memory's previous frames
        themselves. Override it to stack by hand (``model.memory.current_state()``)."""
        return self.model.take_action(state)

    def add_memory(self, state: np.ndarray, action: int, reward: float, done: bool) -> None:
        """Stores the step in the model's memory: ``model.memory.add(state, action, reward,
        done)``."""
        self.model.memory.add(state, action, reward, done)

    def reset(self) -> None:
        """Resets the agent for a new epoch; the default resets its model
        (:meth:`BaseModel.reset`: a new episode in its memory)."""
        self.model.reset()

    def transition(self, world: Any) -> tuple[float, bool]:
        """One turn: observe, pick an action, act, check the end, store the step.

        ``state = pov(world)``, ``action = get_action(state)``, ``reward = act(world, action)``,
        ``done = is_done(world)``, then ``add_memory(state, action, reward, done)``. When
        ``world`` has a ``total_reward`` attribute, the reward is added to it (as Sorrel's
        worlds count it).

        Args:
            world: the world the agent acts in.

        Returns:
            ``(reward, done)`` of the step.
        """
        state = self.pov(world)
        action = self.get_action(state)
        reward = self.act(world, action)
        done = bool(self.is_done(world))
        if hasattr(world, "total_reward"):
            world.total_reward += reward
        self.add_memory(state, action, reward, done)
        return reward, done
