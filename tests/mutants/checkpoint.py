"""Mutants of the checkpoint defences (kitae.checkpoint, kitae.config.import_class): the
SHA-256 manifest, the class registry and the shape check before arrays are built."""

from __future__ import annotations

import importlib
from typing import Any

import kitae.checkpoint.restoring as restoring
import kitae.checkpoint.store as store
import kitae.config as config
from mutants import mutant

T = "tests/test_hostile_inputs.py::"


@mutant(
    "checkpoint-hash-not-verified",
    "checkpoint files are read without comparing their SHA-256 and size with the manifest's",
    [
        T + "test_flipped_bytes_are_refused_naming_the_file_and_the_previous_checkpoint",
        T + "test_truncated_missing_files_and_manifest_entries_are_refused",
    ],
)
def _(monkeypatch):
    def read_verified(checkpoint, name, meta):
        return (checkpoint / name).read_bytes()

    monkeypatch.setattr(store, "read_verified", read_verified)
    monkeypatch.setattr(restoring, "read_verified", read_verified)


@mutant(
    "checkpoint-class-registry-bypassed",
    "import_class imports the module a config names, then looks the class up in it",
    [T + "test_a_config_naming_a_foreign_class_is_refused_without_importing_it"],
)
def _(monkeypatch):
    def import_class(path: str, classes: Any = ()) -> type:
        module_name, _, qualname = path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import the class {path!r}: {error}") from error
        return obj

    monkeypatch.setattr(config, "import_class", import_class)


@mutant(
    "checkpoint-shape-check-removed",
    "arrays restored from a checkpoint are not compared with the agent's shapes and dtypes",
    [T + "test_a_crafted_array_shape_is_refused_naming_the_file_entry_and_both_shapes"],
)
def _(monkeypatch):
    monkeypatch.setattr(store, "_check_leaves", lambda template, restored, what, file=None: None)


@mutant(
    "checkpoint-config-array-size-unchecked",
    "a config file's arrays are built with whatever shape the file declares",
    [T + "test_a_config_array_with_a_crafted_shape_is_refused_before_allocation"],
)
def _(monkeypatch):
    monkeypatch.setattr(config, "MAX_CONFIG_ARRAY_SIZE", 2**40)
