"""Models: the minimal "pick an action, maybe train from your own memory" interface.

An agent in a (possibly multi-agent, turn-based) simulation owns a model. :class:`BaseModel`
is the interface (:meth:`~BaseModel.take_action`, optional :meth:`~BaseModel.train_step`,
:meth:`~BaseModel.set_epsilon` and epoch hooks) and gives every model a
:class:`FrameStackMemory`. Pre-built models: :class:`DDQNModel` and :class:`IQNModel` (kitae's
DQN and IQN agents), :class:`AgentModel` (any kitae agent), :class:`FlaxModel` and
:class:`TorchModel` (networks written in JAX/flax or PyTorch), :class:`HumanModel` (keyboard).
:class:`Agent` runs one turn of an agent (observe, act, store) with its model. Every model saves
and loads its weights as safetensors (``save`` / ``load``); :mod:`kitae.models.weights`
exchanges dense weights between flax and PyTorch.

Code written for Sorrel's models runs unchanged: ``BaseModel(input_size, action_space,
memory_size, epsilon)``, Sorrel's flat arguments of the IQN and DDQN models, ``HumanPlayer``,
``memory.current_state()``, ``epsilon_decay``... (see each class).
See ``tutorials/implement_model.md``.
"""

from kitae.models.agent_model import AgentModel, make_masked_update, masked_weights
from kitae.models.agents import Agent
from kitae.models.base import BaseModel
from kitae.models.human import WASD, HumanModel, HumanPlayer, QuitGame, scripted_keys
from kitae.models.memory import FrameStackMemory, MemoryBatch
from kitae.models.q_models import DDQNModel, IQNModel, QModelParams
from kitae.models.wrappers import FlaxModel, TorchModel

__all__ = [
    "Agent",
    "AgentModel",
    "BaseModel",
    "DDQNModel",
    "FlaxModel",
    "FrameStackMemory",
    "HumanModel",
    "HumanPlayer",
    "IQNModel",
    "MemoryBatch",
    "QModelParams",
    "QuitGame",
    "TorchModel",
    "WASD",
    "make_masked_update",
    "masked_weights",
    "scripted_keys",
]
