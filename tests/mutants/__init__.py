"""Mutants: deliberate bugs the test suite must catch.

Each :class:`Mutant` names a bug (a monkeypatch of kitae's code), and the test node ids that must
fail when it is applied. ``tests/test_mutations.py`` runs those tests in a subprocess with the
environment variable ``KITAE_MUTANT`` set to the mutant's name; ``tests/conftest.py`` then
applies the patch before any test runs. A mutant whose tests still pass is a hole in the suite.

Mutants are declared in the area modules of this package (``tests/mutants/<area>.py``) with the
:func:`mutant` decorator; :func:`load_all` imports every module of the package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Mutant:
    """A deliberate bug.

    Attributes:
        name: unique id (the value of ``KITAE_MUTANT``).
        description: the bug, in one line.
        tests: pytest node ids, relative to the repository root, of which at least one must fail.
        apply: patches kitae through the given ``MonkeyPatch`` (attributes must exist:
            ``monkeypatch.setattr`` raises otherwise, so a renamed target is noticed).
        requires: optional modules its tests need (they skip without them, so the mutant
            cannot be killed there and ``tests/test_mutations.py`` skips it instead).
    """

    name: str
    description: str
    tests: tuple[str, ...]
    apply: Callable[[pytest.MonkeyPatch], None]
    requires: tuple[str, ...] = ()


REGISTRY: dict[str, Mutant] = {}


def mutant(
    name: str,
    description: str,
    tests: tuple[str, ...] | list[str],
    requires: tuple[str, ...] = (),
):
    """Registers the decorated ``apply(monkeypatch)`` function as :class:`Mutant` ``name``."""

    def register(apply: Callable[[pytest.MonkeyPatch], None]) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"mutant {name!r} is declared twice")
        if not tests:
            raise ValueError(f"mutant {name!r} names no test")
        REGISTRY[name] = Mutant(name, description, tuple(tests), apply, tuple(requires))
        return apply

    return register


def load_all() -> dict[str, Mutant]:
    """Imports every area module and returns the registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
