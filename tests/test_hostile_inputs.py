"""Hostile inputs: every bad value is a one-line error naming what to fix, raised before anything
is built or written."""

from __future__ import annotations

import dataclasses
import math
import typing

import gymnasium as gym
import numpy as np
import pytest
import yaml

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
from kitae.cli import main
from kitae.config import (
    INFINITE_FLOAT_FIELDS,
    AlgoConfig,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    validate_config,
)

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
