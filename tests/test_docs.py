"""The documentation site's generator (``docs/gen_pages.py``) and role renderer
(``docs/sphinx_roles.py``): what they read from the code, the README and the tutorials must be
there, so that ``mkdocs build --strict`` keeps passing as the code changes."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "docs"))

import gen_pages  # noqa: E402

from kitae.cli.runs import ALGORITHMS  # noqa: E402
from kitae.config import UpdateConfig  # noqa: E402


def test_every_algorithm_of_the_registry_and_of_kitae_algos_has_papers():
    names = [a.name for a in gen_pages.algorithms()]
    assert names[: len(ALGORITHMS)] == list(ALGORITHMS)
    papers = gen_pages.load_papers()
    assert set(papers) == set(names)
    gen_pages.check_papers(gen_pages.algorithms(), papers)
    dqn = papers["dqn"][0]
    assert (dqn.title, dqn.year) == (
        "Human-level control through deep reinforcement learning",
        2015,
    )
    assert dqn.url == "https://doi.org/10.1038/nature14236"


def test_an_agent_class_missing_from_the_registry_still_gets_a_page(monkeypatch):
    import kitae.cli.runs as runs

    registry = {k: v for k, v in runs.ALGORITHMS.items() if k != "ddpg"}
    monkeypatch.setattr(runs, "ALGORITHMS", registry)
    by_name = {a.name: a for a in gen_pages.algorithms()}
    assert by_name["ddpg"].agent.__name__ == "DDPG"
    assert (by_name["ddpg"].env, by_name["ddpg"].n_env_steps) == (None, None)
    assert by_name["td3"].env == "Pendulum-v1"


def test_check_papers_names_the_algorithm_without_a_paper_and_the_unknown_entry():
    algos = [a for a in gen_pages.algorithms() if a.name in ("dqn", "ppo")]
    paper = gen_pages.Paper("T", "A", 2000, "https://example.org")
    with pytest.raises(ValueError, match=r"no paper for ppo: add an entry"):
        gen_pages.check_papers(algos, {"dqn": [paper]})
    with pytest.raises(ValueError, match=r"zzz is no algorithm of kitae"):
        gen_pages.check_papers(algos, {"dqn": [paper], "ppo": [paper], "zzz": [paper]})


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"title": "T", "authors": "A", "year": 2000}, r"toy\[0\] must have exactly the fields"),
        ({"title": "T", "authors": "A", "year": "2000", "url": "https://x"}, r"toy\[0\]\.year"),
        ({"title": "T", "authors": "A", "year": 2000, "url": "x.org"}, r"toy\[0\]\.url"),
        ({"title": " ", "authors": "A", "year": 2000, "url": "https://x"}, r"toy\[0\]\.title"),
    ],
    ids=["missing-url", "year-string", "url-not-http", "empty-title"],
)
def test_load_papers_names_the_file_the_algorithm_and_the_field(tmp_path, entry, message):
    path = tmp_path / "papers.yaml"
    path.write_text(yaml.safe_dump({"toy": [entry]}))
    with pytest.raises(ValueError, match=f"papers.yaml: {message}"):
        gen_pages.load_papers(path)


def test_links_are_rewritten_to_the_pages_they_land_in():
    pages = {"README.md": "index.md", "benchmarks/README.md": "benchmarks.md"}
    pages["tutorials/a.md"] = "tutorials/a.md"
    pages["README.md#quick-start"] = "getting-started.md"
    text = textwrap.dedent(
        """\
        See [the README](../README.md#quick-start), [bench](../benchmarks/README.md),
        [`benchmarks/learning.py`](../benchmarks/learning.py),
        [the script](../benchmarks/learning.py), [web](https://example.org/a.md) and [here](#top).
        ```
        [code](../README.md)
        ```
        """
    )
    out = gen_pages.rewrite_links(text, "tutorials/a.md", "tutorials/a.md", pages)
    assert out == textwrap.dedent(
        """\
        See [the README](../getting-started.md#quick-start), [bench](../benchmarks.md),
        `benchmarks/learning.py`,
        the script (`benchmarks/learning.py`), [web](https://example.org/a.md) and [here](#top).
        ```
        [code](../README.md)
        ```
        """
    )
    from_readme = gen_pages.rewrite_links("[t](tutorials/a.md)", "README.md", "guide.md", pages)
    assert from_readme == "[t](tutorials/a.md)"
    with pytest.raises(ValueError, match=r"tutorials/a.md: the link 'gone.md' points to"):
        gen_pages.rewrite_links("[x](gone.md)", "tutorials/a.md", "tutorials/a.md", pages)


def test_the_readme_tutorials_and_benchmarks_make_their_pages():
    pages = gen_pages.copied_pages()
    tutorials = sorted(p.name for p in (REPO_ROOT / "tutorials").glob("*.md"))
    assert [p for p in pages if p.startswith("tutorials/")] == [f"tutorials/{t}" for t in tutorials]
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    targets = {**pages, **gen_pages.readme_anchors(readme)}
    made = gen_pages.readme_pages(readme, targets)
    assert set(made) == {"index.md", "getting-started.md", "guide.md"}
    for title in gen_pages.GETTING_STARTED_SECTIONS:
        assert f"\n## {title}\n" in made["getting-started.md"]
        assert f"\n## {title}\n" not in made["guide.md"]
    assert "\n## Built-in agents\n" in made["guide.md"]
    for source, dest in pages.items():  # every link of every copied file resolves
        gen_pages.rewrite_links(
            (REPO_ROOT / source).read_text(encoding="utf-8"), source, dest, targets
        )
    with pytest.raises(ValueError, match=r"README.md: no section '## Quick start'"):
        gen_pages.readme_pages("# kitae\n\n## Command line\n\n## In Python\n", pages)


def test_readme_anchors_point_to_the_page_that_holds_each_heading():
    text = (
        "# kitae\n\n## Quick start\n### Sub A\n```\n# comment\n```\n"
        "## Multi-agent (PettingZoo)\n## Documentation\n### Build\n"
    )
    assert gen_pages.readme_anchors(text) == {
        "README.md#kitae": "index.md",
        "README.md#quick-start": "getting-started.md",
        "README.md#sub-a": "getting-started.md",
        "README.md#multi-agent-pettingzoo": "guide.md",
    }


def test_readme_sections_split_at_level_two_headings_outside_code():
    intro, sections = gen_pages.readme_sections("# T\n\nhi\n## A\na\n```\n## not\n```\n## B\nb\n")
    assert intro == "# T\n\nhi\n"
    assert sections == {"A": "## A\na\n```\n## not\n```\n", "B": "## B\nb\n"}


def test_public_modules_skip_private_ones_and_packages_get_index_pages(tmp_path):
    for rel in (
        "__init__",
        "a",
        "_b",
        "__main__",
        "sub/__init__",
        "sub/c",
        "_priv/__init__",
        "_priv/d",
        "sub/_e",
    ):
        (tmp_path / "pkg" / f"{rel}.py").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / f"{rel}.py").write_text("")
    modules = gen_pages.public_modules(tmp_path, "pkg")
    assert modules == [("pkg",), ("pkg", "a"), ("pkg", "sub"), ("pkg", "sub", "c")]
    assert [(page, text) for page, text, _ in gen_pages.reference_pages(modules)] == [
        ("reference/pkg/index.md", "::: pkg\n"),
        ("reference/pkg/a.md", "::: pkg.a\n"),
        ("reference/pkg/sub/index.md", "::: pkg.sub\n"),
        ("reference/pkg/sub/c.md", "::: pkg.sub.c\n"),
    ]
    real = gen_pages.public_modules()
    assert ("kitae", "algos", "dqn") in real and ("kitae", "cli", "runs") in real
    assert not [m for m in real if any(part.startswith("_") for part in m)]


@dataclasses.dataclass
class ToyParams:
    """Toy hyperparameters.

    Attributes:
        gamma: discount (see :class:`~kitae.config.UpdateConfig`).
        sizes: layer sizes | widths ``|w|``.
    """

    gamma: float = 0.9
    sizes: tuple[int, ...] = (3, 4)


class Toy:
    """A toy agent."""

    params_type = ToyParams
    default_n_envs = 2
    default_update_cfg = UpdateConfig(learning_rate=1e-3)


def test_an_algorithm_page_lists_papers_defaults_and_differences():
    pytest.importorskip("griffe")
    papers = [
        gen_pages.Paper("First", "A. B", 2001, "https://a"),
        gen_pages.Paper("Second", "C", 2002, "https://c"),
    ]
    page = gen_pages.algorithm_page(gen_pages.Algorithm("toy", Toy, "CartPole-v1", 1000), papers)
    assert page.startswith("# Toy\n")
    assert (
        '## Paper\n\n["First"](https://a), A. B, 2001.\n\n'
        'See also:\n\n- ["Second"](https://c), C, 2002.' in page
    )
    assert (
        "`kitae train toy` trains on `CartPole-v1` for 1,000 transitions with 2 envs by default"
        in page
    )
    assert "| `gamma` | `float` | `0.9` | discount (see `UpdateConfig`). |" in page
    assert "| `sizes` | `tuple[int, ...]` | `(3, 4)` | layer sizes \\| widths ``|w|``. |" in page
    assert "| `learning_rate` | `float` | **`0.001`** | optimizer step size. |" in page
    assert "| `batch_size` | `int` | `64` |" in page
    assert "| `max_grad_norm` | `float | None` | `None` |" in page
    assert "has no entry for this algorithm" in page


def test_the_tuned_settings_of_an_algorithm_are_listed(monkeypatch):
    pytest.importorskip("griffe")
    import kitae.zoo as zoo

    entry = zoo.Tuned(algo_params={"gamma": 0.5}, update_cfg={"batch_size": 8}, n_envs=3)
    monkeypatch.setattr(zoo, "TUNED", {("toy", "Env-v0"): entry, ("dqn", "Env-v0"): entry})
    pattern = zoo.Tuned(train_cfg={"n_env_steps": 10}, benchmark="bench.py: 500")
    monkeypatch.setattr(zoo, "TUNED_PATTERNS", {("toy", "Grid-*"): pattern})
    page = gen_pages.algorithm_page(
        gen_pages.Algorithm("toy", Toy, "CartPole-v1", 1000), [gen_pages.Paper("T", "A", 1, "u")]
    )
    tuned = page.split("## Tuned settings\n", 1)[1].splitlines()
    assert [line for line in tuned if line.startswith("- ")] == [
        "- **`Env-v0`**: `algo_params.gamma=0.5`, `update_cfg.batch_size=8`, `n_envs=3`.",
        "- **`Grid-*`**: `train_cfg.n_env_steps=10`. Measured by: bench.py: 500",
    ]


def test_the_site_writes_every_page_of_the_navigation():
    gen_files = pytest.importorskip("mkdocs_gen_files")
    pytest.importorskip("griffe")
    written: dict[str, str] = {}

    class Page:
        def __init__(self, path: str, mode: str) -> None:
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def write(self, text: str) -> None:
            written[self.path] = written.get(self.path, "") + text

    gen_pages.write_site(Page, gen_files.Nav)
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    for entry in config["nav"]:
        (target,) = entry.values()
        assert (target + "SUMMARY.md" if target.endswith("/") else target) in written, target
    assert written["algorithms/SUMMARY.md"].startswith("- [Overview](index.md)\n- [DQN](dqn.md)\n")
    for name in ALGORITHMS:
        assert f"algorithms/{name}.md" in written
    assert "reference/kitae/algos/dqn.md" in written
    assert "* [dqn](kitae/algos/dqn.md)\n" in written["reference/SUMMARY.md"]


def _roles_package(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        '"""Uses :func:`~pkg.mod.f` and :mod:`pkg.mod`."""\n'
    )
    (tmp_path / "pkg" / "mod.py").write_text(
        textwrap.dedent(
            '''\
            """See :func:`f`, :func:`_g`, :func:`h`, :class:`gymnasium.Env` and :data:`X`."""

            X = 1
            """A constant."""


            def f():
                """Documented."""


            def _g():
                """Private."""


            def h():
                pass


            class C:
                """Calls :meth:`m` and :meth:`C.m`, :attr:`~pkg.mod.C.m` and :func:`f`."""

                def m(self):
                    """A method, unlike :py:meth:`n`."""
            '''
        )
    )
    return tmp_path


def test_sphinx_roles_become_cross_references_or_inline_code(tmp_path):
    griffe = pytest.importorskip("griffe")
    from sphinx_roles import SphinxRoles

    pkg = griffe.load(
        "pkg",
        search_paths=[str(_roles_package(tmp_path))],
        extensions=griffe.load_extensions(SphinxRoles),
    )
    assert pkg.docstring.value == "Uses [`f`][pkg.mod.f] and [`pkg.mod`][pkg.mod]."
    mod = pkg["mod"]
    assert mod.docstring.value == (
        "See [`f`][pkg.mod.f], `_g`, `h`, `gymnasium.Env` and [`X`][pkg.mod.X]."
    )
    assert mod["C"].docstring.value == (
        "Calls [`m`][pkg.mod.C.m] and [`C.m`][pkg.mod.C.m], [`m`][pkg.mod.C.m] and "
        "[`f`][pkg.mod.f]."
    )
    assert mod["C"]["m"].docstring.value == "A method, unlike `n`."
