"""Run logging: an in-memory history, and JSON-lines files when a run directory is given."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class Logger:
    """Records ``(step, metrics)`` rows per stream (``"episodes"``, ``"train"``...).

    Rows are kept in :attr:`history` and, when ``run_dir`` is set, appended to
    ``run_dir/<stream>.jsonl``. Nothing touches the disk without a ``run_dir``.

    Args:
        run_dir: the run directory; it must be new or empty unless ``resume``.
        resume: append to the files of an existing run directory (a resumed run).
    """

    def __init__(self, run_dir: str | Path | None = None, *, resume: bool = False):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self._files: dict[str, Any] = {}
        if self.run_dir is not None:
            if not resume and self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise FileExistsError(
                    f"run directory {self.run_dir} already holds a run; choose another run_name "
                    "or run_dir, or delete it."
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, stream: str, step: int, metrics: dict[str, Any]) -> None:
        """Appends one row ``{"step": step, **metrics}`` (values converted to Python floats)."""
        row = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            row[name] = value if math.isfinite(value) else str(value)
        self.history.setdefault(stream, []).append(row)
        if self.run_dir is not None:
            if stream not in self._files:
                self._files[stream] = open(self.run_dir / f"{stream}.jsonl", "a")  # noqa: SIM115
            self._files[stream].write(json.dumps(row) + "\n")

    def write_config(self, config_dict: dict[str, Any]) -> None:
        """Writes the resolved config as ``run_dir/config.json``."""
        if self.run_dir is not None:
            (self.run_dir / "config.json").write_text(
                json.dumps(config_dict, indent=2, default=str)
            )

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        """Closes the files; a later :meth:`log` reopens them in append mode."""
        for f in self._files.values():
            f.close()
        self._files.clear()
