"""Run logging: an in-memory history, written to the run directory by one or more backends.

A :class:`Logger` records ``(step, metrics)`` rows per stream (``"episodes"``, ``"train"``,
``"eval"``...) and hands each row to its backends, chosen by name (``train_cfg.loggers``):

* ``"jsonl"``: ``<run>/<stream>.jsonl``, one JSON object per row.
* ``"csv"``: ``<run>/<stream>.csv``, header from the first row; a row with new columns rewrites
  the file with the extended header (earlier rows leave those cells empty).
* ``"console"``: one compact line per ``train`` / ``eval`` row (episode rows are not printed).
* ``"tensorboard"``: event files in ``<run>/tensorboard/`` (scalars ``<stream>/<name>``, the
  config as text); needs ``tensorboardX`` (``pip install kitae[tensorboard]``).
* ``"wandb"``: a Weights & Biases run whose local files go to ``<run>/wandb/``; the config is the
  run's config; ``WANDB_MODE=offline`` keeps it offline (``pip install kitae[wandb]``).

File backends write only inside the run directory, and only when there is one; without a run
directory nothing touches the disk (``"console"`` still prints).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

LOGGER_BACKENDS = ("console", "csv", "jsonl", "tensorboard", "wandb")
"""The backend names ``train_cfg.loggers`` accepts."""

_PRINTED_STREAMS = ("train", "eval")


class LogBackend:
    """A destination for log rows; every method is optional (the defaults do nothing)."""

    def write(self, stream: str, row: dict[str, Any]) -> None:
        """Writes one row ``{"step": int, **metrics}`` of ``stream``."""

    def write_config(self, config_dict: dict[str, Any]) -> None:
        """Records the run's config (once, at the start of a run)."""

    def flush(self) -> None:
        """Makes what was written so far visible to readers."""

    def close(self) -> None:
        """Releases open files; a later :meth:`write` reopens them (appending)."""


class JSONLinesBackend(LogBackend):
    """``<run>/<stream>.jsonl``: one JSON object per row."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._files: dict[str, Any] = {}

    def write(self, stream: str, row: dict[str, Any]) -> None:
        if stream not in self._files:
            self._files[stream] = open(self.run_dir / f"{stream}.jsonl", "a")  # noqa: SIM115
        self._files[stream].write(json.dumps(row) + "\n")

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class CSVBackend(LogBackend):
    """``<run>/<stream>.csv``: the header is the first row's columns (an existing file's header
    when appending); a row with new columns rewrites the file with the extended header."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._files: dict[str, Any] = {}
        self._columns: dict[str, list[str]] = {}

    def _open(self, stream: str) -> None:
        path = self.run_dir / f"{stream}.csv"
        if stream not in self._columns:
            header: list[str] = []
            if path.exists() and path.stat().st_size:
                with open(path, newline="") as f:
                    header = next(csv.reader(f), [])
            self._columns[stream] = header
        self._files[stream] = open(path, "a", newline="")  # noqa: SIM115

    def _rewrite(self, stream: str, columns: list[str]) -> None:
        path = self.run_dir / f"{stream}.csv"
        self._files.pop(stream).close()
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        self._columns[stream] = columns
        self._files[stream] = open(path, "a", newline="")  # noqa: SIM115

    def write(self, stream: str, row: dict[str, Any]) -> None:
        if stream not in self._files:
            self._open(stream)
        columns = self._columns[stream]
        if not columns:
            columns.extend(row)
            csv.writer(self._files[stream]).writerow(columns)
        elif any(name not in columns for name in row):
            self._rewrite(stream, columns + [name for name in row if name not in columns])
            columns = self._columns[stream]
        csv.DictWriter(self._files[stream], columns).writerow(row)

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer() and abs(value) < 1e12:
        return f"{int(value):,}"
    return f"{value:.4g}"


class ConsoleBackend(LogBackend):
    """One compact line per ``train`` / ``eval`` row on stdout (through ``tqdm.write`` so that
    a progress bar stays intact)."""

    def write(self, stream: str, row: dict[str, Any]) -> None:
        if stream not in _PRINTED_STREAMS:
            return
        from tqdm.auto import tqdm

        parts = [f"{name} {_format(value)}" for name, value in row.items() if name != "step"]
        tqdm.write(f"[{stream}] step {row['step']:,} | " + " | ".join(parts), file=sys.stdout)


class TensorBoardBackend(LogBackend):
    """Event files in ``<run>/tensorboard/``: scalars ``<stream>/<name>`` against the step, the
    config as the text ``config``.

    Raises:
        ImportError: if ``tensorboardX`` is not installed.
    """

    def __init__(self, run_dir: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "the 'tensorboard' logger needs tensorboardX: pip install 'kitae[tensorboard]'."
            ) from error
        self._writer_type = SummaryWriter
        self.log_dir = run_dir / "tensorboard"
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_type(logdir=str(self.log_dir))
        return self._writer

    def write(self, stream: str, row: dict[str, Any]) -> None:
        step = row["step"]
        for name, value in row.items():
            if name != "step":
                self.writer.add_scalar(f"{stream}/{name}", float(value), step)

    def write_config(self, config_dict: dict[str, Any]) -> None:
        text = json.dumps(config_dict, indent=2, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbBackend(LogBackend):
    """A Weights & Biases run (started at the first config or row) named after the run
    directory, with its local files in ``<run>/wandb/``; metrics are ``<stream>/<name>`` against
    ``env_steps``. ``WANDB_MODE`` (e.g. ``offline``) and the other ``WANDB_*`` variables apply.
    The run is finished when the process exits, so that several ``train`` calls share it.

    Raises:
        ImportError: if ``wandb`` is not installed.
    """

    def __init__(self, run_dir: Path):
        try:
            import wandb
        except ImportError as error:
            raise ImportError(
                "the 'wandb' logger needs wandb: pip install 'kitae[wandb]'."
            ) from error
        self._wandb = wandb
        self.run_dir = run_dir
        self.run: Any = None

    def _start(self, config_dict: dict[str, Any] | None = None) -> None:
        self.run = self._wandb.init(
            name=self.run_dir.name,
            dir=str(self.run_dir),
            config=config_dict,
            reinit=True,
        )
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def write(self, stream: str, row: dict[str, Any]) -> None:
        if self.run is None:
            self._start()
        metrics = {f"{stream}/{k}": float(v) for k, v in row.items() if k != "step"}
        self.run.log({"env_steps": row["step"], **metrics})

    def write_config(self, config_dict: dict[str, Any]) -> None:
        if self.run is None:
            self._start(config_dict)
        else:
            self.run.config.update(config_dict, allow_val_change=True)


_FILE_BACKENDS: dict[str, type[LogBackend]] = {
    "csv": CSVBackend,
    "jsonl": JSONLinesBackend,
    "tensorboard": TensorBoardBackend,
    "wandb": WandbBackend,
}


def check_backends(backends: Any, field: str = "train_cfg.loggers") -> None:
    """Raises ``ValueError`` naming ``field`` unless ``backends`` is a tuple/list of names from
    :data:`LOGGER_BACKENDS`."""
    if isinstance(backends, str) or not isinstance(backends, (tuple, list)):
        raise ValueError(
            f"{field}={backends!r} is invalid: it must be a tuple of backend names from "
            f"{LOGGER_BACKENDS}, e.g. ('jsonl', 'csv')."
        )
    unknown = [name for name in backends if name not in LOGGER_BACKENDS]
    if unknown:
        raise ValueError(
            f"{field}={tuple(backends)!r} is invalid: unknown logger(s) {unknown}; "
            f"choose from {LOGGER_BACKENDS}."
        )


class Logger:
    """Records ``(step, metrics)`` rows per stream (``"episodes"``, ``"train"``, ``"eval"``...).

    Rows are kept in :attr:`history` and handed to the backends (see the module docstring).
    File backends exist only with a ``run_dir``; nothing touches the disk without one.

    Args:
        run_dir: the run directory; it must be new or empty unless ``resume``.
        resume: append to the files of an existing run directory (a resumed run).
        backends: backend names from :data:`LOGGER_BACKENDS`.

    Raises:
        FileExistsError: if ``run_dir`` already holds a run and ``resume`` is false.
        ValueError: for an unknown backend name.
        ImportError: if a backend's optional dependency is missing.
    """

    def __init__(
        self,
        run_dir: str | Path | None = None,
        *,
        resume: bool = False,
        backends: tuple[str, ...] | list[str] = ("jsonl",),
    ):
        check_backends(backends, "backends")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.backends: list[LogBackend] = []
        if "console" in backends:
            self.backends.append(ConsoleBackend())
        if self.run_dir is not None:
            if not resume and self.run_dir.exists() and any(self.run_dir.iterdir()):
                raise FileExistsError(
                    f"run directory {self.run_dir} already holds a run; choose another run_name "
                    "or run_dir, or delete it."
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in dict.fromkeys(backends):
                if name in _FILE_BACKENDS:
                    self.backends.append(_FILE_BACKENDS[name](self.run_dir))

    def log(self, stream: str, step: int, metrics: dict[str, Any]) -> None:
        """Appends one row ``{"step": step, **metrics}`` (values converted to Python floats;
        non-finite ones to their string, e.g. ``"nan"``)."""
        row: dict[str, Any] = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            row[name] = value if math.isfinite(value) else str(value)
        self.history.setdefault(stream, []).append(row)
        for backend in self.backends:
            backend.write(stream, row)

    def write_config(self, config_dict: dict[str, Any]) -> None:
        """Writes the resolved config as ``run_dir/config.json`` and hands it to the backends
        that record configs."""
        if self.run_dir is not None:
            (self.run_dir / "config.json").write_text(
                json.dumps(config_dict, indent=2, default=str)
            )
        for backend in self.backends:
            backend.write_config(config_dict)

    def flush(self) -> None:
        for backend in self.backends:
            backend.flush()

    def close(self) -> None:
        """Closes the files; a later :meth:`log` reopens them in append mode."""
        for backend in self.backends:
            backend.close()
