"""Code written for Sorrel's model interface runs on kitae.models unchanged: the base signature
and members, the memory's Sorrel API and ``valid`` rule, the flat arguments of the IQN and DDQN
models, save/load, the human player and the agent's transition; and a Sorrel-style user script
runs as it is (``tests/sorrel_style_script.py``)."""

from __future__ import annotations

import dataclasses
import io
import runpy
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import trees_equal

from kitae.algos.dqn import DQNParams
from kitae.algos.iqn import IQNParams
from kitae.models import (
    Agent,
    AgentModel,
    BaseModel,
    DDQNModel,
    FlaxModel,
    FrameStackMemory,
    HumanModel,
    HumanPlayer,
    IQNModel,
    QModelParams,
    QuitGame,
    scripted_keys,
)
from kitae.models.human import render_text
from kitae.models.q_models import resolve_device
from kitae.modules.qvalue import QValue

SCRIPT = Path(__file__).resolve().parent / "sorrel_style_script.py"


class FirstAction(BaseModel):
    def take_action(self, state) -> int:
        del state
        return 0


class SorrelSignature(BaseModel):
    """A subclass written for Sorrel: its own __init__ with Sorrel's signature."""

    def __init__(self, input_size, action_space, memory_size, epsilon=0.0):
        super().__init__(input_size, action_space, memory_size, epsilon)

    def take_action(self, state) -> int:
        del state
        return self.action_space - 1


# ---- BaseModel ----------------------------------------------------------------------------
def test_sorrel_positional_signature_fourth_argument_is_epsilon():
    model = FirstAction((2, 3), 4, 16, 0.25)
    assert model.epsilon == 0.25 and model.n_frames == 1
    assert model.input_size == (2, 3) and model.obs_shape == (2, 3)
    assert model.action_space == 4 and model.n_actions == 4
    assert model.memory_size == 16 and model.memory.capacity == 16
    assert model.stacked_size == 6
    model = SorrelSignature(input_size=5, action_space=3, memory_size=10, epsilon=0.1)
    assert model.input_size == 5 and model.obs_shape == (5,) and model.epsilon == 0.1
    assert model.take_action(np.zeros(5)) == 2


def test_kitae_keywords_still_work_and_n_frames_is_keyword_only():
    model = FirstAction(obs_shape=(3,), n_actions=2, memory_size=8, n_frames=2, seed=0)
    assert model.obs_shape == (3,) and model.input_size == (3,) and model.n_frames == 2
    assert model.epsilon == 0.0 and model.stacked_size == 6
    with pytest.raises(TypeError):
        FirstAction((3,), 2, 8, 0.0, 2)  # n_frames is never positional
    # the old positional n_frames lands in epsilon: refused with the rule in the message
    with pytest.raises(ValueError, match="fourth positional argument is epsilon.*n_frames"):
        FirstAction((3,), 2, 8, 2)


def test_n_frames_is_keyword_only_in_every_model():
    """No model reads a positional n_frames any more: the old calls fail loudly."""
    module = QValue(3, (8,))
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    with pytest.raises(TypeError):
        FlaxModel(module, variables, (2,), 3, 8, 2)
    assert FlaxModel(module, variables, (2,), 3, 8, n_frames=2).stacked_size == 4
    agent = DDQNModel((4,), 2, QModelParams(memory_size=16, batch_size=4)).agent
    with pytest.raises(TypeError):
        AgentModel(agent, (4,), 16, 1)
    assert AgentModel(agent, (2,), 16, n_frames=2).n_frames == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_size": (3,), "obs_shape": (3,), "action_space": 2}, "input_size and obs_shape"),
        ({"input_size": (3,), "action_space": 2, "n_actions": 2}, "action_space and n_actions"),
        ({"action_space": 2}, "missing argument: input_size"),
        ({"obs_shape": (3,)}, "missing argument: action_space"),
    ],
    ids=["shape-twice", "actions-twice", "no-shape", "no-actions"],
)
def test_mixing_or_missing_names_is_a_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        FirstAction(**kwargs)


def test_input_size_is_assignable_and_n_actions_follows_action_space():
    model = FirstAction((3,), 2, 8)
    model.input_size = [3]
    assert model.input_size == [3] and model.obs_shape == (3,)
    model.action_space = 5
    assert model.n_actions == 5
    model.n_actions = 3
    assert model.action_space == 3


def test_epsilon_decay_reset_model_name_and_state_value():
    model = FirstAction((3,), 2, 8, 0.5, n_frames=2)
    model.epsilon_decay(0.1)
    assert model.epsilon == pytest.approx(0.45)
    model.epsilon_decay(0.5)
    assert model.epsilon == pytest.approx(0.225)
    with pytest.raises(ValueError, match="decay_rate"):
        model.epsilon_decay(1.5)
    assert model.model_name == "FirstAction"
    assert SorrelSignature((2,), 2, 4).model_name == "SorrelSignature"
    with pytest.raises(NotImplementedError, match="FirstAction"):
        model.state_value(np.zeros(3))
    model.memory.add(np.ones(3), 0, 0.0, False)
    np.testing.assert_array_equal(model.memory.current_state(), [[1, 1, 1]])
    model.reset()  # a new episode: the previous frames are no longer stacked
    np.testing.assert_array_equal(model.memory.current_state(), [[0, 0, 0]])


def test_a_model_without_weights_saves_and_loads_an_empty_file(tmp_path):
    path = tmp_path / "nested" / "random.safetensors"
    FirstAction((3,), 2, 8).save(path)  # the folder is created, as Sorrel's save does
    assert path.is_file()
    FirstAction((3,), 2, 8).load(path)
    with pytest.raises(ValueError, match="not written by SorrelSignature"):
        SorrelSignature((3,), 2, 8).load(path)


# ---- the memory ---------------------------------------------------------------------------
def frames(*values: float) -> np.ndarray:
    return np.array([[v, -v] for v in values], np.float32)


def test_current_state_without_argument_is_sorrels_previous_frames():
    memory = FrameStackMemory(8, (2,), n_frames=3)
    np.testing.assert_array_equal(memory.current_state(), np.zeros((2, 2)))  # nothing yet
    memory.add(frames(1)[0], 0, 0.0, False)
    np.testing.assert_array_equal(memory.current_state(), frames(0, 1))
    memory.add(frames(2)[0], 0, 0.0, False)
    np.testing.assert_array_equal(memory.current_state(), frames(1, 2))
    memory.add(frames(3)[0], 0, 0.0, False)
    previous = memory.current_state()
    assert previous.shape == (2, 2) and previous.dtype == np.float32
    np.testing.assert_array_equal(previous, frames(2, 3))
    # stacked with a new observation, it is kitae's stack of that observation
    new = frames(4)[0]
    np.testing.assert_array_equal(
        np.concatenate([previous, new[None]]).reshape(-1), memory.current_state(new)
    )
    memory.add_empty()  # Sorrel's episode boundary: the next stacks hold no old frame
    np.testing.assert_array_equal(memory.current_state(), np.zeros((2, 2)))
    memory.add(frames(5)[0], 0, 0.0, True)  # terminates: again no previous frame
    np.testing.assert_array_equal(memory.current_state(), np.zeros((2, 2)))
    assert FrameStackMemory(4, (2, 3)).current_state().shape == (0, 2, 3)


def test_idx_size_and_add_empty():
    memory = FrameStackMemory(4, (1,), n_frames=2)
    assert (memory.idx, memory.size) == (0, 0)
    for t in range(3):
        memory.add(np.array([t + 1.0]), 0, 0.0, False)
    assert (memory.idx, memory.size) == (3, 3)
    memory.add_empty()  # unlike Sorrel's, no slot is used for padding
    assert (memory.idx, memory.size) == (3, 3)
    memory.add(np.array([9.0]), 0, 0.0, False)
    memory.add(np.array([10.0]), 0, 0.0, False)
    assert (memory.idx, memory.size) == (1, 4)
    # the first step after add_empty is zero-padded, never stacked on the old episode's frame
    batch = memory.gather(np.array([3, 4]))
    np.testing.assert_array_equal(batch.states, [[0.0, 9.0], [9.0, 10.0]])


def boundary_memory(valid_rule: str) -> FrameStackMemory:
    """Three episodes, steps t = 0..7 (frame t + 1): 0-2 terminated at 2, 3-5 ended by
    ``add_empty`` (no done), 6-7 terminated at 7."""
    memory = FrameStackMemory(20, (1,), n_frames=3, valid_rule=valid_rule)
    dones = [False, False, True, False, False, False, False, True]
    for t, done in enumerate(dones):
        if t == 6:
            memory.add_empty()
        memory.add(np.array([t + 1.0]), t, 0.0, done)
    return memory


def test_valid_rules_on_a_hand_built_buffer():
    times = np.arange(8)
    # kitae: a transition of one episode; 5 ended without done and its next step is episode 3
    transition = boundary_memory("transition").gather(times)
    assert transition.valid.tolist() == [1, 1, 1, 1, 1, 0, 1, 1]
    # Sorrel: no done among the stack's two earlier steps; 3 and 4 reach back over done_2
    boundary = boundary_memory("episode_boundary").gather(times)
    assert boundary.valid.tolist() == [1, 1, 1, 0, 0, 1, 1, 1]
    # Sorrel's own formula on the same dones, for the steps it can sample (t >= n_frames - 1)
    dones = np.array([0, 0, 1, 0, 0, 0, 0, 1], np.float32)
    sorrel = [1.0 - np.any(dones[t - 2 : t]) for t in range(2, 8)]
    assert boundary.valid[2:].tolist() == sorrel
    # the stacks themselves do not depend on the rule: zero-padded at episode starts
    np.testing.assert_array_equal(boundary.states, transition.states)
    np.testing.assert_array_equal(boundary.states[3], [0, 0, 4])
    with pytest.raises(ValueError, match="valid_rule"):
        FrameStackMemory(8, (1,), valid_rule="sorrel")


def test_episode_boundary_rule_reaches_the_models_memory():
    model = FirstAction((1,), 2, 20, n_frames=3, valid_rule="episode_boundary")
    assert model.memory.valid_rule == "episode_boundary"
    params = QModelParams(n_frames=3, memory_size=20, valid_rule="episode_boundary")
    assert DDQNModel((1,), 2, params).memory.valid_rule == "episode_boundary"
    with pytest.raises(ValueError, match="params.valid_rule"):
        DDQNModel((1,), 2, dataclasses.replace(params, valid_rule="x"))


# ---- Sorrel's arguments of the pre-built models --------------------------------------------
SORREL_IQN = dict(
    input_size=(4,),
    action_space=3,
    layer_size=16,
    epsilon=0.3,
    device="cpu",
    seed=2**64 - 7,
    n_frames=2,
    n_step=3,
    sync_freq=5,
    model_update_freq=4,
    batch_size=8,
    memory_size=64,
    LR=0.0025,
    TAU=0.02,
    GAMMA=0.9,
    n_quantiles=6,
)


def test_iqn_maps_sorrels_flat_arguments():
    model = IQNModel(**SORREL_IQN)
    p, a = model.params, model.agent.config.algo_params
    assert isinstance(a, IQNParams)
    assert (p.memory_size, p.n_frames, p.batch_size, p.learning_rate) == (64, 2, 8, 0.0025)
    assert p.epsilon == 0.3 and model.epsilon == 0.3
    assert p.seed == (2**64 - 7) % 2**31
    assert p.n_updates == 1 and p.max_grad_norm == 1.0
    assert a.gamma == pytest.approx(0.9**3)  # Sorrel bootstraps with GAMMA ** n_step
    assert a.n_step == 1 and a.tau == 0.02 and a.target_update_period == 1 and a.double_q
    assert a.hidden_sizes == (16,) and a.head_hidden_sizes == (16,)
    assert (a.n_tau_samples, a.n_tau_prime_samples, a.n_quantile_samples) == (6, 6, 6)
    assert model.sync_freq == 5 and model.model_update_freq == 4
    assert model.device == jax.devices("cpu")[0]
    assert model.agent.config.env_cfg.observation_space.shape == (8,)
    # the same in Sorrel's positional order
    values = list(SORREL_IQN.values())
    positional = IQNModel(*values)
    assert positional.params == p and positional.agent.config.algo_params == a


def test_ddqn_maps_sorrels_arguments_and_lowercase_aliases():
    model = DDQNModel((3,), 2, layer_size=8, lr=0.01, gamma=0.5, n_step=1, TAU=0.1, seed=3)
    a = model.agent.config.algo_params
    assert isinstance(a, DQNParams) and a.double_q
    assert a.gamma == 0.5 and a.tau == 0.1 and a.hidden_sizes == (8,)
    assert model.params.learning_rate == 0.01 and model.params.seed == 3
    assert model.params.memory_size == 1024 and model.sync_freq == 200  # Sorrel's defaults
    with pytest.raises(TypeError, match="lr and LR"):
        DDQNModel((3,), 2, lr=0.01, LR=0.02)


@pytest.mark.parametrize(
    "cls, kwargs, error, match",
    [
        (IQNModel, {"layer_sise": 8}, TypeError, "unknown keyword argument.*layer_sise"),
        (DDQNModel, {"n_quantiles": 8}, TypeError, "unknown keyword argument.*n_quantiles"),
        (IQNModel, {"params": QModelParams(), "LR": 0.1}, TypeError, "not both"),
        (IQNModel, {"algo_params": IQNParams(), "layer_size": 8}, TypeError, "not both"),
        (IQNModel, {"device": "banana"}, ValueError, "device='banana' is invalid"),
        (IQNModel, {"sync_freq": 0}, ValueError, "sync_freq"),
        (IQNModel, {"layer_size": 0}, ValueError, "layer_size"),
        (IQNModel, {"GAMMA": 1.5}, ValueError, "GAMMA"),
        (DDQNModel, {"LR": -1.0}, ValueError, "params.learning_rate"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_sorrel_arguments_are_checked(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls((3,), 2, **kwargs)


def test_kitae_and_sorrel_positional_forms_are_told_apart():
    params = QModelParams(memory_size=32, batch_size=4)
    model = DDQNModel((3,), 2, params, DQNParams(hidden_sizes=(8,)))
    assert model.params is params and model.sync_freq is None
    with pytest.raises(TypeError, match="params is given both"):
        DDQNModel((3,), 2, params, params=params)
    with pytest.raises(TypeError, match="input_size and obs_shape"):
        DDQNModel((3,), 2, obs_shape=(3,))


def test_device_names():
    cpu = jax.devices("cpu")[0]
    assert resolve_device("cpu") == cpu and resolve_device(cpu) is cpu
    assert resolve_device(None) is None
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        with pytest.raises(ValueError, match="no gpu device"):
            resolve_device("cuda:0")


def fill(model: BaseModel, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(steps):
        model.memory.add(rng.normal(size=model.obs_shape), int(rng.integers(2)), 1.0, t % 7 == 6)


def test_sync_freq_copies_the_target_network_at_the_right_epochs():
    model = IQNModel(**{**SORREL_IQN, "TAU": 0.5, "action_space": 2})
    fill(model, 30)
    model.train_step()
    state = model.agent.state
    assert not trees_equal(state.params, state.target_params)  # Polyak moved half-way
    model.start_epoch_action(epoch=3)  # 3 % 5 != 0: no sync
    assert not trees_equal(model.agent.state.params, model.agent.state.target_params)
    model.start_epoch_action(epoch=10)
    assert trees_equal(model.agent.state.params, model.agent.state.target_params)
    kitae_model = IQNModel((4,), 2, QModelParams(n_frames=2, memory_size=64, batch_size=8))
    fill(kitae_model, 30)
    kitae_model.train_step()
    kitae_model.start_epoch_action(epoch=0)  # no Sorrel sync_freq: nothing copied
    state = kitae_model.agent.state
    assert not trees_equal(state.params, state.target_params)


# ---- save / load ---------------------------------------------------------------------------
def probe_states(model: BaseModel, n: int = 32) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(n, model.stacked_size)).astype(np.float32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DDQNModel((4,), 3, QModelParams(n_frames=2, memory_size=64, batch_size=8)),
        lambda: IQNModel(**SORREL_IQN),
    ],
    ids=["ddqn", "iqn-sorrel"],
)
def test_q_models_round_trip_through_save_and_load(tmp_path, make):
    trained = make()
    trained.set_epsilon(0.0)
    fill(trained, 40)
    for _ in range(5):
        trained.train_step()
    path = tmp_path / "model.safetensors"
    trained.save(path)
    restored = make()
    restored.set_epsilon(0.0)
    assert not trees_equal(restored.agent.state.params, trained.agent.state.params)
    restored.load(path)
    assert trees_equal(restored.agent.state.params, trained.agent.state.params)
    assert trees_equal(restored.agent.state.target_params, trained.agent.state.target_params)
    assert trees_equal(restored.agent.state.opt_state, trained.agent.state.opt_state)
    states = probe_states(trained)
    assert [restored.take_action(s) for s in states] == [trained.take_action(s) for s in states]
    assert [restored.state_value(s) for s in states] == [trained.state_value(s) for s in states]
    # training goes on from the loaded state as from the saved one
    assert int(restored.agent.state.step) == int(trained.agent.state.step) == 5


def test_loading_a_different_architecture_is_refused(tmp_path):
    path = tmp_path / "ddqn.safetensors"
    DDQNModel((4,), 3, layer_size=8).save(path)
    with pytest.raises(ValueError, match="shape"):
        DDQNModel((4,), 3, layer_size=16).load(path)
    with pytest.raises(ValueError, match="not written by IQNModel"):
        IQNModel((4,), 3, layer_size=8).load(path)


def test_flax_model_round_trip(tmp_path):
    module = QValue(3, (8,))
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    other = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))
    model = FlaxModel(module, variables, (2,), 3, 8, n_frames=2)
    path = tmp_path / "flax.safetensors"
    model.save(path)
    restored = FlaxModel(module, other, (2,), 3, 8, n_frames=2)
    states = probe_states(model, 64)
    assert [restored.take_action(s) for s in states] != [model.take_action(s) for s in states]
    restored.load(path)
    assert trees_equal(restored.variables, variables)
    assert [restored.take_action(s) for s in states] == [model.take_action(s) for s in states]
    q = np.asarray(module.apply(variables, states[:1]))[0]
    assert model.state_value(states[0]) == pytest.approx(float(q.max()))
    with pytest.raises(ValueError, match="missing"):
        dense = nn.Dense(3)
        FlaxModel(dense, dense.init(jax.random.PRNGKey(0), jnp.zeros((1, 4))), (4,), 3).load(path)


def test_torch_model_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    from kitae.models import TorchModel

    def net(seed: int):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    model = TorchModel(net(0), (4,), 3)
    path = tmp_path / "torch.safetensors"
    model.save(path)
    restored = TorchModel(net(1), (4,), 3)
    states = probe_states(model, 64)
    assert [restored.take_action(s) for s in states] != [model.take_action(s) for s in states]
    restored.load(path)
    assert [restored.take_action(s) for s in states] == [model.take_action(s) for s in states]
    wide = TorchModel(torch.nn.Sequential(torch.nn.Linear(4, 3)), (4,), 3)
    with pytest.raises(ValueError, match="do not match"):
        wide.load(path)


# ---- the human player ----------------------------------------------------------------------
def test_human_player_has_sorrels_signature_and_quit():
    out = io.StringIO()
    keys = scripted_keys(["d", "2", "quit"])
    player = HumanPlayer((3, 3), 4, 1, False, input_fn=keys, output=out)
    assert player.input_size == (3, 3) and player.action_space == 4
    assert isinstance(player, HumanModel) and not player.show_state
    grid = np.zeros((3, 3))
    assert [player.take_action(grid), player.take_action(grid)] == [3, 2]
    with pytest.raises(KeyboardInterrupt):
        player.take_action(grid)
    assert player.quit and out.getvalue() == ""  # show=False: nothing rendered
    shown = io.StringIO()
    grid = np.array([[0, 2, 0], [0, 0, 3], [1, 0, 0]])
    HumanPlayer((3, 3), 4, 4, input_fn=scripted_keys(["w"]), output=shown).take_action(grid)
    assert shown.getvalue() == render_text(grid) + "\n"  # show=True: the grid as text


def test_human_model_quits_with_quit_word_or_q():
    model = HumanModel((3,), 4, input_fn=scripted_keys(["quit"]))
    with pytest.raises(KeyboardInterrupt):
        model.take_action(np.zeros(3))
    model = HumanModel((3,), 4, input_fn=scripted_keys(["q"]), render="none")
    with pytest.raises(QuitGame):
        model.take_action(np.zeros(3))


# ---- the agent's transition ----------------------------------------------------------------
class Line:
    """Cells 0..3; reaching 3 pays 1 and ends the episode (the walker goes back to 0)."""

    def __init__(self):
        self.position, self.total_reward, self.done = 0, 0.0, False


class Walker(Agent):
    def pov(self, world: Line) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[world.position]

    def act(self, world: Line, action: int) -> float:
        world.position = min(world.position + 1, 3) if action == 1 else max(world.position - 1, 0)
        world.done = world.position == 3
        if world.done:
            world.position = 0
            return 1.0
        return -0.1

    def is_done(self, world: Line) -> bool:
        return world.done


class AlwaysRight(BaseModel):
    def take_action(self, state) -> int:
        self.seen = np.asarray(state)
        return 1


def test_transition_observes_acts_and_stores_the_step():
    model = AlwaysRight((4,), 2, 16, n_frames=2)
    walker, world = Walker(model), Line()
    results = [walker.transition(world) for _ in range(4)]
    assert results == [(-0.1, False), (-0.1, False), (1.0, True), (-0.1, False)]
    assert world.total_reward == pytest.approx(0.7)
    batch = model.memory.gather(np.arange(3))
    np.testing.assert_array_equal(batch.states[:, 4:], np.eye(4)[[0, 1, 2]])  # pov frames
    assert batch.actions.tolist() == [1, 1, 1] and batch.dones.tolist() == [0, 0, 1]
    np.testing.assert_allclose(batch.rewards, [-0.1, -0.1, 1.0])
    np.testing.assert_array_equal(model.seen, np.eye(4)[0])  # default get_action: the pov
    walker.reset()  # resets the model: a new episode in its memory
    np.testing.assert_array_equal(model.memory.current_state(), np.zeros((1, 4)))


# ---- a Sorrel user's script ----------------------------------------------------------------
def test_a_sorrel_style_script_runs_unchanged(tmp_path, capsys):
    epochs = 6
    ns = runpy.run_path(str(SCRIPT), init_globals={"OUTPUT_DIR": str(tmp_path), "EPOCHS": epochs})
    model, random_model = ns["model"], ns["random_model"]
    assert random_model.epsilon == pytest.approx(0.45) and random_model.n_frames == 1
    # epsilon 0.9, decayed by 10% after each of the epochs 0..EPOCHS
    assert ns["final_epsilon"] == pytest.approx(0.9 * 0.9 ** (epochs + 1))
    assert ns["agent"].model is model
    losses = ns["losses"]
    assert losses[0] == 0.0  # 12 steps, batch 16: nothing to train on after the first epoch
    assert all(np.isfinite(losses)) and all(loss > 0 for loss in losses[1:])
    assert model.agent.n_updates == epochs
    # 12 turns per epoch, one transition each, in a memory of 256
    assert model.memory.size == 12 * (epochs + 1) and model.memory.idx == 12 * (epochs + 1)
    rewards = ns["rewards"]
    assert len(rewards) == epochs + 1
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == [f"IQNModel_epoch{e}.safetensors" for e in (0, 3, 6)]
    assert ns["restored_actions"] == ns["trained_actions"]
    assert ns["restored_values"] == ns["trained_values"]
    assert "IQNModel: losses" in capsys.readouterr().out
