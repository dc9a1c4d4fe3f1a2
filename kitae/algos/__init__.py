"""Built-in agents, each written with the four factories.

``AlphaZero`` / ``AlphaZeroParams`` are imported on first use: their search needs ``mctx``
(``pip install 'kitae[planning]'``).
"""

import sys
from typing import Any

from kitae.algos.c51 import C51, C51Params
from kitae.algos.dqn import DQN, DQNParams, QLearningParams
from kitae.algos.iqn import IQN, IQNParams
from kitae.algos.ppo import PPO, PPOParams
from kitae.algos.pqn import PQN, PQNParams
from kitae.algos.qrdqn import QRDQN, QRDQNParams
from kitae.algos.r2d2 import R2D2, R2D2Params
from kitae.algos.sac import SAC, SACParams
from kitae.algos.td3 import DDPG, TD3, DDPGParams, TD3Params
from kitae.builders import resolve_train_pieces
from kitae.compiled import register_train_pieces_resolver
from kitae.config import register_builtin_classes

__all__ = [
    "DQN",
    "DQNParams",
    "QLearningParams",
    "C51",
    "C51Params",
    "QRDQN",
    "QRDQNParams",
    "IQN",
    "IQNParams",
    "PPO",
    "PPOParams",
    "PQN",
    "PQNParams",
    "R2D2",
    "R2D2Params",
    "SAC",
    "SACParams",
    "TD3",
    "TD3Params",
    "DDPG",
    "DDPGParams",
    "AlphaZero",
    "AlphaZeroParams",
]


def __getattr__(name: str) -> Any:
    if name in ("AlphaZero", "AlphaZeroParams"):
        from kitae.algos import alphazero

        return getattr(alphazero, name)
    raise AttributeError(f"module 'kitae.algos' has no attribute {name!r}")


def _agent_classes() -> dict[str, type | str]:
    """Every name of :data:`__all__` with its class, or why it cannot be loaded."""
    found: dict[str, type | str] = {}
    for name in __all__:
        try:
            found[name] = getattr(sys.modules[__name__], name)
        except ImportError as error:  # an optional dependency (mctx for AlphaZero)
            found[name] = str(error)
    return found


register_builtin_classes(_agent_classes)
register_train_pieces_resolver(resolve_train_pieces)
