"""Runs several mutants' tests in one process, one pytest session per mutant.

Usage: ``python tests/mutants/runner.py RESULTS.jsonl NAME [NAME ...]``. First every test module
involved is imported without any mutant (a collection-only session), so that what test modules
compute at import time is never computed under a mutant. Then for each mutant, in order: apply
its patch, clear JAX's compilation caches (so no function traced under another
mutant, or under none, is reused), run its tests with ``pytest.main(["-x", ...])``, undo the
patch, and append ``{"name", "exit_code", "output"}`` to ``RESULTS.jsonl``. Importing the
libraries once instead of once per mutant is what this saves; the persistent compilation cache
on disk is keyed by the program itself, so it stays correct across mutants.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent


def main(results: str, names: list[str]) -> None:
    if os.environ.get("KITAE_MUTANT"):
        raise SystemExit("unset KITAE_MUTANT: the runner applies each mutant itself")
    sys.path.insert(0, str(TESTS_DIR))
    os.chdir(TESTS_DIR.parent)
    import jax
    import pytest

    from mutants import load_all

    mutants = load_all()
    modules = sorted({node.split("::")[0] for name in names for node in mutants[name].tests})
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *modules])
    for name in names:
        patch = pytest.MonkeyPatch()
        output = io.StringIO()
        try:
            mutants[name].apply(patch)
            jax.clear_caches()
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                code = int(
                    pytest.main(["-x", "-q", "-p", "no:cacheprovider", *mutants[name].tests])
                )
        except Exception as error:  # a patch that cannot be applied is reported, not killed
            code, output = -1, io.StringIO(f"{type(error).__name__}: {error}")
        finally:
            patch.undo()
        with open(results, "a") as f:
            f.write(json.dumps({"name": name, "exit_code": code, "output": output.getvalue()}))
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
