"""Renders the Sphinx roles of kitae's docstrings (``:func:`make_train```) for mkdocstrings.

A griffe extension: once the package is loaded, every docstring's roles become cross-references
(``[`make_train`][kitae.compiled.make_train]``) where the target is a documented public object of
the package, resolved as Sphinx does (the enclosing class, then the module, then the full path),
and inline code otherwise (external names, private or undocumented objects), so that no role
leaves a broken reference in a strict build. ``~`` keeps only the last component as the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|const):`(~?)([^`]+)`")
"""A Sphinx role: group 1 is ``~`` or empty, group 2 the target."""


def _lookup(collection: Any, path: str) -> griffe.Object | None:
    """The object at dotted ``path`` in ``collection`` (aliases followed), or ``None``."""
    try:
        found = collection[path]
        return found.final_target if isinstance(found, griffe.Alias) else found
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _is_documented(obj: griffe.Object, package: str) -> bool:
    """Whether the API reference renders ``obj``: public, in ``package``, with a docstring."""
    parts = obj.path.split(".")
    if parts[0] != package or any(p.startswith("_") and not p.startswith("__") for p in parts):
        return False
    return obj.is_module or bool(obj.docstring and obj.docstring.value.strip())


def resolve(obj: griffe.Object, target: str, collection: Any, package: str) -> str | None:
    """The path of the documented object that ``target`` names in ``obj``'s docstring.

    Args:
        obj: the object whose docstring holds the role.
        target: the role's target (``make_train``, ``Metrics.done``, ``kitae.zoo.TUNED``).
        collection: the loader's modules collection.
        package: the documented package's name.

    Returns:
        The full path, or ``None`` when nothing documented has that name.
    """
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj if (obj.is_class or obj.is_module) else obj.parent
    while scope is not None:
        scopes.append(scope)
        scope = scope.parent
    candidates = [f"{s.path}.{target}" for s in scopes] + [target]
    for path in candidates:
        found = _lookup(collection, path)
        if found is not None and _is_documented(found, package):
            return found.path
    return None


def render_roles(text: str, obj: griffe.Object, collection: Any, package: str) -> str:
    """``text`` with each Sphinx role replaced by a cross-reference or inline code."""

    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        label = target.rsplit(".", 1)[-1] if short else target
        path = resolve(obj, target.rstrip("()"), collection, package)
        return f"[`{label}`][{path}]" if path else f"`{label}`"

    return ROLE.sub(replace, text)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not isinstance(member, griffe.Alias):
            yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of a loaded package's docstrings (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrites every docstring of ``pkg`` once it is completely loaded."""
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = render_roles(
                    obj.docstring.value, obj, loader.modules_collection, pkg.name
                )

    def on_package_loaded(
        self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any
    ) -> None:
        """The same, under the name of the hook in griffe 1."""
        self.on_package(pkg=pkg, loader=loader, **kwargs)
