"""Leaderboard files of a grid: per-run CSV, per-variant Markdown table (mean ± std over seeds), one PNG per metric.

Aggregation (:func:`aggregate`): for each variant, over its runs with ``ok=True``: the mean and the sample
standard deviation (``ddof=1``; ``None`` for a single run) of every metric in
:data:`pairlab.compare.grid.METRICS`. Variants are sorted by mean kNN accuracy (descending); variants
with no successful run come last, with the first error. Baseline rows (raw features once, random-init
encoder per seed) are aggregated the same way under their own names.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pairlab.compare.grid import METRICS, ROW_FIELDS, Variant, finite

LABELS = {
    "knn_acc": "kNN acc", "linear_acc": "linear acc", "alignment": "alignment ↓", "uniformity": "uniformity ↓",
    "effective_rank": "eff. rank", "effective_rank_z": "eff. rank (z)", "epoch_s": "epoch s",
}


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (``ddof=1``) of the finite values; ``(None, None)`` if none, std ``None`` if one."""
    v = [float(x) for x in values if finite(x)]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)


def aggregate(rows: Sequence[dict[str, Any]], kind: str = "run") -> list[dict[str, Any]]:
    """Per-variant summaries of the rows of ``kind``, sorted by mean kNN accuracy (failed variants last)."""
    order: list[str] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("kind", "run") != kind:
            continue
        if r["variant"] not in groups:
            order.append(r["variant"])
            groups[r["variant"]] = []
        groups[r["variant"]].append(r)
    out = []
    for name in order:
        rs = groups[name]
        ok = [r for r in rs if r.get("ok")]
        summary: dict[str, Any] = {"variant": name, "n_ok": len(ok), "n_failed": len(rs) - len(ok),
                                   "seeds": [r["seed"] for r in ok],
                                   "errors": sorted({r["error"] for r in rs if not r.get("ok") and r.get("error")})}
        for m in METRICS:
            vals = [r.get(m) for r in ok]
            summary[m + "_mean"], summary[m + "_std"] = mean_std(vals)
            summary[m + "_values"] = [float(x) if finite(x) else None for x in vals]
        out.append(summary)
    ranked = sorted((s for s in out if s["n_ok"]), key=lambda s: -(s["knn_acc_mean"] if finite(s["knn_acc_mean"])
                                                                    else -math.inf))
    return ranked + [s for s in out if not s["n_ok"]]


def fmt(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _digits(metric: str) -> int:
    return {"effective_rank": 2, "effective_rank_z": 2, "epoch_s": 1}.get(metric, 4)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One line per row (runs and baselines), columns :data:`ROW_FIELDS`."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})
    return path


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Inverse of :func:`write_csv` (numbers parsed, empty cells -> None)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if v == "":
                    row[k] = None
                elif k in ("ok", "reused"):
                    row[k] = v == "True"
                elif k in ("seed", "steps"):
                    row[k] = int(v)
                elif k in METRICS or k in ("train_s", "eval_s", "wall_s", "load_avg"):
                    row[k] = float(v)
                else:
                    row[k] = v
            out.append(row)
    return out


def plot_metric(summaries: Sequence[dict[str, Any]], metric: str, path: Path,
                baselines: Sequence[dict[str, Any]] = ()) -> Path:
    """Mean per variant (bar) with the per-seed values (points); baseline means as dashed lines."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = [s for s in summaries if s[metric + "_mean"] is not None]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(ok) + 2), 3.8))
    xs = range(len(ok))
    ax.bar(xs, [s[metric + "_mean"] for s in ok], color="#9ecae1", edgecolor="#3182bd", width=0.6, label="mean")
    for i, s in enumerate(ok):
        pts = [v for v in s[metric + "_values"] if v is not None]
        ax.scatter([i] * len(pts), pts, color="#08306b", s=14, zorder=3, label="seeds" if i == 0 else None)
    for j, b in enumerate(baselines):
        if b.get(metric + "_mean") is not None:
            ax.axhline(b[metric + "_mean"], ls="--", lw=1, color=f"C{j + 1}", label=b["variant"])
    vals = [v for s in ok for v in s[metric + "_values"] if v is not None]
    vals += [b[metric + "_mean"] for b in baselines if b.get(metric + "_mean") is not None]
    if vals and metric in ("knn_acc", "linear_acc"):
        lo, hi = min(vals), max(vals)
        pad = max(0.02, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_xticks(list(xs))
    ax.set_xticklabels([s["variant"] for s in ok], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(f"{LABELS.get(metric, metric)}: mean over seeds (bars), each seed (points)", fontsize=9)
    if ok:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _budget(base: dict[str, Any]) -> str:
    from pairlab.train.config import make_config

    c = make_config(base, source="base config")
    ev = c.eval
    steps = f", at most {c.max_steps} steps" if c.max_steps else ""
    train_n = f"first {c.train_subset}" if c.train_subset else "all"
    return (f"data set `{c.dataset}`, {train_n} training samples, {c.epochs} epoch(s){steps}, batch {c.batch_size}, "
            f"{c.views} views, lr {c.lr}, temperature {c.temperature}; model widths {list(c.model.widths)}, "
            f"hidden {c.model.hidden_dim}, projection {c.model.proj_dim}; evaluation on "
            f"{ev.train_subset or 'all'} train / {ev.test_subset or 'all'} test samples (kNN k={ev.knn_k}, "
            f"T={ev.knn_temperature}; linear probe L-BFGS {ev.linear_max_iter} iterations), geometry on "
            f"{ev.geometry_samples} test samples; device `{c.device}`")


def markdown(rows: Sequence[dict[str, Any]], *, name: str = "", command: str = "", base: dict[str, Any] | None = None,
             variants: Sequence[Variant] = (), seeds: Sequence[int] = (), notes: str = "", title: str = "",
             plots: Sequence[str] = ()) -> str:
    """The Markdown leaderboard (see module docstring)."""
    summaries = aggregate(rows)
    base_s = aggregate(rows, kind="baseline")
    overrides = {v.name: v.overrides for v in variants}
    runs = [r for r in rows if r.get("kind", "run") == "run"]
    lines = [f"# {title or 'Leaderboard' + (f': {name}' if name else '')}", ""]
    if base is not None:
        try:
            lines += [f"**Budget (deliberately small, CPU):** {_budget(base)}. Seeds: {list(seeds)}.", ""]
        except ValueError:
            pass
    loads = [r["load_avg"] for r in runs if finite(r.get("load_avg"))]
    if loads:
        lines += [f"Machine load (1-min load average at the end of each run): mean {statistics.fmean(loads):.1f}, "
                  f"max {max(loads):.1f}; epoch seconds are wall-clock under that load, so compare them only within "
                  "this table.", ""]
    cols = ["rank", "variant", "overrides", "n", *[LABELS[m] for m in METRICS]]
    lines += ["Mean ± sample std (ddof=1) over seeds; sorted by kNN accuracy. ↓ = lower is better.", "",
              "| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * 3 + ["--:"] * (len(cols) - 3)) + "|"]
    for i, s in enumerate(summaries, 1):
        ov = overrides.get(s["variant"])
        ov_txt = "`" + json.dumps(ov, separators=(",", ":")).replace("|", "\\|") + "`" if ov else ""
        if s["n_ok"]:
            cells = [fmt(s[m + "_mean"], s[m + "_std"], _digits(m)) for m in METRICS]
            rank = str(i)
        else:
            cells = ["–"] * len(METRICS)
            rank = "–"
        n = f"{s['n_ok']}" + (f" (+{s['n_failed']} failed)" if s["n_failed"] else "")
        lines.append("| " + " | ".join([rank, s["variant"], ov_txt, n, *cells]) + " |")
    lines.append("")
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        lines += ["## Runs that did not train", "", "| variant | seed | reason |", "|---|--:|---|"]
        for r in failed:
            lines.append(f"| {r['variant']} | {r['seed']} | {str(r['error']).replace('|', '/')} |")
        lines.append("")
    if base_s:
        lines += ["## Baselines (same evaluation protocol, no training)", "",
                  "| features | n | kNN acc | linear acc |", "|---|--:|--:|--:|"]
        for s in base_s:
            if s["n_ok"]:
                lines.append(f"| {s['variant']} | {s['n_ok']} | {fmt(s['knn_acc_mean'], s['knn_acc_std'])} | "
                             f"{fmt(s['linear_acc_mean'], s['linear_acc_std'])} |")
            else:
                lines.append(f"| {s['variant']} | 0 | – | – | ({'; '.join(s['errors'])})")
        lines.append("")
    if notes.strip():
        lines += [notes.strip(), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    if command:
        lines += ["## Command", "", "```sh", command, "```", ""]
    if base is not None:
        from pairlab.train.config import dump_config, make_config

        try:
            text = dump_config(make_config(base, source="base config"))
        except ValueError:
            text = yaml.safe_dump(base, sort_keys=False)
        lines += ["## Base config", "", "Each run is this config with the variant's overrides, its seed, and "
                  "`name: <variant>-s<seed>`.", "", "```yaml", text.rstrip(), "```", ""]
    return "\n".join(lines)


def write_leaderboard(rows: Sequence[dict[str, Any]], out_dir: str | Path, *, name: str = "", command: str = "",
                      base: dict[str, Any] | None = None, variants: Sequence[Variant] = (),
                      seeds: Sequence[int] = (), notes: str = "", title: str = "",
                      plot: bool = True) -> dict[str, Path]:
    """Write ``leaderboard[-name].{csv,md}`` and ``leaderboard[-name]-<metric>.png``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "leaderboard" + (f"-{name}" if name else "")
    paths = {"csv": write_csv(rows, out_dir / f"{stem}.csv")}
    plots: list[str] = []
    if plot:
        summaries = aggregate(rows)
        base_s = [s for s in aggregate(rows, kind="baseline") if s["n_ok"]]
        if any(s["n_ok"] for s in summaries):
            for m in METRICS:
                p = plot_metric(summaries, m, out_dir / f"{stem}-{m}.png", base_s)
                paths[m] = p
                plots.append(str(p))
    md = markdown(rows, name=name, command=command, base=base, variants=variants, seeds=seeds, notes=notes,
                  title=title, plots=plots)
    paths["md"] = out_dir / f"{stem}.md"
    paths["md"].write_text(md)
    return paths
