"""Domains beyond images: text, time series, paired sensor data.

Each domain module (:mod:`~pairlab.domains.text`, :mod:`~pairlab.domains.timeseries`,
:mod:`~pairlab.domains.paired`) brings dataset loaders (registered under kind ``datasets``), modality views,
a small standard encoder, the field's evaluation protocol and a ``train(cfg) -> metrics`` runner that writes
the same run-directory artefacts as the image loop (``config.yaml``, ``metrics.jsonl``, ``metrics.json``,
PNGs).

Dispatch: a domain config is a YAML mapping with a top-level ``domain:`` key (``text``, ``timeseries`` or
``paired``); :func:`run` validates it with that domain's pydantic config and calls its runner::

    pairlab.domains.run(yaml.safe_load(open("configs/ts-gunpoint.yaml")))
    pairlab domain-train configs/ts-gunpoint.yaml --seed 1
    pairlab domain-compare configs/ts-*.yaml --seeds 0,1,2 --out benchmarks/results/leaderboard-timeseries

:func:`compare` is the grid runner (configs x seeds) that writes a leaderboard ``.csv``, ``.md`` and ``.png``
with mean and standard deviation over seeds, the baselines every run reports (e.g. 1-NN Euclidean, raw
features, random init, the pretrained model) beside the contrastive variants, and the command that made it.
This module imports no domain module (and no torch) until it is used.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

DOMAINS: dict[str, str] = {
    "text": "pairlab.domains.text",
    "timeseries": "pairlab.domains.timeseries",
    "paired": "pairlab.domains.paired",
    "seqrec": "pairlab.domains.seqrec",
    "graph": "pairlab.domains.graph",
}


def domain_module(domain: str):
    """The module of ``domain`` (``text``, ``timeseries``, ``paired``)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    return importlib.import_module(DOMAINS[domain])


def domain_of(data: dict[str, Any]) -> str | None:
    """The ``domain`` key of a config mapping (None for an image config)."""
    d = data.get("domain") if isinstance(data, dict) else None
    if d is not None and d not in DOMAINS:
        raise ValueError(f"config key 'domain' must be one of {sorted(DOMAINS)}, got {d!r}")
    return d


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif v is not None:
            out[k] = v
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """YAML mapping of a config file (``FileNotFoundError`` / ``ValueError`` with the path)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at top level, got {type(data).__name__}")
    return data


def make_config(data: dict[str, Any], source: str = "arguments"):
    """Validate a domain config mapping into that domain's pydantic config."""
    domain = domain_of(data)
    if domain is None:
        raise ValueError(f"config ({source}) has no 'domain' key; expected one of {sorted(DOMAINS)}")
    return domain_module(domain).make_config(data, source)


def run(cfg: dict[str, Any] | str | Path, overrides: dict[str, Any] | None = None, *, overwrite: bool = False,
        quiet: bool = False) -> dict[str, Any]:
    """Train + evaluate one domain config (a mapping or a YAML path); returns the metrics.

    ``overrides`` (``None`` values ignored) are merged into the mapping before validation.
    """
    source = "arguments"
    if isinstance(cfg, (str, Path)):
        source, cfg = str(cfg), read_config(cfg)
    data = _merge(dict(cfg), dict(overrides or {}))
    config = make_config(data, source)
    return domain_module(config.domain).train(config, overwrite=overwrite, quiet=quiet)


# ---------------------------------------------------------------------------------------------------- run directory


class RunDir:
    """The artefacts of one run: ``config.yaml``, ``metrics.jsonl`` (one row per epoch/step), ``metrics.json``.

    Each row also goes to :class:`pairlab.train.tracking.RunLogger` (default: ``tensorboard/`` and
    ``metrics.csv``; x = the row's ``step``, else its ``epoch``), closed by :meth:`finish`.
    """

    def __init__(self, runs_dir: str | Path, name: str, overwrite: bool = False,
                 loggers: Sequence[str] | None = None):
        from pairlab.train.tracking import RunLogger

        self.path = Path(runs_dir) / name
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise ValueError(f"run directory {str(self.path)!r} already exists; pass --overwrite to replace it "
                                 "or --name for a new run")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.tracker = RunLogger(self.path, loggers, run_name=name)

    def write_config(self, cfg: Any) -> None:
        import yaml

        (self.path / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        step = row.get("step", row.get("epoch"))
        if isinstance(step, int):
            self.tracker.log_step(step, int(row.get("epoch", 0)), loss=row.get("loss"), lr=row.get("lr"))
            self.tracker.log_epoch({**row, "step": step})

    def finish(self, metrics: dict[str, Any], t_start: float) -> dict[str, Any]:
        import os

        import torch

        metrics = {"run_dir": str(self.path), **metrics}
        metrics["wall_s"] = time.perf_counter() - t_start
        metrics["load_avg_end"] = list(os.getloadavg())
        metrics["cpu_count"] = os.cpu_count()
        metrics["torch_threads"] = torch.get_num_threads()
        metrics["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        self.tracker.log_final(metrics)
        self.tracker.close()
        return metrics


@contextlib.contextmanager
def fit_progress(label: str, total: int, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """Progress of a runner's fit loop; yields ``tick(line, show=True)``, called once per epoch (or step).

    On a terminal: one rich bar (:func:`pairlab.train.tracking.progress`, ``label [bar] n/total line``) and no
    lines. Off a terminal (piped, CI logs): the plain ``line`` when ``show`` (runners thin them, e.g. every
    10th epoch). ``quiet``: nothing.
    """
    from pairlab.train.tracking import progress, show_progress

    bar_on = show_progress(quiet)
    with progress(label, total, quiet=quiet) as bar:

        def tick(line: str, show: bool = True) -> None:
            if bar_on:
                bar.advance(status=line)
            elif show and not quiet:
                print(line, flush=True)

        yield tick


def plot_history(history: Sequence[float], path: Path, ylabel: str = "loss", xlabel: str = "epoch") -> Path:
    """Line plot of a per-epoch (or per-step) series."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(range(1, len(history) + 1), list(history), marker="o" if len(history) < 40 else None, ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"training {ylabel}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------- grid runner


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(
    configs: Sequence[str | Path],
    seeds: Sequence[int] = (0, 1, 2),
    out: str | Path | None = None,
    runs_dir: str | Path = "runs/compare",
    command: str | None = None,
    quiet: bool = True,
    overrides: dict[str, Any] | None = None,
    reuse: bool = True,
) -> list[dict[str, Any]]:
    """Run every config for every seed; aggregate a leaderboard (mean and std over seeds).

    Each run's ``metrics["leaderboard"]`` is ``{row_name: {metric: value}}``: the learned row under the
    config's ``name`` and the baselines the domain runner evaluates (identical across configs of one data
    set; the first config's are kept). Rows are grouped by ``metrics["leaderboard_group"]`` (the data set).
    With ``reuse``, a run directory whose ``config.yaml`` equals the intended config and which holds
    ``metrics.json`` is read back instead of retrained. With ``out`` (a path without suffix) writes ``out.csv``,
    ``out.md`` and ``out.png``. Returns the rows.
    """
    if not configs:
        raise ValueError("compare needs at least one config file")
    if not seeds:
        raise ValueError("compare needs at least one seed")
    per: dict[tuple[str, str], dict[str, list[float]]] = {}
    kind: dict[tuple[str, str], str] = {}
    order: list[tuple[str, str]] = []
    owner: dict[tuple[str, str], str] = {}
    t0 = time.perf_counter()
    for path in configs:
        data = read_config(path) if isinstance(path, (str, Path)) else dict(path)
        for seed in seeds:
            name = f"{data.get('name', Path(str(path)).stem)}-s{seed}"
            over = _merge(dict(overrides or {}), {"seed": int(seed), "name": name, "runs_dir": str(runs_dir)})
            m = _reuse(data, over, Path(runs_dir) / name) if reuse else None
            if m is None:
                m = run(data, over, overwrite=True, quiet=quiet)
            group = str(m.get("leaderboard_group", ""))
            base_name = str(data.get("name", Path(str(path)).stem))
            for row, vals in m["leaderboard"].items():
                is_base = row in m.get("leaderboard_baselines", [])
                row = base_name if row == name else row  # the learned row of every seed under the config's name
                key = (group, row)
                if key not in per:
                    per[key], kind[key], owner[key] = {}, "baseline" if is_base else "contrastive", str(path)
                    order.append(key)
                if owner[key] != str(path):
                    continue  # a baseline already measured (for every seed) by an earlier config of this data set
                for metric, v in vals.items():
                    per[key].setdefault(metric, []).append(float(v))
            if not quiet:
                print(f"{name}: {json.dumps(m['leaderboard'].get(name, {}))}", flush=True)
    rows = []
    for key in order:
        group, row = key
        r: dict[str, Any] = {"dataset": group, "method": row, "kind": kind[key]}
        for metric, vals in per[key].items():
            mu, sd = _mean_std(vals)
            r[metric], r[f"{metric}_std"], r["n_seeds"] = mu, sd, len(vals)
        rows.append(r)
    if out is not None:
        write_leaderboard(rows, Path(out), command or "pairlab domain-compare " + " ".join(map(str, configs)),
                          seeds, time.perf_counter() - t0)
    return rows


def _reuse(data: dict[str, Any], over: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The saved metrics of ``run_dir`` if it finished with exactly this config, else None."""
    import yaml

    if not (run_dir / "metrics.json").is_file() or not (run_dir / "config.yaml").is_file():
        return None
    intended = make_config(_merge(dict(data), over)).model_dump(mode="json")
    if yaml.safe_load((run_dir / "config.yaml").read_text()) != intended:
        return None
    m = json.loads((run_dir / "metrics.json").read_text())
    return m if "leaderboard" in m else None


def _metric_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for k in r:
            if k not in ("dataset", "method", "kind", "n_seeds") and not k.endswith("_std") and k not in names:
                names.append(k)
    return names


def write_leaderboard(rows: list[dict[str, Any]], out: Path, command: str, seeds: Sequence[int],
                      seconds: float) -> dict[str, Path]:
    """``out.csv`` (all columns), ``out.md`` (mean ± std, the command) and ``out.png`` (bar chart)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    metrics = _metric_names(rows)
    cols = ["dataset", "method", "kind", "n_seeds"] + [c for m in metrics for c in (m, f"{m}_std")]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = [f"# Leaderboard: {out.name}", "", f"Command: `{command}`", "",
             f"Seeds: {list(seeds)}; mean ± std over seeds; {seconds / 60:.1f} min wall on "
             f"{_cpu_desc()}.", ""]
    lines.append("| dataset | method | kind | " + " | ".join(metrics) + " |")
    lines.append("|---" * (3 + len(metrics)) + "|")
    for r in rows:
        cells = [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if m in r else "-" for m in metrics]
        lines.append(f"| {r['dataset']} | {r['method']} | {r['kind']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    _plot_leaderboard(rows, metrics, out.with_suffix(".png"))
    return {"csv": out.with_suffix(".csv"), "md": out.with_suffix(".md"), "png": out.with_suffix(".png")}


def _cpu_desc() -> str:
    import os

    return f"{os.cpu_count()} CPU cores (load {os.getloadavg()[0]:.1f})"


def _plot_leaderboard(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    shown = metrics[:4]
    groups = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(shown), 1, figsize=(max(6.0, 1.2 * len(rows)), 2.6 * len(shown)), squeeze=False)
    labels = [f"{r['dataset']}\n{r['method']}" if len(groups) > 1 else r["method"] for r in rows]
    colors = ["tab:gray" if r["kind"] == "baseline" else "tab:blue" for r in rows]
    for ax, m in zip(axes[:, 0], shown, strict=True):
        y = [r.get(m, float("nan")) for r in rows]
        e = [r.get(m + "_std", 0.0) for r in rows]
        ax.bar(range(len(rows)), y, yerr=e, color=colors, capsize=2)
        ax.set_ylabel(m, fontsize=8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
    axes[0, 0].set_title(f"{path.stem} (grey: baselines; blue: contrastive; mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------------- CLI


def register(app) -> None:
    """``pairlab domain-train CONFIG`` and ``pairlab domain-compare CONFIG... --seeds --out``."""
    import typer

    @app.command("domain-train")
    def domain_train(
        config: Path = typer.Argument(..., help="A domain config (YAML with 'domain: text|timeseries|paired')."),
        seed: int = typer.Option(None, "--seed"),
        name: str = typer.Option(None, "--name", help="Run name: writes runs/<name>/."),
        runs_dir: str = typer.Option(None, "--runs-dir"),
        epochs: int = typer.Option(None, "--epochs"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Train and evaluate a text / time-series / paired-sensor config; prints the metrics."""
        over = {"seed": seed, "name": name, "runs_dir": runs_dir, "epochs": epochs}
        m = run(config, over, overwrite=overwrite, quiet=quiet)
        if not quiet:
            typer.echo(json.dumps(m.get("leaderboard", m), indent=2))
            typer.echo(f"artefacts in {m['run_dir']}/")

    @app.command("domain-compare")
    def domain_compare(
        configs: list[Path] = typer.Argument(..., help="Domain configs (one leaderboard row each)."),
        seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
        out: str = typer.Option(None, "--out", help="Leaderboard path without suffix (.csv/.md/.png written)."),
        runs_dir: str = typer.Option("runs/compare", "--runs-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Grid of configs x seeds -> leaderboard (mean ± std), with the baselines of each field."""
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
        cmd = "pairlab domain-compare " + " ".join(map(str, configs)) + f" --seeds {seeds}" + (
            f" --out {out}" if out else "")
        rows = compare(configs, seed_list, out, runs_dir, command=cmd, quiet=quiet)
        if not quiet:
            for r in rows:
                typer.echo(json.dumps(r))
