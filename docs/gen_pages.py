"""Generates the pages of the documentation site that follow the code, at build time.

Run by mkdocs-gen-files (``mkdocs.yml``); nothing it writes is committed. It writes:

- ``index.md``, ``getting-started.md`` and ``guide.md`` from the sections of ``README.md``;
- ``tutorials/*.md`` and ``benchmarks.md``, copies of ``tutorials/*.md`` and
  ``benchmarks/README.md``;
- ``algorithms/``: a page per algorithm of the command line's registry and per agent class of
  ``kitae/algos/`` with its papers (``docs/algorithms.yaml``), its default hyperparameters (read
  from its params dataclass and ``default_update_cfg``) and its tuned settings (``kitae.zoo``);
- ``reference/``: an API page per public module found by walking ``kitae/`` (private modules,
  ``_x``, are skipped), rendered from the docstrings by mkdocstrings.

Relative links of the copied Markdown are rewritten to the pages they land in; a link to another
file of the repository becomes its path as inline code, and a link to nothing is an error.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "kitae"
PAPERS_FILE = REPO_ROOT / "docs" / "algorithms.yaml"
PAPER_FIELDS = ("title", "authors", "year", "url")

README = "README.md"
GETTING_STARTED_SECTIONS = ("Quick start", "Command line", "In Python")
"""README sections that make the getting-started page, in this order."""
README_ONLY_SECTIONS = ("Documentation",)
"""README sections left out of the site (how to build the site itself)."""
BENCHMARKS = "benchmarks/README.md"
TUTORIALS_DIR = "tutorials"

_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")


@dataclasses.dataclass(frozen=True)
class Paper:
    """A paper an algorithm page cites."""

    title: str
    authors: str
    year: int
    url: str

    def markdown(self) -> str:
        """The citation as one Markdown line: title (linked), authors, year."""
        return f'["{self.title}"]({self.url}), {self.authors}, {self.year}.'


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm page: its name, agent class and command-line defaults."""

    name: str
    """page name: the command line's name, else the agent class's name in lower case."""
    agent: type
    """the agent class."""
    env: str | None
    """``kitae train``'s default env id (``None``: not in the command line's registry)."""
    n_env_steps: int | None
    """``kitae train``'s default training length in transitions."""


def load_papers(path: Path = PAPERS_FILE) -> dict[str, list[Paper]]:
    """Reads the papers of each algorithm from ``path``.

    Args:
        path: a YAML mapping of algorithm name to a non-empty list of papers, each with
            ``title``, ``authors``, ``year`` (an integer) and ``url`` (http or https); the first
            is the algorithm's own paper.

    Returns:
        Algorithm name -> its papers, in the file's order.

    Raises:
        ValueError: naming the file, the algorithm and the field that is missing or wrong.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map algorithm names to lists of papers.")
    papers: dict[str, list[Paper]] = {}
    for name, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: {name} must be a non-empty list of papers.")
        papers[name] = []
        for i, entry in enumerate(entries):
            where = f"{path}: {name}[{i}]"
            if not isinstance(entry, dict) or set(entry) != set(PAPER_FIELDS):
                raise ValueError(f"{where} must have exactly the fields {', '.join(PAPER_FIELDS)}.")
            if not isinstance(entry["year"], int):
                raise ValueError(f"{where}.year must be an integer, got {entry['year']!r}.")
            if not str(entry["url"]).startswith(("https://", "http://")):
                raise ValueError(f"{where}.url must be an http(s) address, got {entry['url']!r}.")
            for key in ("title", "authors"):
                if not isinstance(entry[key], str) or not entry[key].strip():
                    raise ValueError(f"{where}.{key} must be a non-empty string.")
            papers[name].append(Paper(**entry))
    return papers


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RuntimeError(
            f"docs/gen_pages.py: {module} cannot be imported ({err}); the algorithm pages read "
            "the agents' defaults from the code: pip install -e '.[docs]'."
        ) from err


def agent_classes() -> dict[str, type]:
    """The agent classes defined in the modules of ``kitae.algos``, by ``"module:qualname"``.

    An agent class is a class that declares a params dataclass (``params_type``).

    Raises:
        RuntimeError: naming the module and the fix, if a module cannot be imported.
    """
    algos = _import(f"{PACKAGE}.algos")
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(algos.__path__):
        if info.name.startswith("_"):
            continue
        module = _import(f"{algos.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and getattr(cls, "params_type", None) is not None:
                found[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return found


def algorithms() -> list[Algorithm]:
    """Every algorithm to document: the command line's registry, in its order, then the agent
    classes of ``kitae.algos`` that the registry does not name."""
    registry = _import(f"{PACKAGE}.cli.runs").ALGORITHMS
    classes = agent_classes()
    out = []
    for name, entry in registry.items():
        if entry.agent_class not in classes:
            classes[entry.agent_class] = _import_class(entry.agent_class)
        out.append(Algorithm(name, classes[entry.agent_class], entry.env, entry.n_env_steps))
    named = {entry.agent_class for entry in registry.values()}
    for path, cls in classes.items():
        if path not in named:
            out.append(Algorithm(cls.__name__.lower(), cls, None, None))
    return out


def _import_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = _import(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _one_line(text: str) -> str:
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text
    )
    return " ".join(text.split())


def field_docs(cls: type) -> dict[str, str]:
    """The one-line description of each field documented in the ``Attributes:`` sections of
    ``cls`` and its bases (the nearest class wins); Sphinx roles become inline code."""
    import griffe

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__doc__:
            continue
        parsed = griffe.Docstring(inspect.cleandoc(klass.__doc__)).parse("google", warnings=False)
        for section in parsed:
            if section.kind is griffe.DocstringSectionKind.attributes:
                for item in section.value:
                    docs[item.name] = _one_line(item.description)
    return docs


def _cell(text: str) -> str:
    """``text`` made safe for a table cell: ``|`` outside code spans escaped."""
    out, end = [], 0
    for span in re.finditer(r"(`+).+?(?<!`)\1(?!`)", text):
        out += [text[end : span.start()].replace("|", "\\|"), span.group(0)]
        end = span.end()
    return "".join(out) + text[end:].replace("|", "\\|")


def _code(text: str) -> str:
    """``text`` as an inline code span."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def defaults_table(value: Any, base: Any | None = None, docs: dict[str, str] | None = None) -> str:
    """A Markdown table of the fields of dataclass instance ``value``: name, type, value and
    description; a value that differs from ``base``'s (an instance of the same class) is bold."""
    docs = field_docs(type(value)) if docs is None else docs
    rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(value):
        shown = _code(repr(getattr(value, f.name)))
        if base is not None and getattr(base, f.name) != getattr(value, f.name):
            shown = f"**{shown}**"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append(f"| `{f.name}` | {_code(kind)} | {shown} | {_cell(docs.get(f.name, ''))} |")
    return "\n".join(rows)


def _ref(cls: type, attribute: str | None = None) -> str:
    path = f"{cls.__module__}.{cls.__qualname__}"
    label = cls.__qualname__ if attribute is None else f"{cls.__qualname__}.{attribute}"
    return f"[`{label}`][{path}]"


def tuned_entries(name: str) -> list[tuple[str, Any]]:
    """``(env id or pattern, Tuned)`` of algorithm ``name`` in :mod:`kitae.zoo`."""
    zoo = _import(f"{PACKAGE}.zoo")
    tables = (zoo.TUNED, zoo.TUNED_PATTERNS)
    return [
        (env, entry) for table in tables for (algo, env), entry in table.items() if algo == name
    ]


def _summary(cls: type) -> str:
    module = inspect.getmodule(cls)
    doc = inspect.getdoc(module) or inspect.getdoc(cls) or ""
    return _one_line(doc.split("\n\n", 1)[0])


def algorithm_page(algo: Algorithm, papers: list[Paper]) -> str:
    """The Markdown of ``algo``'s page: summary, papers, command line, defaults, tuned settings."""
    cls = algo.agent
    update_cfg = cls.default_update_cfg
    lines = [
        f"# {cls.__name__}",
        "",
        _summary(cls),
        "",
        f"Agent class {_ref(cls)}, hyperparameters {_ref(cls.params_type)}.",
        "",
        "## Paper",
        "",
        papers[0].markdown(),
    ]
    if len(papers) > 1:
        lines += ["", "See also:", ""] + [f"- {p.markdown()}" for p in papers[1:]]
    lines += ["", "## Command line", ""]
    if algo.env is None:
        lines.append("Not in the command line's registry: build it in Python.")
    else:
        lines.append(
            f"`kitae train {algo.name}` trains on `{algo.env}` for {algo.n_env_steps:,} "
            f"transitions with {cls.default_n_envs} env{'s' if cls.default_n_envs != 1 else ''} "
            "by default "
            f"(`kitae train {algo.name} --help` lists every flag)."
        )
    lines += [
        "",
        "## Default hyperparameters",
        "",
        f"`{cls.__name__}.default_config(env, tuned=False)` uses these values.",
        "",
        f"### `algo_params`: {_ref(cls.params_type)}",
        "",
        defaults_table(cls.params_type()),
        "",
        f"### `update_cfg`: {_ref(cls, 'default_update_cfg')}",
        "",
        f"Values in bold differ from {_ref(type(update_cfg))}'s defaults.",
        "",
        defaults_table(update_cfg, base=type(update_cfg)()),
        "",
        "### `train_cfg`",
        "",
        f"{_ref(_import(f'{PACKAGE}.config').TrainConfig)}'s defaults"
        + (f"; `kitae train` sets `n_env_steps={algo.n_env_steps}`." if algo.env else "."),
    ]
    entries = tuned_entries(algo.name)
    lines += ["", "## Tuned settings", ""]
    if not entries:
        lines.append("[`kitae.zoo`][kitae.zoo] has no entry for this algorithm.")
    else:
        lines += [
            f"`{cls.__name__}.default_config(env)` and `kitae train {algo.name} --env ENV` start "
            "from these overrides of [`kitae.zoo`][kitae.zoo] (env ids or patterns):",
            "",
        ]
        for env, entry in entries:
            overrides = [
                f"{section}.{key}={value!r}"
                for section in ("algo_params", "update_cfg", "train_cfg")
                for key, value in entry.overrides(section).items()
            ]
            if entry.n_envs is not None:
                overrides.append(f"n_envs={entry.n_envs}")
            shown = ", ".join(_code(o) for o in overrides)
            measured = f" Measured by: {entry.benchmark}" if entry.benchmark else ""
            lines.append(f"- **`{env}`**: {shown}.{measured}")
    return "\n".join(lines) + "\n"


def algorithms_index(algos: list[Algorithm], papers: dict[str, list[Paper]]) -> str:
    """The Markdown of the algorithms overview: one row per algorithm with its paper."""
    lines = [
        "# Algorithms",
        "",
        "Every built-in agent, with its paper and default hyperparameters.",
        "",
        "| algorithm | agent | paper | `kitae train` default env |",
        "| --- | --- | --- | --- |",
    ]
    for algo in algos:
        paper = papers[algo.name][0]
        lines.append(
            f"| [{algo.name}]({algo.name}.md) | {_ref(algo.agent)} | "
            f"{_cell(paper.markdown())} | {f'`{algo.env}`' if algo.env else '-'} |"
        )
    return "\n".join(lines) + "\n"


def check_papers(algos: Iterable[Algorithm], papers: dict[str, list[Paper]]) -> None:
    """Raises ``ValueError`` naming the algorithms without papers, or papers of no algorithm."""
    names = [a.name for a in algos]
    missing = [n for n in names if n not in papers]
    if missing:
        raise ValueError(
            f"{PAPERS_FILE.name}: no paper for {', '.join(missing)}: add an entry (title, "
            "authors, year, url) for each."
        )
    unknown = sorted(set(papers) - set(names))
    if unknown:
        raise ValueError(
            f"{PAPERS_FILE.name}: {', '.join(unknown)} is no algorithm of kitae: remove or "
            f"rename it (algorithms: {', '.join(names)})."
        )


def readme_sections(text: str) -> tuple[str, dict[str, str]]:
    """Splits a README at its level-2 headings (outside code blocks).

    Returns:
        The text before the first ``## `` heading, and each section's title -> its text
        (heading included), in order.
    """
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current = intro
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        if not in_code and line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        current.append(line)
    return "\n".join(intro).strip() + "\n", {
        k: "\n".join(v).strip() + "\n" for k, v in sections.items()
    }


def rewrite_links(text: str, source: str, dest: str, pages: dict[str, str]) -> str:
    """Rewrites the relative links of Markdown ``text`` for its place in the site.

    Args:
        text: Markdown read from repository file ``source``.
        source: its path in the repository (``tutorials/custom_agent.md``).
        dest: the site page it lands in (a path under ``docs/``).
        pages: repository path -> site page of every copied Markdown file, and
            ``path#anchor`` -> site page for anchors that land apart from their file (the
            README's sections, see :func:`readme_anchors`).

    Returns:
        ``text`` where a link to a copied file points to its page (fragment kept), a link to
        another file or folder of the repository is its path as inline code, and code blocks,
        absolute URLs and in-page anchors are unchanged.

    Raises:
        ValueError: naming ``source`` and the link, if it points to nothing in the repository.
    """

    def replace(match: re.Match[str]) -> str:
        bang, label, href = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("#"):
            return match.group(0)
        path, _, fragment = href.partition("#")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        page = pages.get(f"{target}#{fragment}", pages.get(target))
        if page is not None:
            new = posixpath.relpath(page, posixpath.dirname(dest) or ".")
            return f"{bang}[{label}]({new}{'#' + fragment if fragment else ''})"
        if target.startswith("..") or not (REPO_ROOT / target).exists():
            raise ValueError(
                f"{source}: the link {href!r} points to {target}, which is not in the "
                "repository: fix or remove the link."
            )
        if label.strip("`") in (target, posixpath.basename(target)):
            return f"`{target}`"
        return f"{label} (`{target}`)"

    out, in_code = [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_code = not in_code
        out.append(line if in_code else _LINK.sub(replace, line))
    return "".join(out)


def copied_pages(root: Path = REPO_ROOT) -> dict[str, str]:
    """Repository path -> site page of each Markdown file the site copies."""
    pages = {README: "index.md", BENCHMARKS: "benchmarks.md"}
    for path in sorted((root / TUTORIALS_DIR).glob("*.md")):
        pages[f"{TUTORIALS_DIR}/{path.name}"] = f"{TUTORIALS_DIR}/{path.name}"
    return pages


def slugify(title: str) -> str:
    """The anchor that MkDocs gives a heading (the ``toc`` extension's default slugify)."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def readme_anchors(text: str) -> dict[str, str]:
    """``README.md#anchor`` -> the site page that holds that heading of the README."""
    intro, sections = readme_sections(text)
    parts = [("index.md", intro)]
    for title, body in sections.items():
        if title in GETTING_STARTED_SECTIONS:
            parts.append(("getting-started.md", body))
        elif title not in README_ONLY_SECTIONS:
            parts.append(("guide.md", body))
    anchors = {}
    for page, body in parts:
        in_code = False
        for line in body.splitlines():
            if _FENCE.match(line):
                in_code = not in_code
            elif not in_code and re.match(r"#{1,6} ", line):
                anchors[f"{README}#{slugify(line.lstrip('#'))}"] = page
    return anchors


def readme_pages(text: str, pages: dict[str, str]) -> dict[str, str]:
    """The home, getting-started and guide pages (site path -> Markdown) from the README.

    Raises:
        ValueError: naming a section of :data:`GETTING_STARTED_SECTIONS` the README lacks.
    """
    intro, sections = readme_sections(text)
    intro = rewrite_links(intro, README, "index.md", pages)
    sections = {
        title: rewrite_links(body, README, "getting-started.md", pages)
        for title, body in sections.items()
    }
    missing = [s for s in GETTING_STARTED_SECTIONS if s not in sections]
    if missing:
        raise ValueError(
            f"{README}: no section '## {missing[0]}': docs/gen_pages.py builds the getting-started "
            "page from it; restore it or update GETTING_STARTED_SECTIONS."
        )
    guide = [
        body
        for title, body in sections.items()
        if title not in GETTING_STARTED_SECTIONS and title not in README_ONLY_SECTIONS
    ]
    tutorials = [p for p in pages if p.startswith(f"{TUTORIALS_DIR}/") and "#" not in p]
    home_links = [
        "## In this site",
        "",
        "- [Getting started](getting-started.md): install, train DQN on CartPole, the command "
        "line and the Python API.",
        "- [User guide](guide.md): the built-in agents, environments, compiled training, "
        "checkpoints, multi-agent training and performance notes.",
        "- Tutorials: "
        + ", ".join(f"[{_title(REPO_ROOT / p)}]({pages[p]})" for p in tutorials)
        + ".",
        "- [Algorithms](algorithms/index.md): each agent's paper and default hyperparameters.",
        "- [Benchmarks](benchmarks.md): speed and learning results.",
        "- [API reference](reference/kitae/index.md), generated from the docstrings.",
        "",
    ]
    home = intro + "\n" + "\n".join(home_links)
    return {
        "index.md": home,
        "getting-started.md": "# Getting started\n\n"
        + "\n".join(sections[s] for s in GETTING_STARTED_SECTIONS),
        "guide.md": "# User guide\n\n" + "\n".join(guide),
    }


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def public_modules(root: Path = REPO_ROOT, package: str = PACKAGE) -> list[tuple[str, ...]]:
    """The dotted parts of every public module and package under ``root / package``, sorted.

    Private modules and packages (``_x``, ``__main__``) and everything under them are skipped.
    """
    found = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        found.append(tuple(parts))
    return found


def reference_pages(modules: list[tuple[str, ...]]) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """``(site page, Markdown, nav title parts)`` of each module's API page: a package's page is
    its folder's ``index.md``."""
    packages = {parts[:-1] for parts in modules if len(parts) > 1}
    for parts in modules:
        is_package = parts in packages or len(parts) == 1
        page = "/".join(parts) + ("/index.md" if is_package else ".md")
        yield f"reference/{page}", f"::: {'.'.join(parts)}\n", parts


def write_site(open_file: Callable[..., Any], nav_class: type) -> None:
    """Writes every generated page through ``open_file`` (``mkdocs_gen_files.open``) and the
    section navigations with ``nav_class`` (``mkdocs_gen_files.Nav``)."""
    pages = copied_pages()
    readme = (REPO_ROOT / README).read_text(encoding="utf-8")
    targets = {**pages, **readme_anchors(readme)}

    def write(dest: str, text: str) -> None:
        with open_file(dest, "w") as out:
            out.write(text)

    for dest, text in readme_pages(readme, targets).items():
        write(dest, text)
    for source, dest in pages.items():
        if source != README:
            text = (REPO_ROOT / source).read_text(encoding="utf-8")
            write(dest, rewrite_links(text, source, dest, targets))
    write(
        f"{TUTORIALS_DIR}/SUMMARY.md",
        "".join(
            f"- [{_title(REPO_ROOT / s)}]({posixpath.basename(d)})\n"
            for s, d in pages.items()
            if s.startswith(f"{TUTORIALS_DIR}/")
        ),
    )

    algos, papers = algorithms(), load_papers()
    check_papers(algos, papers)
    write("algorithms/index.md", algorithms_index(algos, papers))
    for algo in algos:
        write(f"algorithms/{algo.name}.md", algorithm_page(algo, papers[algo.name]))
    write(
        "algorithms/SUMMARY.md",
        "- [Overview](index.md)\n"
        + "".join(f"- [{a.agent.__name__}]({a.name}.md)\n" for a in algos),
    )

    nav = nav_class()
    for dest, text, parts in reference_pages(public_modules()):
        write(dest, text)
        nav[parts] = dest.removeprefix("reference/")
    write("reference/SUMMARY.md", "".join(nav.build_literate_nav()))


if __name__ in ("__main__", "<run_path>"):
    import mkdocs_gen_files

    write_site(mkdocs_gen_files.open, mkdocs_gen_files.Nav)
