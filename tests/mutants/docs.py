"""Mutants of the documentation site's generator (``docs/gen_pages.py``) and role renderer
(``docs/sphinx_roles.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from mutants import mutant

DOCS_TESTS = "tests/test_docs.py"
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _docs_module(name: str):
    """The docs script ``name`` as the tests import it (``docs/`` on ``sys.path``)."""
    if str(DOCS_DIR) not in sys.path:
        sys.path.insert(0, str(DOCS_DIR))
    return __import__(name)


@mutant(
    "docs-algorithms-from-registry-only",
    "an agent class of kitae/algos that the command line does not register gets no page",
    [f"{DOCS_TESTS}::test_an_agent_class_missing_from_the_registry_still_gets_a_page"],
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    monkeypatch.setattr(gen_pages, "agent_classes", lambda: {})


@mutant(
    "docs-papers-unchecked",
    "an algorithm without a paper entry (or an entry of no algorithm) passes silently",
    [f"{DOCS_TESTS}::test_check_papers_names_the_algorithm_without_a_paper_and_the_unknown_entry"],
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    monkeypatch.setattr(gen_pages, "check_papers", lambda algos, papers: None)


@mutant(
    "docs-links-kept-as-in-the-repository",
    "relative links of copied Markdown are not rewritten to the pages they land in",
    [f"{DOCS_TESTS}::test_links_are_rewritten_to_the_pages_they_land_in"],
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    monkeypatch.setattr(gen_pages, "rewrite_links", lambda text, source, dest, pages: text)


@mutant(
    "docs-private-modules-documented",
    "the API reference walks private modules (_x) too",
    [f"{DOCS_TESTS}::test_public_modules_skip_private_ones_and_packages_get_index_pages"],
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")

    def public_modules(root=gen_pages.REPO_ROOT, package=gen_pages.PACKAGE):
        found = []
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found.append(parts[:-1] if parts[-1] == "__init__" else parts)
        return found

    monkeypatch.setattr(gen_pages, "public_modules", public_modules)


@mutant(
    "docs-defaults-not-compared",
    "the update_cfg table does not mark the agent's values that differ from UpdateConfig()",
    [f"{DOCS_TESTS}::test_an_algorithm_page_lists_papers_defaults_and_differences"],
    requires=("griffe",),
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    original = gen_pages.defaults_table
    monkeypatch.setattr(
        gen_pages, "defaults_table", lambda value, base=None, docs=None: original(value, None, docs)
    )


@mutant(
    "docs-roles-resolved-without-scope",
    "a role's target is looked up only as a full path, not in its class and module",
    [f"{DOCS_TESTS}::test_sphinx_roles_become_cross_references_or_inline_code"],
    requires=("griffe",),
)
def _(monkeypatch):
    sphinx_roles = _docs_module("sphinx_roles")

    def resolve(obj, target, collection, package):
        found = sphinx_roles._lookup(collection, target)
        return (
            found.path
            if found is not None and sphinx_roles._is_documented(found, package)
            else None
        )

    monkeypatch.setattr(sphinx_roles, "resolve", resolve)


@mutant(
    "docs-roles-link-private-objects",
    "roles naming private or undocumented objects become references that break a strict build",
    [f"{DOCS_TESTS}::test_sphinx_roles_become_cross_references_or_inline_code"],
    requires=("griffe",),
)
def _(monkeypatch):
    sphinx_roles = _docs_module("sphinx_roles")
    monkeypatch.setattr(sphinx_roles, "_is_documented", lambda obj, package: True)


@mutant(
    "docs-tuned-patterns-dropped",
    "an algorithm page lists the exact (algorithm, env) entries of kitae.zoo but not its patterns",
    [f"{DOCS_TESTS}::test_the_tuned_settings_of_an_algorithm_are_listed"],
    requires=("griffe",),
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    import kitae.zoo as zoo

    monkeypatch.setattr(
        gen_pages,
        "tuned_entries",
        lambda name: [(env, e) for (algo, env), e in zoo.TUNED.items() if algo == name],
    )


@mutant(
    "docs-readme-anchors-lost",
    "links to a README heading point to the home page, not to the page that holds the heading",
    [f"{DOCS_TESTS}::test_readme_anchors_point_to_the_page_that_holds_each_heading"],
)
def _(monkeypatch):
    gen_pages = _docs_module("gen_pages")
    monkeypatch.setattr(gen_pages, "readme_anchors", lambda text: {})
