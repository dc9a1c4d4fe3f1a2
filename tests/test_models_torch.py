"""Flax <-> PyTorch weight exchange through safetensors, and TorchModel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitae.models import FlaxModel, MemoryBatch
from kitae.models.weights import (
    dense_layer_paths,
    flax_to_torch_state_dict,
    load_flax_safetensors,
    load_torch_safetensors,
    save_flax_safetensors,
    save_torch_safetensors,
    torch_linear_names,
)
from kitae.modules.qvalue import QValue

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from kitae.models import TorchModel  # noqa: E402

OBS, N_FRAMES, ACTIONS, HIDDEN = 3, 2, 4, (16, 16)


def torch_qvalue() -> torch.nn.Module:
    """kitae's QValue (non-dueling) written in PyTorch."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(OBS * N_FRAMES, HIDDEN[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[1], ACTIONS),
    )


class DuelingTorch(torch.nn.Module):
    """kitae's dueling QValue in PyTorch: the layers are registered in the flax call order."""

    def __init__(self):
        super().__init__()
        self.torso = torch.nn.Sequential(torch.nn.Linear(OBS * N_FRAMES, 16), torch.nn.ReLU())
        self.value = torch.nn.Linear(16, 1)
        self.advantage = torch.nn.Linear(16, ACTIONS)

    def forward(self, x):
        h = self.torso(x)
        a = self.advantage(h)
        return self.value(h) + a - a.mean(-1, keepdim=True)


def flax_qvalue(dueling: bool = False, seed: int = 1):
    module = QValue(ACTIONS, (16,) if dueling else HIDDEN, dueling=dueling)
    example = jnp.zeros((1, OBS * N_FRAMES))
    return module, module.init(jax.random.PRNGKey(seed), example), example


def states(n: int = 512) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, OBS * N_FRAMES)).astype(np.float32)


def test_dense_layers_are_found_in_call_order():
    module, variables, example = flax_qvalue(dueling=True)
    assert dense_layer_paths(module, variables, example) == [
        ("MLP_0", "Dense_0"),
        ("Dense_0",),
        ("Dense_1",),
    ]


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_flax_weights_in_torch_give_identical_actions(tmp_path, dueling):
    module, variables, example = flax_qvalue(dueling)
    net = DuelingTorch() if dueling else torch_qvalue()
    path = tmp_path / "q.safetensors"
    save_flax_safetensors(path, module, variables, example, torch_linear_names(net))
    load_torch_safetensors(net, path)
    x = states()
    q_flax = np.asarray(module.apply(variables, x))
    with torch.no_grad():
        q_torch = net(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(q_torch, q_flax, rtol=1e-5, atol=1e-5)
    torch_model = TorchModel(net, (OBS,), ACTIONS, memory_size=8, n_frames=N_FRAMES)
    flax_model = FlaxModel(module, variables, (OBS,), ACTIONS, memory_size=8, n_frames=N_FRAMES)
    assert [torch_model.take_action(s) for s in x] == [flax_model.take_action(s) for s in x]


def test_torch_weights_in_flax_round_trip_exactly(tmp_path):
    net = torch_qvalue()
    module, template, example = flax_qvalue(seed=5)
    names = torch_linear_names(net)
    path = tmp_path / "torch.safetensors"
    save_torch_safetensors(net, path)
    variables = load_flax_safetensors(path, module, template, example, names)
    # back to torch names: bit-identical to the original state dict
    back = flax_to_torch_state_dict(module, variables, example, names)
    for name, tensor in net.state_dict().items():
        np.testing.assert_array_equal(back[name], tensor.numpy())
    x = states()
    with torch.no_grad():
        torch_actions = net(torch.as_tensor(x)).argmax(-1).numpy()
    np.testing.assert_array_equal(np.argmax(module.apply(variables, x), -1), torch_actions)


def test_mismatched_architectures_are_refused(tmp_path):
    module, variables, example = flax_qvalue(dueling=True)
    with pytest.raises(ValueError, match="Dense layers"):
        save_flax_safetensors(tmp_path / "x", module, variables, example, ["0", "2"])
    net = torch_qvalue()
    save_torch_safetensors(net, tmp_path / "t.safetensors")
    other, template, ex = flax_qvalue()
    wide = QValue(ACTIONS, (32, 16))
    wide_vars = wide.init(jax.random.PRNGKey(0), ex)
    with pytest.raises(ValueError, match="shape"):
        load_flax_safetensors(tmp_path / "t.safetensors", wide, wide_vars, ex, ["0", "2", "4"])
    del other, template


def test_torch_model_trains_with_its_train_fn():
    net = torch_qvalue()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def train_fn(module, batch: MemoryBatch) -> float:
        q = module(torch.as_tensor(batch.states))
        taken = q.gather(1, torch.as_tensor(batch.actions)[:, None])[:, 0]
        valid = torch.as_tensor(batch.valid)
        loss = ((taken - torch.as_tensor(batch.rewards)) ** 2 * valid).sum() / valid.sum().clamp(
            min=1
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    model = TorchModel(
        net, (OBS,), ACTIONS, memory_size=32, n_frames=N_FRAMES, train_fn=train_fn, batch_size=16
    )
    rng = np.random.default_rng(0)
    for t in range(20):
        obs = rng.normal(size=OBS)
        model.memory.add(obs, model.take_action(obs), 1.0, t % 4 == 3)
    losses = [model.train_step() for _ in range(30)]
    assert losses[-1] < losses[0]
    assert net.training  # acting switched to eval mode and back
