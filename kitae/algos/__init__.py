"""Built-in agents, each written with the four factories."""

from kitae.algos.dqn import DQN, DQNParams
from kitae.algos.ppo import PPO, PPOParams

__all__ = ["DQN", "DQNParams", "PPO", "PPOParams"]
