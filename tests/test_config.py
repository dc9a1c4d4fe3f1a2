"""Tests for kitae.config: validate_config, and the warning about update_cfg fields that an
agent never reads."""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings
from dataclasses import dataclass

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitae.base import OffPolicyAgent
from kitae.config import (
    AlgoConfig,
    AlgoParams,
    EnvConfig,
    TrainConfig,
    UpdateConfig,
    config_to_json,
    recording_update_reads,
    unread_update_fields,
    validate_config,
)
from kitae.envs.make import make_vec_env
from kitae.modules.optimizer import make_optimizer
from kitae.modules.train_state import TrainState


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


# ---- update_cfg fields that an agent never reads -------------------------------------------


def tiny_q_state(tx) -> TrainState:
    params = {"q": jnp.zeros((3, 2))}
    return TrainState.create(
        apply_fn=lambda p, obs: obs @ p["q"], params=params, target_params=params, tx=tx
    )


def sgd_train_state_factory(key, config, *, preprocess_fn=None, tabulate=False):
    """Honours only ``update_cfg.learning_rate`` (plain SGD)."""
    del key, preprocess_fn, tabulate
    return tiny_q_state(optax.sgd(config.update_cfg.learning_rate))


def full_train_state_factory(key, config, *, preprocess_fn=None, tabulate=False):
    """Honours the optimizer fields through ``make_optimizer``."""
    del key, preprocess_fn, tabulate
    return tiny_q_state(make_optimizer(config.update_cfg, 100))


def greedy_explore_factory(config):
    del config

    def explore_fn(state, key, observations, exploration=0.0):
        del key, exploration
        q = state.apply_fn(state.params, observations)
        return jnp.argmax(q, axis=-1), jnp.zeros(q.shape[0])

    return explore_fn


def passthrough_factory(config):
    del config
    return lambda state, key, experience: experience


def no_update_factory(config):
    del config
    return lambda state, key, batch: (state, {})


class TinyAgent(OffPolicyAgent):
    """An off-policy agent whose optimizer is plain SGD: it ignores the optimizer settings
    other than the learning rate."""

    factories = (
        sgd_train_state_factory,
        greedy_explore_factory,
        passthrough_factory,
        no_update_factory,
    )

    def explore(self, observation):
        return self.explore_fn(self.acting_state, self.interact_keys(observation), observation)

    def select_action(self, observation):
        return self.explore(observation)


def agent_config(**update) -> AlgoConfig:
    """A config for :class:`TinyAgent`; ``update`` overrides :class:`UpdateConfig` fields."""
    update_cfg = UpdateConfig(**{"max_buffer_size": 64, "batch_size": 8, **update})
    return dataclasses.replace(make_config(), update_cfg=update_cfg)


def unread_warnings(build) -> list[warnings.WarningMessage]:
    """The 'ignores update_cfg fields' warnings raised while ``build()`` runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [w for w in caught if "ignores update_cfg fields" in str(w.message)]


def test_building_an_agent_warns_about_update_fields_it_never_reads():
    config = agent_config(
        learning_rate=1e-2,
        learning_rate_annealing=True,
        max_grad_norm=1.0,
        shared_encoder=True,
        n_epochs=3,
    )
    caught = unread_warnings(lambda: TinyAgent("tiny", config))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "TinyAgent ignores update_cfg fields set away from their defaults: "
        "learning_rate_annealing=True, max_grad_norm=1.0, shared_encoder=True."
    )
    assert "learning_rate=" not in message  # read by its SGD optimizer
    assert "n_epochs" not in message and "batch_size" not in message  # the loop's
    assert caught[0].category is UserWarning
    assert caught[0].filename == __file__  # it points at the code that built the agent


def test_no_warning_when_the_factories_read_the_fields_or_they_are_defaults():
    config = agent_config(learning_rate_annealing=True, max_grad_norm=1.0, learning_rate=1e-2)
    honouring = (full_train_state_factory, *TinyAgent.factories[1:])
    assert unread_warnings(lambda: TinyAgent("full", config, *honouring)) == []
    assert unread_warnings(lambda: TinyAgent("defaults", agent_config(learning_rate=1e-2))) == []


def test_the_recording_copy_never_leaks_into_the_stored_config():
    captured = {}

    def capturing_factory(key, config, *, preprocess_fn=None, tabulate=False):
        captured["update_cfg"] = config.update_cfg
        return sgd_train_state_factory(key, config)

    config = agent_config(learning_rate=1e-2)
    original = config.update_cfg
    agent = TinyAgent("capture", config, capturing_factory)

    assert type(captured["update_cfg"]) is not UpdateConfig  # the factories saw the recorder
    assert captured["update_cfg"] == original
    assert agent.config.update_cfg is original and type(original) is UpdateConfig
    assert config_to_json(agent.config)["fields"]["update_cfg"]["class"] == (
        "kitae.config:UpdateConfig"
    )
    assert pickle.loads(pickle.dumps(agent.config)).update_cfg == original

    def failing_factory(key, config, *, preprocess_fn=None, tabulate=False):
        raise RuntimeError("factory failed")

    with pytest.raises(RuntimeError, match="factory failed"):
        TinyAgent("fails", config, failing_factory)
    assert config.update_cfg is original


def test_recording_update_reads_sees_reads_inside_the_block_only():
    config = agent_config(learning_rate=1e-2)
    original = config.update_cfg
    _ = original.max_grad_norm  # outside: not recorded
    with recording_update_reads(config) as reads:
        view = config.update_cfg
        assert isinstance(view, UpdateConfig) and view == original and view is not original
        assert view.learning_rate == 1e-2 and view.batch_size == 8
        assert dataclasses.replace(view, n_epochs=2).n_epochs == 2
        assert "UpdateConfig(learning_rate=0.01" in repr(view)
    assert config.update_cfg is original
    # dataclasses.replace and repr read every field
    assert reads == {f.name for f in dataclasses.fields(UpdateConfig)}

    with recording_update_reads(config) as reads:
        _ = config.update_cfg.learning_rate_annealing
    assert reads == {"learning_rate_annealing"}


@dataclass
class ExtendedUpdateConfig(UpdateConfig):
    schedule: list = dataclasses.field(default_factory=list)
    required_extra: int = 0


def test_unread_update_fields_compares_with_each_field_default():
    u = ExtendedUpdateConfig(learning_rate=1e-2, max_grad_norm=None, schedule=[1], n_epochs=2)
    # learning_rate and schedule differ from their defaults; max_grad_norm is its default
    assert unread_update_fields(u, set()) == ["learning_rate", "n_epochs", "schedule"]
    assert unread_update_fields(u, {"learning_rate", "schedule"}) == ["n_epochs"]
    assert unread_update_fields(ExtendedUpdateConfig(), set()) == []


BUILT_IN_AGENTS = [
    ("DQN", "CartPole-v1"),
    ("C51", "CartPole-v1"),
    ("QRDQN", "CartPole-v1"),
    ("IQN", "CartPole-v1"),
    ("R2D2", "CartPole-v1"),
    ("PPO", "CartPole-v1"),
    ("PPO", "Pendulum-v1"),
    ("SAC", "Pendulum-v1"),
    ("SAC", "CartPole-v1"),
    ("TD3", "Pendulum-v1"),
    ("DDPG", "Pendulum-v1"),
    ("AlphaZero", "Catch-bsuite"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, env_id", BUILT_IN_AGENTS, ids=[" ".join(a) for a in BUILT_IN_AGENTS]
)
def test_built_in_agents_read_every_update_field_they_are_given(name, env_id):
    """No built-in agent warns: neither with its default update settings nor with every field
    moved away from its default (shared_encoder only for PPO, the one agent that has it)."""
    import kitae.algos as algos
    from kitae.compiled import config_for_jax_env
    from kitae.envs.jax_env import make_jax_env

    agent_cls = getattr(algos, name)
    train_cfg = TrainConfig(n_env_steps=2_000, progress_bar=False, loggers=())
    if env_id == "Catch-bsuite":
        config = agent_cls.default_config(gym.make("CartPole-v1"), train_cfg=train_cfg)
        config = config_for_jax_env(config, make_jax_env(env_id), n_envs=4)
    else:
        config = agent_cls.default_config(gym.make(env_id), train_cfg=train_cfg)
    assert unread_warnings(lambda: agent_cls("defaults", config)) == []

    u = config.update_cfg
    config.update_cfg = UpdateConfig(
        learning_rate=u.learning_rate * 0.5,
        learning_rate_annealing=True,
        max_grad_norm=2.0,
        max_buffer_size=256,
        batch_size=32,
        n_epochs=2,
        shared_encoder=name == "PPO",
        frame_stack_replay="auto" if name in ON_POLICY else False,
        frame_stack_axis=0 if name in ON_POLICY else 1,
    )
    assert all(getattr(config.update_cfg, f.name) != f.default for f in fields_set_for(name))
    assert unread_warnings(lambda: agent_cls("overrides", config)) == []


ON_POLICY = ("PPO", "AlphaZero")
"""The agents without a replay buffer (the frame_stack_* fields are the replay's)."""


def fields_set_for(name: str) -> list[dataclasses.Field]:
    """The UpdateConfig fields the overrides above move away from their defaults."""
    replay = ("frame_stack_replay", "frame_stack_axis")
    return [
        f
        for f in dataclasses.fields(UpdateConfig)
        if (f.name != "shared_encoder" or name == "PPO")
        and (f.name not in replay or name not in ON_POLICY)
    ]
