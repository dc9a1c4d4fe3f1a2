"""Hostile or careless inputs: files and values crafted or damaged on purpose must give one clear
error naming what is wrong, before anything runs, is allocated or is written."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import sys
import tracemalloc
import typing
import warnings

import gymnasium as gym
import msgpack
import numpy as np
import pytest
import yaml
from envs import corridor, make_vec
from helpers import (
    DQN_PARAMS,
    DQN_UPDATE,
    assert_trees_equal,
    rewrite_checkpoint_file,
    small_config,
)

from kitae import checkpoint
from kitae.algos import (
    DQN,
    PPO,
    C51Params,
    DQNParams,
    IQNParams,
    PPOParams,
    PQNParams,
    QRDQNParams,
    R2D2Params,
    SACParams,
    TD3Params,
)
from kitae.algos.alphazero import AlphaZeroParams
from kitae.checkpoint import CheckpointError
from kitae.cli import main
from kitae.cli.runs import ALGORITHMS, agent_class
from kitae.config import (
    INFINITE_FLOAT_FIELDS,
    AlgoConfig,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    config_from_json,
    config_to_json,
    import_class,
    validate_config,
)

# ---- Checkpoint files ----------------------------------------------------------------------------


def checkpoint_config(**params):
    """The tiny DQN config of these tests (the one tests/test_checkpoint.py compiles)."""
    env = make_vec(lambda: corridor(), 2)
    return small_config(
        DQNParams, env, params={**DQN_PARAMS, **params}, update=DQN_UPDATE, n_env_steps=200
    )


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A DQN run with checkpoints at 20 and 40 transitions (with its replay buffer), and an
    agent of the same config to restore into."""
    root = tmp_path_factory.mktemp("hostile")
    env = make_vec(lambda: corridor(), 2)
    agent = DQN("run", checkpoint_config(), run_dir=root)
    agent.train(env, 20)
    agent.save()
    agent.train(env, 20)
    agent.save()
    return agent, root / "run", DQN("restoring", checkpoint_config())


@pytest.fixture
def run_copy(two_checkpoints, tmp_path):
    """A copy of the run to damage: ``(saved agent, run dir, newest checkpoint, agent)``."""
    agent, run, restoring = two_checkpoints
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return agent, copy, copy / "checkpoints" / "step_000000040", restoring


MARKER_MODULE = "kitae_hostile_marker"


def test_a_config_naming_a_foreign_class_is_refused_without_importing_it(
    tmp_path, monkeypatch, run_copy
):
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{MARKER_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nclass X:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MARKER_MODULE, raising=False)
    saved = config_to_json(checkpoint_config())
    for name in (
        f"{MARKER_MODULE}:X",
        "os:system",
        "kitae.algos.dqn:np.ndarray",
        "subprocess:Popen",
    ):
        crafted = json.loads(json.dumps(saved))
        crafted["fields"]["algo_params"]["class"] = name
        with pytest.raises(ValueError, match=rf"'{name}' is not a class kitae knows"):
            config_from_json(crafted)
    # the same through a checkpoint whose manifest was rewritten to match
    _, run, newest, _ = run_copy
    crafted["fields"]["algo_params"]["class"] = f"{MARKER_MODULE}:X"
    rewrite_checkpoint_file(newest, "config.json", json.dumps(crafted).encode())
    with pytest.raises(ValueError, match=r"config\.json: .*kitae_hostile_marker:X' is not a class"):
        DQN.resume(run)
    with pytest.raises(ValueError, match="not a class kitae knows"):
        import_class(f"{MARKER_MODULE}:X")
    assert not marker.exists()
    assert MARKER_MODULE not in sys.modules


def test_kitae_agents_resolve_and_custom_agents_restore_when_given_or_registered(
    two_checkpoints, tmp_path, monkeypatch
):
    for name in ALGORITHMS:  # the command line's algorithms (AlphaZero needs mctx)
        if name != "alphazero" or importlib.util.find_spec("mctx") is not None:
            assert agent_class(name).__name__ == ALGORITHMS[name].agent_class.split(":")[1]
    assert import_class("kitae.algos.dqn:DQNParams") is DQNParams

    @dataclasses.dataclass
    class WiderParams(DQNParams):
        width_note: int = 3

    class Custom(DQN):
        params_type = WiderParams

    monkeypatch.setattr("kitae.config._REGISTERED", {})
    config = dataclasses.replace(
        checkpoint_config(), algo_params=WiderParams(**DQN_PARAMS, width_note=5)
    )
    agent = Custom("custom", config)
    path = agent.save(tmp_path)
    with pytest.raises(ValueError, match=r"WiderParams' is not a class kitae knows"):
        checkpoint.read_config(path)
    assert checkpoint.read_config(path, classes=[Custom]).algo_params.width_note == 5
    resumed = Custom.resume(path)  # the class restoring it brings its params type
    assert type(resumed.config.algo_params) is WiderParams
    assert_trees_equal(resumed.state.params, agent.state.params)
    assert checkpoint.register_agent_class(Custom) is Custom
    assert checkpoint.read_config(path).algo_params == config.algo_params
    with pytest.raises(TypeError, match="an agent class"):
        checkpoint.register_agent_class(WiderParams)


def _craft_kernel(data: bytes, shape: tuple[int, ...], buffer: bytes | None = None) -> bytes:
    """``data`` (a msgpack state file) with its first kernel declaring ``shape`` (and holding
    ``buffer`` instead of its data when given)."""
    tree = msgpack.unpackb(data, raw=False, strict_map_key=False)

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "kernel" and isinstance(value, msgpack.ExtType):
                    _, dtype, old = msgpack.unpackb(value.data, raw=True)
                    node[key] = msgpack.ExtType(
                        1, msgpack.packb([list(shape), dtype, old if buffer is None else buffer])
                    )
                    return True
                if walk(value):
                    return True
        return False

    assert walk(tree)
    return msgpack.packb(tree)


def test_a_crafted_array_shape_is_refused_naming_the_file_entry_and_both_shapes(run_copy):
    _, run, newest, restoring = run_copy
    state = (newest / "state.msgpack").read_bytes()
    # a header declaring 149 GiB over 80 bytes of data: refused before any array is built
    rewrite_checkpoint_file(newest, "state.msgpack", _craft_kernel(state, (100_000, 100_000, 4)))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"state\.msgpack: the entry .*'kernel'\] "):
            restoring.restore(run)
        assert tracemalloc.get_traced_memory()[1] < 64 * 2**20
    finally:
        tracemalloc.stop()
    # a consistent array of another shape: compared with the agent's before it is built
    wider = np.zeros((5, 64), np.float32).tobytes()
    rewrite_checkpoint_file(newest, "state.msgpack", _craft_kernel(state, (5, 64), wider))
    with pytest.raises(
        ValueError,
        match=r"state\.msgpack: .*'kernel'\]: checkpoint \(5, 64\) float32, agent \(\d+, \d+\)",
    ):
        restoring.restore(run)
    params = (newest / "params.msgpack").read_bytes()
    rewrite_checkpoint_file(newest, "params.msgpack", _craft_kernel(params, (5, 64), wider))
    with pytest.raises(ValueError, match=r"params\.msgpack: .*checkpoint \(5, 64\)"):
        DQN.load_for_inference(run)


def test_a_config_array_with_a_crafted_shape_is_refused_before_allocation():
    saved = config_to_json(checkpoint_config())
    low = saved["fields"]["env_cfg"]["fields"]["observation_space"]["low"]
    low.update(shape=[2**14, 2**14], dtype="uint8", fill=0)  # 256 MiB, over the limit
    low.pop("data", None)
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError, match=r"env_cfg\.observation_space\.low declares the shape \(16384, 16384\)"
        ):
            config_from_json(saved)
        assert tracemalloc.get_traced_memory()[1] < 64 * 2**20
    finally:
        tracemalloc.stop()
    low.update(shape=[2], dtype="(100000,100000)f4")  # a dtype that hides a shape
    with pytest.raises(ValueError, match=r"observation_space\.low declares the dtype"):
        config_from_json(saved)


def test_another_network_or_algorithm_is_one_error_naming_the_file_and_entry(run_copy):
    _, run, newest, _ = run_copy
    narrower = DQN("narrower", checkpoint_config(hidden_sizes=(32, 32)))
    with pytest.raises(
        ValueError, match=r"config\.json: .*algo_params\.hidden_sizes: checkpoint \(16,\)"
    ):
        narrower.restore(run)
    with pytest.raises(ValueError, match=r"step_000000040 was written by a kitae\.algos\.dqn:DQN"):
        PPO.resume(run)


@pytest.mark.parametrize(
    "name",
    ["params.msgpack", "state.msgpack", "loop.msgpack", "buffer.msgpack", "config.json"],
)
def test_flipped_bytes_are_refused_naming_the_file_and_the_previous_checkpoint(run_copy, name):
    agent, run, newest, restoring = run_copy
    data = bytearray((newest / name).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    (newest / name).write_bytes(bytes(data))
    damaged = rf"{name} is damaged: its SHA-256 differs.*previous checkpoint is step_000000020"
    with pytest.raises(CheckpointError, match=damaged):
        restoring.restore(run)
    if name in ("params.msgpack", "config.json"):
        with pytest.raises(CheckpointError, match=damaged):
            checkpoint.load_params(run) if name == "params.msgpack" else checkpoint.read_config(run)
    # the previous checkpoint named in the message loads
    restoring.restore(run / "checkpoints" / "step_000000020")
    assert restoring.env_steps == 20


def test_truncated_missing_files_and_manifest_entries_are_refused(run_copy):
    _, run, newest, restoring = run_copy
    state = (newest / "state.msgpack").read_bytes()
    (newest / "state.msgpack").write_bytes(state[:-7])
    with pytest.raises(CheckpointError, match=rf"state\.msgpack is truncated: {len(state) - 7} "):
        restoring.restore(run)
    (newest / "state.msgpack").write_bytes(state)
    (newest / "loop.msgpack").unlink()
    with pytest.raises(CheckpointError, match=r"loop\.msgpack is missing.*step_000000020"):
        restoring.restore(run)
    first = run / "checkpoints" / "step_000000020"
    meta = json.loads((first / "meta.json").read_text())
    for key in ("sha256", "env_steps", "files"):
        broken = {k: v for k, v in meta.items() if k != key}
        (first / "meta.json").write_text(json.dumps(broken))
        with pytest.raises(
            CheckpointError, match=rf"meta\.json lacks .*'{key}'.*No earlier checkpoint"
        ):
            restoring.restore(first)
    meta["files"] = [*meta["files"], "../../outside.msgpack"]
    (first / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match=r"meta\.json lacks or has malformed entries \['files'"
    ):
        restoring.restore(first)


def test_a_checkpoint_from_before_hashes_loads_with_a_warning(run_copy):
    agent, run, newest, restoring = run_copy
    meta = json.loads((newest / "meta.json").read_text())
    meta["format"] = 1
    del meta["sha256"], meta["bytes"]
    (newest / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="written before checkpoints held SHA-256.*unverified"):
        restoring.restore(run)
    assert_trees_equal(restoring.state, agent.state)
    assert restoring.env_steps == 40
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restoring.restore(run / "checkpoints" / "step_000000020")  # hashed: verified, silent
    assert not [w for w in caught if "SHA-256" in str(w.message)]


# Config and CLI values -----------------------------------------------------------------------

DISCRETE = EnvConfig(
    "CartPole-v1", gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Discrete(2), n_envs=2
)
CONTINUOUS = EnvConfig(
    "Pendulum-v1", gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,))
)
PARAMS = {
    DQNParams: DISCRETE,
    C51Params: DISCRETE,
    QRDQNParams: DISCRETE,
    IQNParams: DISCRETE,
    R2D2Params: DISCRETE,
    PPOParams: DISCRETE,
    PQNParams: DISCRETE,
    SACParams: CONTINUOUS,
    TD3Params: CONTINUOUS,
    AlphaZeroParams: DISCRETE,
}


def _config(params, *, seed=0, update=None, train=None) -> AlgoConfig:
    return AlgoConfig(
        seed=seed,
        algo_params=params,
        update_cfg=update if update is not None else UpdateConfig(),
        train_cfg=train if train is not None else TrainConfig(progress_bar=False),
        env_cfg=dataclasses.replace(PARAMS[type(params)]),
    )


def _float_fields(obj) -> list[str]:
    """The fields of ``obj`` annotated ``float`` or ``float | None``."""
    hints = typing.get_type_hints(type(obj))
    return [
        f.name
        for f in dataclasses.fields(obj)
        if hints[f.name] is float or float in typing.get_args(hints[f.name])
    ]


def _refused(config: AlgoConfig, message: str, error: type = ValueError) -> str:
    with pytest.raises(error) as info:
        validate_config(config)
    text = str(info.value)
    assert message in text and "\n" not in text, text
    return text


@pytest.mark.parametrize("params_type", list(PARAMS), ids=lambda t: t.__name__)
def test_every_float_field_of_the_params_must_be_finite(params_type):
    params = params_type()
    names = _float_fields(params)
    assert names  # gamma at least
    for name in names:
        for bad in (math.inf, -math.inf, math.nan):
            path = f"algo_params.{name}"
            if bad == math.inf and path in INFINITE_FLOAT_FIELDS:
                continue
            config = _config(dataclasses.replace(params, **{name: bad}))
            _refused(config, f"{path}={bad!r} is invalid: it must be a finite number")


@pytest.mark.parametrize("bad", [math.inf, math.nan], ids=["inf", "nan"])
def test_every_float_field_of_the_update_config_must_be_finite(bad):
    # max_grad_norm=None disables clipping, so inf is refused there too
    assert _float_fields(UpdateConfig()) == ["learning_rate", "max_grad_norm"]
    for name in _float_fields(UpdateConfig()):
        config = _config(PPOParams(), update=UpdateConfig(**{name: bad}))
        _refused(config, f"update_cfg.{name}={bad!r} is invalid: it must be a finite number")


def test_infinite_clipping_is_the_documented_exception():
    assert set(INFINITE_FLOAT_FIELDS) == {
        "algo_params.clip_observations",
        "algo_params.clip_rewards",
    }
    validate_config(_config(PPOParams(clip_observations=math.inf, clip_rewards=math.inf)))
    _refused(
        _config(PPOParams(clip_rewards=math.nan)),
        "algo_params.clip_rewards=nan is invalid: it must be a finite number or +inf",
    )


# (case id, params, other config parts, the message's start); each raised a traceback (or was
# accepted) before the config's validation caught it.
STRUCTURAL = [
    ("dqn-zero-width", DQNParams(hidden_sizes=(0,)), {}, "algo_params.hidden_sizes=(0,)"),
    ("ppo-negative-width", PPOParams(hidden_sizes=(-3,)), {}, "algo_params.hidden_sizes=(-3,)"),
    ("pqn-zero-width", PQNParams(hidden_sizes=(64, 0)), {}, "algo_params.hidden_sizes=(64, 0)"),
    ("alphazero-zero-width", AlphaZeroParams(hidden_sizes=(0,)), {}, "algo_params.hidden_sizes"),
    (
        "iqn-head-width",
        IQNParams(head_hidden_sizes=(0,)),
        {},
        "algo_params.head_hidden_sizes=(0,)",
    ),
    ("sac-width-str", SACParams(hidden_sizes="64"), {}, "algo_params.hidden_sizes='64'"),
    ("td3-width-none", TD3Params(hidden_sizes=None), {}, "algo_params.hidden_sizes=None"),
    (
        "ppo-value-clip-str",
        PPOParams(value_clip_eps="0.2"),
        {},
        "algo_params.value_clip_eps='0.2' is invalid: it must be of type float | None",
    ),
    ("c51-atoms-str", C51Params(n_atoms="51"), {}, "algo_params.n_atoms='51'"),
    ("qrdqn-gamma-str", QRDQNParams(gamma="0.99"), {}, "algo_params.gamma='0.99'"),
    ("r2d2-bool-str", R2D2Params(double_q="no"), {}, "algo_params.double_q='no'"),
    (
        "dqn-seed-2**63",
        DQNParams(),
        {"seed": 2**63},
        "seed=9223372036854775808 is invalid: it must be in [0, 2**62)",
    ),
    ("ppo-seed-negative", PPOParams(), {"seed": -1}, "seed=-1 is invalid"),
    (
        "sac-learning-rate-str",
        SACParams(),
        {"update": UpdateConfig(learning_rate="3e-4")},
        "update_cfg.learning_rate='3e-4' is invalid: it must be of type float, got str",
    ),
    (
        "ppo-loggers-list",
        PPOParams(),
        {"train": TrainConfig(loggers=["jsonl"])},
        "train_cfg.loggers=['jsonl'] is invalid: it must be of type tuple[str, ...] (a tuple",
    ),
    (
        "dqn-shared-encoder-str",
        DQNParams(),
        {"update": UpdateConfig(shared_encoder="yes")},
        "update_cfg.shared_encoder='yes'",
    ),
]


@pytest.mark.parametrize(
    "params,parts,message", [c[1:] for c in STRUCTURAL], ids=[c[0] for c in STRUCTURAL]
)
def test_structural_values_are_one_line_errors_naming_the_field(params, parts, message):
    _refused(_config(params, **parts), message)


def test_a_misspelt_field_set_as_an_attribute_is_refused():
    params = DQNParams()
    params.learnig_rate = 1e-3  # not a field: it would have no effect
    _refused(_config(params), "algo_params.learnig_rate is not a field of DQNParams")


def test_a_dict_for_a_config_section_is_a_type_error_naming_it():
    config = _config(DQNParams())
    config.update_cfg = {"learning_rate": 1e-3}
    _refused(config, "update_cfg must be a kitae.config.UpdateConfig instance, got dict", TypeError)
    config = _config(DQNParams())
    config.algo_params = {"gamma": 0.99}
    _refused(config, "algo_params must be the agent's params dataclass instance", TypeError)


@pytest.mark.parametrize(
    "cls,params",
    [(DQN, DQNParams(hidden_sizes=(0,))), (PPO, PPOParams(hidden_sizes=(-3,)))],
    ids=["dqn", "ppo"],
)
def test_building_an_agent_refuses_a_zero_width_layer_before_any_jax_error(cls, params):
    with pytest.raises(ValueError, match=r"algo_params.hidden_sizes=\(-?\d,\) is invalid"):
        cls("bad", _config(params))


def _cli_refuses(argv: list[str], capsys, message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["dqn", "--algo-params.hidden-sizes", "0"], "algo_params.hidden_sizes=(0,) is invalid"),
        (["dqn", "--algo-params.hidden-sizes", "64", "-1"], "algo_params.hidden_sizes=(64, -1)"),
        (["dqn", "--seed", str(2**63)], "seed=9223372036854775808 is invalid"),
        (["dqn", "--update-cfg.learning-rate", "inf"], "update_cfg.learning_rate=inf is invalid"),
        (["ppo", "--algo-params.entropy-coef", "nan"], "algo_params.entropy_coef=nan is invalid"),
        (["dqn", "--env", "Blackjack-v1"], "env_cfg.observation_space=Tuple("),
        (["alphazero", "--env", "CartPole-v1"], "env='CartPole-v1' is not a JAX env"),
        (["dqn", "--train-cfg.n-env-steps", "10"], "would perform zero updates"),
    ],
    ids=["zero-width", "negative-width", "seed", "lr-inf", "coef-nan", "tuple-obs", "az-gym", "10"],
)
def test_cli_refuses_with_one_line_before_writing(tmp_cwd, capsys, args, message):
    _cli_refuses(["train", *args, "--quiet"], capsys, message)
    assert not (tmp_cwd / "runs").exists()


def test_cli_checks_a_multi_agent_run_before_writing(tmp_cwd, capsys):
    pytest.importorskip("mpe2")
    argv = ["train", "dqn", "--env", "pettingzoo:mpe2.simple_spread_v3", "--quiet"]
    _cli_refuses([*argv, "--train-cfg.n-env-steps", "5"], capsys, "would perform zero updates")
    assert not (tmp_cwd / "runs").exists()


def test_cli_names_the_file_and_line_of_a_yaml_syntax_error(tmp_cwd, capsys):
    path = tmp_cwd / "spec.yaml"
    path.write_text("algo: dqn\nseed: 1: 2\n")
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(path.read_text())
    _cli_refuses(["train", "--config", "spec.yaml"], capsys, "spec.yaml:2: invalid YAML:")
    assert sorted(p.name for p in tmp_cwd.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--param", "update_cfg.learning_rate=1e-3,inf"],
            "member learning_rate=inf seed 0: update_cfg.learning_rate=inf is invalid",
        ),
        (["--param", "algo_params.gamma=0.9,0.99"], "would perform zero updates"),
    ],
    ids=["lr-inf", "zero-updates"],
)
def test_an_invalid_sweep_writes_nothing(tmp_cwd, capsys, args, message):
    argv = ["sweep", "dqn", *args, "--seeds", "1", "--train-cfg.n-env-steps", "10", "--quiet"]
    _cli_refuses(argv, capsys, message)
    assert not (tmp_cwd / "runs").exists()
