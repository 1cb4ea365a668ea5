"""``pairlab plot RUN [RUN ...]``: redraw and overlay the curves of several runs, plus their final accuracies.

Each run directory is read without importing the training code:

- ``metrics.csv`` (:mod:`pairlab.train.tracking`: one row per step) gives per-step curves (x = ``step``);
- ``metrics.jsonl`` (one row per epoch, also written by the domain runners) is the fallback
  (x = ``step`` when the rows have it, else ``epoch``);
- ``metrics.json`` (final metrics) gives the bars (default ``knn_acc`` and ``linear_acc``) and, as a last
  resort for the curve, a ``history`` list (x = its index + 1).

Left panel: ``--metric`` (default ``loss``) of every run, one colour per run, legend = run name. Right panel:
grouped bars of the final metrics per run (a run without them has no bar). The figure is a
``matplotlib.figure.Figure`` (no pyplot global state); :func:`plot_runs` returns it so callers and tests can
read the drawn data back.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

RUN_FILES = ("metrics.csv", "metrics.jsonl", "metrics.json")
DEFAULT_BARS = ("knn_acc", "linear_acc")


@dataclass
class RunCurves:
    """What :func:`read_run` found in one run directory."""

    path: Path
    name: str
    steps: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows (numeric cells only)
    epochs: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows
    final: dict[str, Any] = field(default_factory=dict)  # metrics.json

    def curve(self, metric: str) -> tuple[str, list[float], list[float]] | None:
        """``(x_label, xs, ys)`` of ``metric`` from the finest source that has it, else ``None``."""
        pts = [(r["step"], r[metric]) for r in self.steps if metric in r and "step" in r]
        if pts:
            return "step", [p[0] for p in pts], [p[1] for p in pts]
        for xkey in ("step", "epoch"):
            pts = [(r[xkey], r[metric]) for r in self.epochs if _num(r.get(metric)) and _num(r.get(xkey))]
            if pts and len(pts) == sum(1 for r in self.epochs if _num(r.get(metric))):
                return xkey, [float(p[0]) for p in pts], [float(p[1]) for p in pts]
        hist = self.final.get("history") if metric == "loss" else self.final.get(metric)
        if isinstance(hist, list) and hist and all(_num(v) for v in hist):
            return "index", [float(i + 1) for i in range(len(hist))], [float(v) for v in hist]
        return None

    def available(self) -> set[str]:
        keys = {k for r in self.steps for k in r} | {k for r in self.epochs for k, v in r.items() if _num(v)}
        if isinstance(self.final.get("history"), list):
            keys.add("loss")
        return keys - {"step", "epoch"}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def read_run(path: str | Path) -> RunCurves:
    """Read the metrics files of one run directory; ``ValueError``/``FileNotFoundError`` if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"run directory {str(p)!r} does not exist")
    if not any((p / f).is_file() for f in RUN_FILES):
        raise ValueError(f"{str(p)!r} is not a run directory: it has none of {', '.join(RUN_FILES)} "
                         "(written by pairlab train)")
    run = RunCurves(path=p, name=p.resolve().name)
    if (p / "metrics.csv").is_file():
        with open(p / "metrics.csv", newline="") as f:
            for row in csv.DictReader(f):
                vals = {}
                for k, v in row.items():
                    try:
                        x = float(v) if k is not None and v not in (None, "") else None
                    except ValueError:
                        x = None
                    if x is not None and math.isfinite(x):
                        vals[k] = x
                run.steps.append(vals)
    if (p / "metrics.jsonl").is_file():
        for i, line in enumerate((p / "metrics.jsonl").read_text().splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{str(p / 'metrics.jsonl')!r} line {i + 1} is not JSON: {e}") from None
            if isinstance(row, dict):
                run.epochs.append(row)
    if (p / "metrics.json").is_file():
        try:
            data = json.loads((p / "metrics.json").read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{str(p / 'metrics.json')!r} is not JSON: {e}") from None
        if isinstance(data, dict):
            run.final = data
    return run


def _labels(runs: list[RunCurves]) -> list[str]:
    """Run names; clashing names get their parent folder prepended."""
    names = [r.name for r in runs]
    return [f"{r.path.resolve().parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def plot_runs(runs: list[str | Path], metric: str = "loss", out: str | Path | None = None,
              bars: tuple[str, ...] | list[str] = DEFAULT_BARS) -> Any:
    """Overlay ``metric`` of ``runs`` (left) and bar the final ``bars`` metrics (right); save to ``out``.

    Returns the ``matplotlib.figure.Figure``: ``fig.axes[0].get_lines()[i]`` is run ``i``'s curve.
    Raises ``ValueError`` when no run is given, a folder is not a run directory or no run has ``metric``.
    """
    if not runs:
        raise ValueError("plot needs at least one run directory")
    data = [read_run(r) for r in runs]
    curves = [d.curve(metric) for d in data]
    if all(c is None for c in curves):
        avail = sorted(set().union(*(d.available() for d in data)))
        raise ValueError(f"metric {metric!r} is in none of the runs; available: {', '.join(avail) or 'none'}")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax, axb = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    colours = [f"C{i % 10}" for i in range(len(data))]
    xlabels = set()
    for c, lab, col in zip(curves, _labels(data), colours, strict=True):
        if c is None:
            continue
        xl, xs, ys = c
        xlabels.add(xl)
        ax.plot(xs, ys, color=col, lw=1.2, marker="o" if len(xs) <= 30 else None, ms=3, label=lab)
    ax.set_xlabel(" / ".join(sorted(xlabels)))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per run")
    ax.legend(fontsize=8)
    missing = [lab for c, lab in zip(curves, _labels(data), strict=True) if c is None]
    if missing:
        ax.text(0.01, 0.01, f"no {metric}: {', '.join(missing)}", transform=ax.transAxes, fontsize=7, va="bottom")

    width = 0.8 / max(1, len(data))
    any_bar = False
    for i, (d, lab, col) in enumerate(zip(data, _labels(data), colours, strict=True)):
        xs = [j + (i - (len(data) - 1) / 2) * width for j in range(len(bars))]
        hs = [float(d.final[b]) if _num(d.final.get(b)) else math.nan for b in bars]
        if any(not math.isnan(h) for h in hs):
            any_bar = True
        cont = axb.bar(xs, hs, width=width, color=col, label=lab)
        axb.bar_label(cont, labels=["" if math.isnan(h) else f"{h:.3f}" for h in hs], fontsize=7)
    axb.set_xticks(range(len(bars)), list(bars))
    axb.set_ylabel("final value")
    axb.set_title("final metrics (metrics.json)")
    if not any_bar:
        axb.text(0.5, 0.5, "no final metrics", transform=axb.transAxes, ha="center", va="center")
    fig.tight_layout()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    return fig


def register(app: typer.Typer) -> None:
    @app.command("plot")
    def plot_cmd(
        runs: list[Path] = typer.Argument(..., help="Run directories (runs/<name>) to overlay."),
        metric: str = typer.Option("loss", "--metric", help="Curve to overlay: loss, lr, or any metrics.jsonl key."),
        out: Path = typer.Option(None, "--out", help="PNG to write (default: overlay-<metric>.png here)."),
        bars: str = typer.Option(",".join(DEFAULT_BARS), "--bars", help="Final metrics to bar, comma-separated."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Overlay the curves of several runs (one colour each) and bar their final kNN / linear accuracy."""
        target = out if out is not None else Path(f"overlay-{metric}.png")
        names = tuple(b.strip() for b in bars.split(",") if b.strip())
        plot_runs(runs, metric=metric, out=target, bars=names)
        if not quiet:
            print(f"wrote {target}")
