"""Run tracking (TensorBoard, CSV, mlflow) and progress bars.

:class:`RunLogger` fans one stream of numbers out to the backends named in ``TrainConfig.loggers``
(``pairlab train --logger tensorboard,csv`` is the default; ``mlflow``; ``none``):

- ``tensorboard``: ``RUN/tensorboard/`` event files (``torch.utils.tensorboard.SummaryWriter``). Scalars
  ``train/loss`` and ``train/lr`` every step, ``epoch/<key>`` at the last step of each epoch,
  ``final/<key>`` (evaluation metrics) at the last step; the config as text.
- ``csv``: ``RUN/metrics.csv``, one row per optimiser step with the stable header :data:`CSV_COLUMNS`
  (``step, epoch, loss, lr`` then the epoch-level columns, filled on the last step of each epoch and empty
  elsewhere). ``lr`` is the learning rate the step used.
- ``mlflow``: an offline file store ``file:RUN/mlruns`` (experiment ``pairlab``, run name = run name);
  params = the flattened config (``model.widths`` ...), metrics ``loss``/``lr`` per step, epoch-level and
  final metrics, artefacts = the run's PNGs and ``metrics.csv``. mlflow >= 3 refuses file stores unless
  ``MLFLOW_ALLOW_FILE_STORE=true``; that opt-out is set for the store's creation only. Needs
  ``pip install mlflow-skinny``; without it a clear error is raised before training starts.

Only rank 0 logs (``enabled=False`` elsewhere gives a logger that does nothing). On resume
(``start_step > 0``) CSV rows after ``start_step`` (logged before a kill, then recomputed) are dropped,
TensorBoard purges its events from ``start_step + 1`` and the mlflow run recorded in ``RUN/mlflow_run_id``
continues.

:func:`progress` is the one progress-bar helper (rich): hidden with ``quiet=True`` and whenever stdout is not
a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

LOGGERS: tuple[str, ...] = ("tensorboard", "csv", "mlflow", "none")
DEFAULT_LOGGERS: tuple[str, ...] = ("tensorboard", "csv")
STEP_COLUMNS: tuple[str, ...] = ("step", "epoch", "loss", "lr")
EPOCH_COLUMNS: tuple[str, ...] = ("epoch_loss", "epoch_lr", "images_per_s", "epoch_s", "temperature")
CSV_COLUMNS: tuple[str, ...] = STEP_COLUMNS + EPOCH_COLUMNS
MLFLOW_HINT = "pip install mlflow-skinny"


def parse_loggers(value: str | Sequence[str] | None) -> list[str]:
    """``"tensorboard,csv"`` or a list -> validated, de-duplicated names; ``none`` means no backend.

    Raises ``ValueError`` naming the valid choices for an unknown name, or for ``none`` mixed with others.
    """
    if value is None:
        return list(DEFAULT_LOGGERS)
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"loggers must be strings, got {type(item).__name__} {item!r}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {item.strip()!r}; valid choices: {', '.join(LOGGERS)} "
                             "(comma-separated, e.g. --logger tensorboard,csv)")
        if name not in names:
            names.append(name)
    if "none" in names and len(names) > 1:
        raise ValueError(f"logger 'none' cannot be combined with others, got {','.join(names)}")
    return [] if names in ([], ["none"]) else names


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def numeric(d: dict[str, Any]) -> dict[str, float]:
    """The finite int/float entries of a (flattened) dict, as floats (bools and lists dropped)."""
    out = {}
    for k, v in flatten(d).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


class _CSV:
    def __init__(self, run_dir: Path, start_step: int):
        self.path = run_dir / "metrics.csv"
        rows: list[dict[str, str]] = []
        if start_step > 0 and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) == CSV_COLUMNS:
                    rows = [r for r in reader if r["step"] and int(r["step"]) <= start_step]
        self.file = open(self.path, "w", newline="")  # noqa: SIM115 (closed in close())
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()
        self.pending: dict[str, Any] | None = None

    def _flush_pending(self) -> None:
        if self.pending is not None:
            self.writer.writerow(self.pending)
            self.file.flush()
            self.pending = None

    def step(self, step: int, epoch: int, scalars: dict[str, float]) -> None:
        self._flush_pending()
        self.pending = {"step": step, "epoch": epoch, **{k: scalars[k] for k in ("loss", "lr") if k in scalars}}

    def epoch(self, step: int, row: dict[str, float]) -> None:
        vals = {"epoch_loss": row.get("loss"), "epoch_lr": row.get("lr"), "images_per_s": row.get("images_per_s"),
                "epoch_s": row.get("epoch_s"), "temperature": row.get("temperature")}
        vals = {k: v for k, v in vals.items() if v is not None}
        if self.pending is not None and self.pending["step"] == step:
            self.pending.update(vals)
        else:
            self._flush_pending()
            self.pending = {"step": step, "epoch": row.get("epoch", ""), **vals}

    def final(self, step: int, metrics: dict[str, float], artifacts: list[Path]) -> None:
        self._flush_pending()  # complete before mlflow copies it as an artefact

    def close(self, status: str) -> None:
        self._flush_pending()
        self.file.close()


class _TensorBoard:
    def __init__(self, run_dir: Path, start_step: int, config: dict[str, Any] | None):
        from torch.utils.tensorboard import SummaryWriter

        kw = {"purge_step": start_step + 1} if start_step > 0 else {}
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), **kw)
        if config is not None and start_step == 0:
            import yaml

            self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def step(self, step: int, epoch: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(f"train/{k}", v, step)

    def epoch(self, step: int, row: dict[str, float]) -> None:
        for k, v in row.items():
            if k not in ("step", "epoch"):
                self.writer.add_scalar(f"epoch/{k}", v, step)

    def final(self, step: int, metrics: dict[str, float], artifacts: list[Path]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"final/{k}", v, step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, start_step: int, config: dict[str, Any] | None, run_name: str):
        mlflow = import_mlflow()
        from mlflow.tracking import MlflowClient

        self.Metric = mlflow.entities.Metric
        self.uri = (run_dir.resolve() / "mlruns").as_uri()
        old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # mlflow >= 3: file stores are opt-in
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            id_file = run_dir / "mlflow_run_id"
            self.run_id = None
            if start_step > 0 and id_file.is_file():
                with contextlib.suppress(Exception):
                    self.run_id = self.client.get_run(id_file.read_text().strip()).info.run_id
                    self.client.update_run(self.run_id, status="RUNNING")
            if self.run_id is None:
                exp = self.client.get_experiment_by_name("pairlab")
                exp_id = exp.experiment_id if exp is not None else self.client.create_experiment("pairlab")
                self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
                id_file.write_text(self.run_id + "\n")
                if config is not None:
                    params = [mlflow.entities.Param(k, str(v)[:500]) for k, v in flatten(config).items()]
                    for i in range(0, len(params), 100):
                        self.client.log_batch(self.run_id, params=params[i : i + 100])
        finally:
            if old is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = old
        self.buffer: list[Any] = []

    def _add(self, values: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self.buffer.extend(self.Metric(k.replace("/", "_"), float(v), ts, int(step)) for k, v in values.items())
        if len(self.buffer) >= 900:
            self._flush()

    def _flush(self) -> None:
        for i in range(0, len(self.buffer), 900):  # mlflow accepts at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=self.buffer[i : i + 900])
        self.buffer = []

    def step(self, step: int, epoch: int, scalars: dict[str, float]) -> None:
        self._add(scalars, step)

    def epoch(self, step: int, row: dict[str, float]) -> None:
        self._add({f"epoch_{k}": v for k, v in row.items() if k not in ("step", "epoch")}, step)
        self._flush()

    def final(self, step: int, metrics: dict[str, float], artifacts: list[Path]) -> None:
        self._add({f"final_{k}": v for k, v in metrics.items()}, step)
        self._flush()
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self._flush()
        self.client.set_terminated(self.run_id, status=status)


def import_mlflow() -> Any:
    """``import mlflow`` or a ``ValueError`` saying how to install it (``pairlab`` exits 2 with that line)."""
    try:
        import mlflow
        import mlflow.entities
    except Exception as e:  # not installed, or broken (e.g. a protobuf clash): one clear line either way
        raise ValueError(f"--logger mlflow needs a working mlflow package: {MLFLOW_HINT} "
                         f"(import failed: {type(e).__name__}: {e})") from None
    return mlflow


class RunLogger:
    """Fan-out of per-step scalars, epoch rows and final metrics to the configured backends.

    Args:
        run_dir: the run directory (``runs/<name>``); created if missing.
        loggers: backend names (see :func:`parse_loggers`); ``[]`` or ``["none"]`` logs nothing.
        config: the run's config as a plain dict (TensorBoard text, mlflow params).
        enabled: ``False`` on ranks other than 0: nothing is written.
        start_step: the step a resumed run continues from (0 for a fresh run).
        run_name: mlflow run name (default: the folder name).

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with RunLogger(d, ["csv"]) as log:
        ...     log.log_step(1, 1, loss=2.5, lr=0.1)
        >>> open(d + "/metrics.csv").read().splitlines()[1]
        '1,1,2.5,0.1,,,,,'
    """

    def __init__(self, run_dir: str | os.PathLike, loggers: Sequence[str] | str | None = DEFAULT_LOGGERS, *,
                 config: dict[str, Any] | None = None, enabled: bool = True, start_step: int = 0,
                 run_name: str | None = None):
        names = parse_loggers(loggers)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.run_dir = Path(run_dir)
        self.names = names if enabled else []
        self.step = start_step
        self.closed = False
        self.backends: list[Any] = []
        if "mlflow" in self.names:
            import_mlflow()  # fail before any file is written
        if self.names:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in sorted(self.names, key=LOGGERS.index):  # csv first: flushed before mlflow copies it
                if name == "csv":
                    self.backends.append(_CSV(self.run_dir, start_step))
                elif name == "tensorboard":
                    self.backends.append(_TensorBoard(self.run_dir, start_step, config))
                elif name == "mlflow":
                    self.backends.append(_MLflow(self.run_dir, start_step, config, run_name or self.run_dir.name))
        except BaseException:
            self.close(status="FAILED")
            raise

    def log_step(self, step: int, epoch: int, **scalars: float) -> None:
        """Scalars of optimiser step ``step`` (1-based) in epoch ``epoch`` (1-based), e.g. ``loss``, ``lr``."""
        self.step = int(step)
        vals = {k: float(v) for k, v in scalars.items() if v is not None}
        for b in self.backends:
            b.step(self.step, int(epoch), vals)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """The epoch row written to ``metrics.jsonl`` (needs ``step``; numeric entries are logged)."""
        step = int(row.get("step", self.step))
        vals = numeric(row)
        for b in self.backends:
            b.epoch(step, vals)

    def log_final(self, metrics: dict[str, Any], artifacts: Iterable[str | os.PathLike] = ()) -> None:
        """Final (evaluation) metrics: numeric entries, nested dicts flattened; ``artifacts`` go to mlflow."""
        skip = {"steps", "world_size", "cpu_count", "torch_threads"}
        vals = {k: v for k, v in numeric(metrics).items() if k not in skip}
        paths = [Path(p) for p in artifacts if Path(p).is_file()]
        for b in self.backends:
            b.final(self.step, vals, paths)

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close every backend (idempotent); ``status`` is the mlflow run status."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for b in self.backends:
            try:
                b.close(status)
            except Exception as e:  # close the others anyway
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close("FINISHED" if exc_type is None else "FAILED")


def show_progress(quiet: bool = False, stream: Any = None) -> bool:
    """Progress bars are shown only when not ``quiet`` and ``stream`` (default stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


class _Bar:
    """Handle returned by :func:`progress`; a no-op when hidden."""

    def __init__(self, prog: Any, task: Any):
        self.prog, self.task = prog, task

    def advance(self, n: float = 1, **fields: Any) -> None:
        if self.prog is not None:
            self.prog.update(self.task, advance=n, **fields)

    def update(self, **kwargs: Any) -> None:
        if self.prog is not None:
            self.prog.update(self.task, **kwargs)

    def print(self, *args: Any) -> None:
        if self.prog is not None:
            self.prog.console.print(*args)


@contextlib.contextmanager
def progress(label: str, total: float | None, *, quiet: bool = False, status: str = "") -> Iterator[_Bar]:
    """A rich progress bar ``label [bar] n/total status``, hidden when quiet or stdout is not a terminal.

    Use ``bar.advance(n)`` and ``bar.update(status=..., total=...)``.
    """
    if not show_progress(quiet):
        yield _Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=True)
    task = prog.add_task(label, total=total, status=status)
    prog.start()
    try:
        yield _Bar(prog, task)
    finally:
        prog.stop()
