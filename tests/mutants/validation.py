"""Mutants of the config and command-line validation: each lets a bad value through, or checks it
only after the run directory was written."""

from __future__ import annotations

import yaml

import kitae.cli.commands as commands
import kitae.cli.runs as runs
import kitae.cli.sweep as sweep
import kitae.config as config
from mutants import mutant

HOSTILE = "tests/test_hostile_inputs.py"
FLOATS = f"{HOSTILE}::test_every_float_field_of_the_params_must_be_finite"
UPDATE_FLOATS = f"{HOSTILE}::test_every_float_field_of_the_update_config_must_be_finite"
STRUCTURAL = f"{HOSTILE}::test_structural_values_are_one_line_errors_naming_the_field"
CLI = f"{HOSTILE}::test_cli_refuses_with_one_line_before_writing"


def _skip(*args, **kwargs) -> None:
    del args, kwargs


@mutant(
    "config-floats-may-be-infinite",
    "float fields of the configs are not checked to be finite",
    [f"{FLOATS}[PPOParams]", f"{UPDATE_FLOATS}[inf]", f"{CLI}[lr-inf]"],
)
def _(monkeypatch):
    monkeypatch.setattr(config, "check_finite_floats", _skip)


@mutant(
    "config-field-types-unchecked",
    "config fields are not checked against their annotations",
    [
        f"{STRUCTURAL}[ppo-value-clip-str]",
        f"{STRUCTURAL}[ppo-loggers-list]",
        f"{STRUCTURAL}[r2d2-bool-str]",
        f"{HOSTILE}::test_a_misspelt_field_set_as_an_attribute_is_refused",
    ],
)
def _(monkeypatch):
    monkeypatch.setattr(config, "check_field_types", _skip)


@mutant(
    "config-layer-widths-unchecked",
    "hidden layer widths of 0 or below reach the networks",
    [f"{STRUCTURAL}[dqn-zero-width]", f"{CLI}[zero-width]"],
)
def _(monkeypatch):
    monkeypatch.setattr(config, "check_layer_sizes", _skip)


@mutant(
    "config-seed-unbounded",
    "a seed is only checked to be >= 0, so 2**63 reaches jax.random.PRNGKey",
    [f"{STRUCTURAL}[dqn-seed-2**63]", f"{CLI}[seed]"],
)
def _(monkeypatch):
    def check_seed(name, value):
        config.check_int(name, value, 0)

    monkeypatch.setattr(config, "check_seed", check_seed)
    monkeypatch.setattr(commands, "check_seed", check_seed)


@mutant(
    "cli-training-length-checked-after-writing",
    "kitae train learns that the run performs no update only once its directory is written",
    [f"{CLI}[10]"],
)
def _(monkeypatch):
    monkeypatch.setattr(commands, "check_trainable", _skip)


@mutant(
    "cli-multi-agent-length-checked-after-writing",
    "a multi-agent kitae train learns that a group performs no update only once it has written",
    [f"{HOSTILE}::test_cli_checks_a_multi_agent_run_before_writing"],
)
def _(monkeypatch):
    from kitae.multiagent.trainer import MultiAgentTrainer

    original = MultiAgentTrainer._check_updates

    def _check_updates(self, n_steps):
        if self.logger.run_dir is not None:  # only the check of train itself, after writing
            original(self, n_steps)

    monkeypatch.setattr(MultiAgentTrainer, "_check_updates", _check_updates)


@mutant(
    "cli-env-kind-unchecked",
    "kitae train builds AlphaZero on a gymnasium env and fails in train, after writing",
    [f"{CLI}[az-gym]"],
)
def _(monkeypatch):
    monkeypatch.setattr(commands, "check_env_kind", _skip)


@mutant(
    "cli-yaml-syntax-error-traceback",
    "a YAML syntax error in a config file escapes as a yaml exception",
    [f"{HOSTILE}::test_cli_names_the_file_and_line_of_a_yaml_syntax_error"],
)
def _(monkeypatch):
    def read_yaml(path):
        return yaml.safe_load(open(path).read())

    monkeypatch.setattr(runs, "read_yaml", read_yaml)


@mutant(
    "sweep-checked-after-writing",
    "kitae sweep creates its directory and wandb_sweep.yaml before checking its runs",
    [f"{HOSTILE}::test_an_invalid_sweep_writes_nothing[lr-inf]"],
)
def _(monkeypatch):
    monkeypatch.setattr(sweep, "check_sweep_runs", _skip)
