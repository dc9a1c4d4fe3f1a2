"""The command line's persistent compilation cache: where it lives, how it is turned off, and
that a second identical run reuses the first run's compiled programs.

The command runs in fresh subprocesses (JAX reads the cache settings once per process); each
counts JAX's compilation-cache hit events and prints the count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitae.compilation_cache import user_cache_dir

SCRIPT = """
import json, sys
import jax
from jax import monitoring

hits = []
monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
)
from kitae.cli import main

status = main(sys.argv[1:])
print(json.dumps({"status": status, "hits": len(hits),
                  "cache_dir": jax.config.jax_compilation_cache_dir}))
"""

TRAIN = [
    "train",
    "dqn",
    "--env",
    "CartPole-v1",
    "--algo-params.hidden-sizes",
    "16",
    "--algo-params.start-step",
    "100",
    "--update-cfg.batch-size",
    "16",
    "--train-cfg.n-env-steps",
    "300",
    "--eval-episodes",
    "1",
    "--quiet",
]


def run_cli(tmp_path: Path, env_update: dict[str, str], run_name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.pop("KITAE_COMPILATION_CACHE", None)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env.update(env_update)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *TRAIN, "--runs-dir", str(tmp_path / "runs")]
        + ["--run-name", run_name],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def cached_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.slow
def test_second_run_hits_the_cache_in_the_user_cache_dir(tmp_path):
    default = tmp_path / "xdg" / "kitae" / "jax"
    first = run_cli(tmp_path, {}, "first")
    assert first["status"] == 0
    assert first["cache_dir"] == str(default)
    assert first["hits"] == 0
    assert cached_files(default), "the first run stored no compiled program"
    second = run_cli(tmp_path, {}, "second")
    assert second["status"] == 0
    assert second["hits"] >= 2  # at least the explore and update programs


def test_cache_off_writes_nothing(tmp_path):
    result = run_cli(tmp_path, {"KITAE_COMPILATION_CACHE": "0"}, "off")
    assert result["status"] == 0
    assert result["cache_dir"] is None
    assert not cached_files(tmp_path / "xdg")


def test_named_cache_folder_and_bad_size_bound(tmp_path):
    folder = tmp_path / "elsewhere"
    result = run_cli(tmp_path, {"KITAE_COMPILATION_CACHE": str(folder)}, "named")
    assert result["cache_dir"] == str(folder)
    assert cached_files(folder)
    env = dict(os.environ, KITAE_COMPILATION_CACHE_MAX_BYTES="lots")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *TRAIN, "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=dict(env, KITAE_COMPILATION_CACHE=str(folder)),
        timeout=300,
    )
    assert "KITAE_COMPILATION_CACHE_MAX_BYTES='lots'" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == 2
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["named"]  # no new run


def test_user_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_dir("jax") == tmp_path / "kitae" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert user_cache_dir("jax") == tmp_path / "home" / ".cache" / "kitae" / "jax"
