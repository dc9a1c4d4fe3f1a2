"""The tuned-defaults table (``kitae.zoo``): ``Agent.default_config`` and ``kitae train`` apply
the entry of the agent class and env id, explicit arguments, flags and files override it, and
every entry is a valid config of its agent."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest
import yaml

from kitae import zoo
from kitae.algos import C51, DQN, DQNParams
from kitae.cli import main
from kitae.cli import runs as cli_runs
from kitae.config import TrainConfig, UpdateConfig, import_class, validate_config
from kitae.envs.make import make_vec_env

FAKE_ENV = "MountainCar-v0"
"""An env that the real table does not tune, for the tests of the mechanics."""

FAKE = zoo.Tuned(
    algo_params={"gamma": 0.5, "hidden_sizes": (7,)},
    update_cfg={"learning_rate": 0.125},
    train_cfg={"n_env_steps": 4321},
    n_envs=3,
    benchmark="test entry",
)


@pytest.fixture
def fake_entry(monkeypatch):
    """Puts :data:`FAKE` into the table for ``("dqn", FAKE_ENV)``."""
    assert ("dqn", FAKE_ENV) not in zoo.TUNED
    monkeypatch.setitem(zoo.TUNED, ("dqn", FAKE_ENV), FAKE)
    return FAKE


def _values(section) -> dict:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}


def test_the_table_names_the_agents_of_the_command_line():
    assert zoo.AGENTS == {name: a.agent_class for name, a in cli_runs.ALGORITHMS.items()}
    for name, env_id in zoo.TUNED:
        assert name in zoo.AGENTS and env_id in gym.registry, (name, env_id)


@pytest.mark.parametrize("key", sorted(zoo.TUNED), ids="-".join)
def test_every_entry_exists_on_its_agents_config_validates_and_is_applied(key):
    name, env_id = key
    entry, cls = zoo.TUNED[key], import_class(zoo.AGENTS[name])
    assert "benchmarks/learning.py" in entry.benchmark  # the measurement behind it
    assert "n_env_steps" in entry.train_cfg  # the budget it was measured with
    env = make_vec_env(env_id, entry.n_envs or cls.default_n_envs)
    config = cls.default_config(env)
    plain = cls.default_config(env, tuned=False)
    env.close()
    for section in zoo.SECTIONS:
        tuned, default = _values(getattr(config, section)), _values(getattr(plain, section))
        overrides = entry.overrides(section)
        assert set(overrides) <= set(tuned), (section, set(overrides) - set(tuned))
        assert tuned == {**default, **overrides}, section
    validate_config(config)
    cls.validate_config(cls.__new__(cls), config)  # the agent kind's own checks


def test_default_config_applies_the_entry_of_its_own_class_and_env_only(fake_entry):
    env = gym.make(FAKE_ENV)
    config = DQN.default_config(env)
    assert config.algo_params.gamma == 0.5 and config.algo_params.hidden_sizes == (7,)
    assert config.update_cfg.learning_rate == 0.125
    assert config.train_cfg.n_env_steps == 4321
    # Fields absent from the entry keep the agent's defaults.
    assert config.algo_params.tau == DQNParams().tau
    assert config.update_cfg.batch_size == DQN.default_update_cfg.batch_size
    assert config.train_cfg.log_frequency == TrainConfig().log_frequency

    class MyDQN(DQN):
        pass

    for untuned in (
        C51.default_config(env),  # a subclass of DQN with its own name
        MyDQN.default_config(env),  # a user's subclass
        DQN.default_config(gym.make("CartPole-v1")),  # another env
        DQN.default_config(env, tuned=False),
    ):
        assert untuned.algo_params.gamma == 0.99
        assert untuned.update_cfg.learning_rate != 0.125
        assert untuned.train_cfg.n_env_steps != 4321


def test_explicit_arguments_of_default_config_override_the_table(fake_entry):
    env = gym.make(FAKE_ENV)
    config = DQN.default_config(env, n_env_steps=99)
    assert config.train_cfg.n_env_steps == 99 and config.algo_params.gamma == 0.5
    config = DQN.default_config(env, algo_params=DQNParams(gamma=0.9))
    assert config.algo_params.gamma == 0.9 and config.algo_params.hidden_sizes == (64, 64)
    assert config.update_cfg.learning_rate == 0.125  # the sections not given stay tuned
    config = DQN.default_config(env, update_cfg=UpdateConfig(learning_rate=0.01))
    assert config.update_cfg.learning_rate == 0.01 and config.algo_params.gamma == 0.5
    config = DQN.default_config(env, train_cfg=TrainConfig(n_env_steps=77))
    assert config.train_cfg.n_env_steps == 77


def test_an_entry_naming_an_unknown_field_is_refused_naming_it(monkeypatch):
    bad = zoo.Tuned(algo_params={"gama": 0.9}, benchmark="test")
    with pytest.raises(ValueError, match="gama"):
        bad.apply("algo_params", DQNParams())
    monkeypatch.setitem(zoo.TUNED, ("dqn", FAKE_ENV), bad)
    with pytest.raises(ValueError, match=r"algo_params field\(s\) gama"):
        DQN.default_config(gym.make(FAKE_ENV))
    with pytest.raises(ValueError, match="section='env_cfg'"):
        bad.overrides("env_cfg")


def test_command_line_defaults_of_a_pair_are_its_tuned_settings_under_files_and_flags(
    fake_entry, tmp_path
):
    _, spec = cli_runs.parse_spec("dqn", ["--env", FAKE_ENV])
    assert spec.algo_params.gamma == 0.5 and tuple(spec.algo_params.hidden_sizes) == (7,)
    assert spec.update_cfg.learning_rate == 0.125 and spec.train_cfg.n_env_steps == 4321
    assert spec.n_envs == 3
    _, spec = cli_runs.parse_spec(
        "dqn", [f"--env={FAKE_ENV}", "--algo-params.gamma", "0.7", "--n-envs", "2"]
    )
    assert spec.algo_params.gamma == 0.7 and spec.n_envs == 2  # flags win
    assert spec.update_cfg.learning_rate == 0.125  # the rest stays tuned
    _, spec = cli_runs.parse_spec("dqn", [])  # the default env, CartPole-v1
    assert spec.algo_params.gamma == 0.99 and spec.update_cfg.learning_rate != 0.125

    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump({"algo": "dqn", "env": FAKE_ENV, "update_cfg": {"learning_rate": 0.25}})
    )
    _, spec = cli_runs.parse_spec(None, [], config_file=path)
    assert spec.update_cfg.learning_rate == 0.25  # the file wins over the table
    assert spec.algo_params.gamma == 0.5 and spec.n_envs == 3  # the table fills the rest
    _, spec = cli_runs.parse_spec(None, ["--update-cfg.learning-rate", "0.3"], config_file=path)
    assert spec.update_cfg.learning_rate == 0.3  # the flag wins over the file
    path.write_text(yaml.safe_dump({"algo": "dqn", "env": "CartPole-v1"}))
    _, spec = cli_runs.parse_spec(None, ["--env", FAKE_ENV], config_file=path)
    assert spec.env == FAKE_ENV and spec.algo_params.gamma == 0.5  # the env of the flag


class _Stop(Exception):
    """Raised instead of training."""


def test_kitae_train_writes_the_tuned_values_it_uses_to_config_yaml(tmp_cwd, monkeypatch):
    def stop(self, *args, **kwargs):
        raise _Stop

    monkeypatch.setattr(DQN, "train", stop)
    entry = zoo.TUNED[("dqn", "Acrobot-v1")]
    flag = ["--update-cfg.learning-rate", "0.002"]
    with pytest.raises(_Stop):
        main(["train", "dqn", "--env", "Acrobot-v1", "--run-name", "t", "--quiet", *flag])
    spec = yaml.safe_load((tmp_cwd / "runs" / "t" / "config.yaml").read_text())
    agent_config = json.loads((tmp_cwd / "runs" / "t" / "config.json").read_text())
    assert spec["env"] == "Acrobot-v1" and spec["n_envs"] == entry.n_envs
    assert agent_config["env_cfg"]["n_envs"] == entry.n_envs
    for section in zoo.SECTIONS:
        expected = entry.overrides(section)
        if section == "update_cfg":
            expected["learning_rate"] = 0.002  # the flag wins
        for name, value in expected.items():
            value = list(value) if isinstance(value, tuple) else value
            assert spec[section][name] == value, (section, name)
            assert agent_config[section][name] == value, (section, name)
