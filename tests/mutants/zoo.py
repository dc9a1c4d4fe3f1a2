"""Mutants of the tuned-defaults table (``kitae.zoo``) and its use by ``default_config`` and the
command line."""

from __future__ import annotations

import kitae.cli.runs as runs
import kitae.zoo as zoo
from kitae.base import BaseAgent
from mutants import mutant

ZOO_TESTS = "tests/test_zoo.py"


def _apply_entry(entry: zoo.Tuned, holder) -> None:
    for section in zoo.SECTIONS:
        setattr(holder, section, entry.apply(section, getattr(holder, section)))


@mutant("zoo-table-ignored", "default_config and kitae train ignore the table", [ZOO_TESTS])
def _(monkeypatch):
    monkeypatch.setattr(zoo, "find_tuned", lambda agent, env_id: None)


@mutant(
    "zoo-table-over-explicit-arguments",
    "default_config applies the table over the sections and n_env_steps it is given",
    [f"{ZOO_TESTS}::test_explicit_arguments_of_default_config_override_the_table"],
)
def _(monkeypatch):
    original = BaseAgent.default_config.__func__

    def default_config(cls, env, **kwargs):
        config = original(cls, env, **kwargs)
        entry = zoo.find_tuned(cls, config.env_cfg.task_name)
        if entry is not None:
            _apply_entry(entry, config)
        return config

    monkeypatch.setattr(BaseAgent, "default_config", classmethod(default_config))


@mutant(
    "zoo-table-over-flags",
    "kitae train applies the table over its flags and --config file",
    [
        f"{ZOO_TESTS}::test_command_line_defaults_of_a_pair_are_its_tuned_settings_under_files_and_flags"
    ],
)
def _(monkeypatch):
    original = runs.parse_spec

    def parse_spec(algo, args, **kwargs):
        algo, spec = original(algo, args, **kwargs)
        entry = zoo.find_tuned(algo, spec.env)
        if entry is not None:
            _apply_entry(entry, spec)
        return algo, spec

    monkeypatch.setattr(runs, "parse_spec", parse_spec)


@mutant(
    "zoo-subclass-inherits-entry",
    "a subclass of a tuned agent class (C51 of DQN, a user's class) gets its parent's entry",
    [f"{ZOO_TESTS}::test_default_config_applies_the_entry_of_its_own_class_and_env_only"],
)
def _(monkeypatch):
    def agent_name(agent_cls):
        paths = {f"{c.__module__}:{c.__qualname__}" for c in agent_cls.__mro__}
        return next((name for name, target in zoo.AGENTS.items() if target in paths), None)

    monkeypatch.setattr(zoo, "agent_name", agent_name)


@mutant(
    "zoo-cli-ignores-n-envs",
    "kitae train runs the agent's default number of envs instead of the entry's",
    [
        f"{ZOO_TESTS}::test_command_line_defaults_of_a_pair_are_its_tuned_settings_under_files_and_flags",
        f"{ZOO_TESTS}::test_kitae_train_writes_the_tuned_values_it_uses_to_config_yaml",
    ],
)
def _(monkeypatch):
    original = runs.default_spec

    def default_spec(name, env=None):
        spec = original(name, env)
        spec.n_envs = runs.agent_class(name).default_n_envs
        return spec

    monkeypatch.setattr(runs, "default_spec", default_spec)
