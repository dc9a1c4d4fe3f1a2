"""Tests for kitae.config.validate_config."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

from kitae.config import (
    AlgoConfig,
    AlgoParams,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    validate_config,
)
from kitae.envs.make import make_vec_env


@dataclass
class OffPolicyParams(AlgoParams):
    gamma: float = 0.99
    skip_steps: int = 4
    start_step: int = -1
    exploration: float = 0.1


@dataclass
class OnPolicyParams:
    gamma: float = 0.99
    gae_lambda: float = 0.95
    ent_coef: float = 0.01


def make_config(algo_params=None, **overrides) -> AlgoConfig:
    """A valid config; ``overrides`` are ``"section.field": value`` replacements."""
    config = AlgoConfig(
        seed=0,
        algo_params=OffPolicyParams() if algo_params is None else algo_params,
        update_cfg=UpdateConfig(),
        train_cfg=TrainConfig(),
        env_cfg=EnvConfig(
            "Toy-v0",
            gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
            gym.spaces.Discrete(2),
        ),
    )
    for path, value in overrides.items():
        section, name = path.split(".")
        setattr(getattr(config, section), name, value)
    return config


@pytest.mark.parametrize(
    "algo_params",
    [OffPolicyParams(), OnPolicyParams(), None],
    ids=["off-policy-params", "on-policy-params", "default-params"],
)
def test_validate_config_accepts_valid_config(algo_params):
    validate_config(make_config(algo_params))


def test_validate_config_accepts_boundary_values():
    validate_config(
        make_config(
            OffPolicyParams(gamma=1.0, start_step=-1, skip_steps=1, exploration=0.0),
            **{
                "train_cfg.save_frequency": -1,
                "update_cfg.max_grad_norm": None,
                "update_cfg.batch_size": 1,
                "env_cfg.n_envs": 1,
            },
        )
    )
    validate_config(make_config(OffPolicyParams(gamma=0.0, start_step=0)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("update_cfg.learning_rate", 0.0),
        ("update_cfg.learning_rate", -1e-3),
        ("update_cfg.batch_size", 0),
        ("update_cfg.batch_size", 2.5),
        ("update_cfg.n_epochs", 0),
        ("update_cfg.max_buffer_size", 0),
        ("update_cfg.max_grad_norm", 0.0),
        ("train_cfg.n_env_steps", 0),
        ("train_cfg.save_frequency", 0),
        ("train_cfg.log_frequency", 0),
        ("env_cfg.n_envs", 0),
        ("env_cfg.n_envs", True),
        ("env_cfg.observation_space", (3,)),
        ("seed", -1),
    ],
    ids=[
        "learning_rate-zero",
        "learning_rate-negative",
        "batch_size-zero",
        "batch_size-float",
        "n_epochs-zero",
        "max_buffer_size-zero",
        "max_grad_norm-zero",
        "n_env_steps-zero",
        "save_frequency-zero",
        "log_frequency-zero",
        "n_envs-zero",
        "n_envs-bool",
        "observation_space-not-a-space",
        "seed-negative",
    ],
)
def test_validate_config_rejects_invalid_generic_field(field, value):
    if "." in field:
        config = make_config(**{field: value})
    else:
        config = dataclasses.replace(make_config(), **{field: value})
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_config(config)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (OffPolicyParams(gamma=1.5), "algo_params.gamma"),
        (OffPolicyParams(gamma=-0.1), "algo_params.gamma"),
        (OffPolicyParams(skip_steps=0), "algo_params.skip_steps"),
        (OffPolicyParams(start_step=-2), "algo_params.start_step"),
        (OffPolicyParams(exploration=1.5), "algo_params.exploration"),
        (OnPolicyParams(gae_lambda=1.2), "algo_params.gae_lambda"),
        (OnPolicyParams(ent_coef=-0.5), "algo_params.ent_coef"),
    ],
    ids=[
        "gamma-above-one",
        "gamma-negative",
        "skip_steps-zero",
        "start_step-minus-two",
        "exploration-above-one",
        "gae_lambda-above-one",
        "coef-negative",
    ],
)
def test_validate_config_rejects_invalid_algo_param(params, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_config(make_config(params))


def test_validate_config_error_message_names_value():
    with pytest.raises(ValueError, match=r"skip_steps=0 is invalid: it must be >= 1"):
        validate_config(make_config(OffPolicyParams(skip_steps=0)))


def test_validate_config_calls_params_validate_hook():
    calls = []

    @dataclass
    class HookedParams:
        gamma: float = 0.9

        def validate(self, config):
            calls.append(config)
            if config.update_cfg.batch_size > 32:
                raise ValueError("batch_size too large for HookedParams")

    config = make_config(HookedParams(), **{"update_cfg.batch_size": 16})
    validate_config(config)
    assert calls == [config]

    with pytest.raises(ValueError, match="too large for HookedParams"):
        validate_config(make_config(HookedParams(), **{"update_cfg.batch_size": 64}))


def test_validate_config_checks_generic_fields_before_params_hook():
    @dataclass
    class ExplodingParams:
        def validate(self, config):
            raise AssertionError("hook must not run on an invalid config")

    with pytest.raises(ValueError, match="learning_rate"):
        validate_config(make_config(ExplodingParams(), **{"update_cfg.learning_rate": 0.0}))


def test_validate_config_rejects_non_config():
    with pytest.raises(TypeError, match="AlgoConfig"):
        validate_config({"seed": 0})


def test_env_config_of_a_vector_env_names_its_task():
    env = make_vec_env("CartPole-v1", 2)
    try:
        assert EnvConfig.from_env(env).task_name == "CartPole-v1"
        assert EnvConfig.from_env(env, task_name="mine").task_name == "mine"
    finally:
        env.close()
