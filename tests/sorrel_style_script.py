"""A user script written the way Sorrel's tutorials and examples write one; only the imports
name kitae. ``tests/test_models_sorrel.py`` runs it as it is (with ``OUTPUT_DIR`` and ``EPOCHS``
set in its globals) and checks what it leaves behind.

A corridor of ``SIZE`` cells: the agent starts in cell 0 and is rewarded +1 for reaching the last
cell, which ends its episode and sends it back to cell 0; every other move costs 0.01.
"""

from pathlib import Path

import numpy as np

from kitae.models import Agent, BaseModel
from kitae.models import IQNModel as PyTorchIQN

OUTPUT_DIR = globals().get("OUTPUT_DIR", "./checkpoints")
EPOCHS = globals().get("EPOCHS", 6)
MAX_TURNS = 12
SIZE = 5
np.random.seed(0)


class RandomModel(BaseModel):
    """A model that never learns: Sorrel's signature, a random action."""

    def __init__(self, input_size, action_space, memory_size, epsilon=0.0):
        super().__init__(input_size, action_space, memory_size, epsilon)

    def take_action(self, state) -> int:
        return np.random.randint(0, self.action_space)


class Corridor:
    def __init__(self):
        self.position = 0
        self.total_reward = 0.0
        self.is_done = False

    def reset(self):
        self.position = 0
        self.total_reward = 0.0


class CorridorAgent(Agent):
    def __init__(self, model):
        super().__init__(model)

    def reset(self) -> None:
        self.model.reset()

    def pov(self, world) -> np.ndarray:
        image = np.zeros(SIZE, dtype=np.float32)
        image[world.position] = 1.0
        return image.reshape(1, -1)

    def get_action(self, state: np.ndarray) -> int:
        prev_states = self.model.memory.current_state()
        stacked_states = np.vstack((prev_states, state))
        model_input = stacked_states.reshape(1, -1)
        return self.model.take_action(model_input)

    def act(self, world, action: int) -> float:
        step = 1 if action == 1 else -1
        world.position = min(max(world.position + step, 0), SIZE - 1)
        if world.position == SIZE - 1:
            world.position = 0
            world.is_done = True
            return 1.0
        world.is_done = False
        return -0.01

    def is_done(self, world) -> bool:
        return world.is_done


# A model with Sorrel's base signature.
random_model = RandomModel(input_size=(SIZE,), action_space=2, memory_size=64, epsilon=0.5)
random_model.epsilon_decay(0.1)

IQN_ARGS = dict(
    input_size=(SIZE,),
    action_space=2,
    layer_size=32,
    epsilon=0.9,
    device="cpu",
    seed=12345678901234567890,
    n_frames=3,
    n_step=3,
    sync_freq=2,
    model_update_freq=4,
    batch_size=16,
    memory_size=256,
    LR=0.001,
    TAU=0.01,
    GAMMA=0.99,
    n_quantiles=8,
)

model = PyTorchIQN(**IQN_ARGS)
agent = CorridorAgent(model)
world = Corridor()

losses = []
rewards = []
for epoch in range(EPOCHS + 1):
    world.reset()
    agent.reset()
    agent.model.start_epoch_action(epoch=epoch)
    for _ in range(MAX_TURNS):
        agent.transition(world)
    agent.model.end_epoch_action(epoch=epoch)
    losses.append(float(agent.model.train_step()))
    rewards.append(world.total_reward)
    agent.model.epsilon_decay(0.1)
    if epoch % 3 == 0:
        agent.model.save(Path(OUTPUT_DIR) / f"{agent.model.model_name}_epoch{epoch}.safetensors")

print(f"{model.model_name}: losses {np.round(losses, 4)}, rewards {np.round(rewards, 2)}")

final_epsilon = agent.model.epsilon

# A fresh model with the same arguments picks the trained model's actions once loaded.
restored = PyTorchIQN(**{**IQN_ARGS, "epsilon": 0.0})
restored.load(Path(OUTPUT_DIR) / f"{model.model_name}_epoch{EPOCHS}.safetensors")
model.set_epsilon(0.0)
probe = np.random.default_rng(1).random((20, 1, 3 * SIZE)).astype(np.float32)
trained_actions = [model.take_action(x) for x in probe]
restored_actions = [restored.take_action(x) for x in probe]
trained_values = [model.state_value(x) for x in probe]
restored_values = [restored.state_value(x) for x in probe]
