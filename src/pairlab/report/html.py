"""Self-contained HTML reports: one per training run, one per comparison grid (``pairlab report DIR``).

A report is a single ``report.html`` with no external resource (no CDN, no stylesheet or font to fetch, no
JavaScript needed to read it): every plot is a PNG embedded as a ``data:image/png;base64`` URI, every table is
plain HTML, every piece of user text (config YAML, variant names, error messages) is HTML-escaped.

Run report (:func:`write_run_report`, ``RUN/report.html``): run name, dates, seed, versions (python, torch,
pairlab: those recorded in ``metrics.json`` at training time, else the current ones, marked so), the final
metrics (learned vs raw pixels vs random init for kNN and linear probe; geometry: alignment, uniformity,
effective rank, pos/neg score gap), the per-epoch table (``metrics.jsonl``), every ``*.png`` of the run, a
small multiple of the per-epoch positive/negative score histograms (``score_hist.jsonl``, one panel per
epoch, at most :data:`MAX_PANELS` evenly spaced epochs including the first and the last) and the config.

Per-epoch histograms (:class:`EpochHistograms`, called by the training loop at every epoch end): cosine
scores of the projection output on a fixed held-out batch (the first ``n=256`` test images, two views drawn
once from a generator seeded by the run's seed, so every epoch scores the same pairs), computed without
gradient in ``eval()`` mode (the model's mode is restored), summarised by
:func:`pairlab.metrics.histograms.score_histograms` (fixed 40 bins over ``[-1, 1]``) and appended as one
JSON line per epoch. Drawing the views does not touch the global RNG stream, so training (and resuming) is
unchanged by it.

Comparison report (:func:`write_compare_report`, ``OUT/report[-name].html``): the per-variant leaderboard
(mean ± sample std over seeds, as in the Markdown leaderboard), the baselines, one row per run (with a link
to the run's own report when it exists) and every ``leaderboard[-name]-<metric>.png``.

Image check: each ``<img>`` has a stable ``id`` (``img-<name>``) and the page carries a five-line inline
script that, after ``load``, records on every image ``data-decoded="1"|"0"`` (``naturalWidth > 0``) and its
box, and writes a one-line summary into ``<pre id="img-status">``; a broken image is also flagged in red on
the page. The page reads the same without JavaScript; the script exists so a headless browser
(``chromium --headless --dump-dom``) can prove that each embedded image decodes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

#: most per-epoch panels in the histogram small multiple (evenly spaced epochs, first and last included)
MAX_PANELS = 12
#: held-out images scored for the per-epoch histograms
HIST_SAMPLES = 256
SCORE_HIST = "score_hist.jsonl"
REPORT = "report.html"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1120px;color:#222;
background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:3px;
margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:0.85em}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:0.85em;color:#555}
.scroll{overflow-x:auto}.meta td{text-align:left}.bad{color:#b00;font-weight:bold}.muted{color:#777}
"""

# records, for each <img>, whether it decoded and where it sits; flags broken ones (the page reads fine without it)
_SCRIPT = """
window.addEventListener("load",function(){var r=[],bad=0;document.querySelectorAll("img").forEach(function(i){
var ok=i.complete&&i.naturalWidth>0,b=i.getBoundingClientRect();i.setAttribute("data-decoded",ok?"1":"0");
i.setAttribute("data-box",[b.left+scrollX,b.top+scrollY,b.width,b.height].map(Math.round).join(","));
if(!ok){bad++;var p=document.createElement("p");p.className="bad";p.textContent="image "+i.id+" failed to decode";
i.parentNode.insertBefore(p,i);}r.push(i.id+"="+(ok?1:0));});
document.getElementById("img-status").textContent="images:"+r.length+" broken:"+bad+" "+r.join(" ");});
"""


# ----------------------------------------------------------------------------------------------------------------
# per-epoch score histograms (used by the training loop)


class EpochHistograms:
    """Positive/negative score histograms of a fixed held-out batch, one JSON line per call.

    Args:
        x: held-out samples, images ``[N, C, H, W]`` or vectors ``[N, D]`` (the first ``n`` are used).
        views: the run's views (:class:`~pairlab.data.views.Views` or :class:`~pairlab.data.user.VectorViews`),
            reused with ``k=2`` (:func:`pairlab.train.evaluate.two_views`), or any callable giving ``[N, K>=2, ...]``.
        seed: seeds the generator that draws the two views once.
        n: number of images (``min(n, N)``; at least 2 are needed for negatives).
    """

    def __init__(self, x: torch.Tensor, views: Any, seed: int, n: int = HIST_SAMPLES):
        n = min(int(n), int(x.shape[0]))
        if n < 2:
            raise ValueError(f"per-epoch score histograms need at least 2 held-out images, got {x.shape[0]}")
        from pairlab.train.evaluate import two_views

        two = two_views(views) if isinstance(getattr(views, "k", None), int) else views
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            v = two(x[:n])
        if v.ndim < 3 or v.shape[1] < 2:
            raise ValueError(f"views must give [N, K>=2, ...] for the score histograms, got {tuple(v.shape)}")
        self.v1, self.v2 = v[:, 0].contiguous(), v[:, 1].contiguous()

    @torch.no_grad()
    def compute(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> dict[str, Any]:
        """Histogram summary of ``model``'s projections (``eval()`` mode, restored afterwards)."""
        from pairlab.metrics.histograms import score_histograms

        was = model.training
        model.eval()
        try:
            z1 = model(self.v1.to(device)).float().cpu()
            z2 = model(self.v2.to(device)).float().cpu()
        finally:
            model.train(was)
        return score_histograms(z1, z2)

    def row(self, model: torch.nn.Module, epoch: int, step: int, device: str | torch.device = "cpu") -> dict[str, Any]:
        """The ``score_hist.jsonl`` row ``{"epoch", "step", "n", **summary}`` of ``model`` at this epoch."""
        return {"epoch": int(epoch), "step": int(step), "n": int(self.v1.shape[0]), **self.compute(model, device)}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (missing file: ``[]``; unreadable lines are skipped, e.g. a torn last line)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict):
            rows.append(r)
    return rows


def last_per_epoch(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ``epoch`` (the last written wins: a resumed run may repeat an epoch), sorted by epoch."""
    by: dict[Any, dict[str, Any]] = {}
    for r in rows:
        by[r.get("epoch")] = r
    return [by[k] for k in sorted(by, key=lambda e: (e is None, e if isinstance(e, (int, float)) else 0))]


def pick_panels(n: int, most: int = MAX_PANELS) -> list[int]:
    """Indices of at most ``most`` evenly spaced items of ``n``, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def histogram_small_multiple(rows: Sequence[dict[str, Any]]) -> bytes:
    """PNG bytes: one panel per epoch (density of positive vs negative cosine scores, shared axes)."""
    from pairlab.report.plots import _plt

    plt = _plt()
    rows = [rows[i] for i in pick_panels(len(rows))]
    n = len(rows)
    if n == 0:
        raise ValueError("no per-epoch histogram rows to plot")
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols + 0.4, 2.0 * nrows + 0.5), sharex=True, sharey=True,
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, r in zip(axes.flat[:n], rows, strict=True):
        edges = torch.tensor(r["bin_edges"], dtype=torch.float64)
        width = edges[1:] - edges[:-1]
        for key, color, lab in (("neg_hist", "C0", "neg"), ("pos_hist", "C1", "pos")):
            h = torch.tensor(r[key], dtype=torch.float64)
            dens = h / (h.sum().clamp_min(1) * width)
            ax.stairs(dens.numpy(), edges.numpy(), fill=True, alpha=0.55, color=color, label=lab)
        ax.set_title(f"epoch {r.get('epoch')}  gap {r.get('gap', float('nan')):.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-1, 1)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("positive vs negative cosine scores per epoch (fixed held-out batch, 2 fixed views)", fontsize=9)
    fig.supxlabel("cosine similarity of projections", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# HTML pieces


def esc(x: Any) -> str:
    """HTML-escaped text of ``x``."""
    return html.escape(str(x), quote=True)


def fmt_value(v: Any, digits: int = 4) -> str:
    """Numbers to fixed digits (ints unchanged), ``None`` to an en dash, anything else to escaped text."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        if abs(v) >= 1000:
            return f"{v:.1f}"
        return f"{v:.{digits - 1}e}" if v != 0 and abs(v) < 1e-3 else f"{v:.{digits}f}"
    return esc(v)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, table_id: str = "") -> str:
    """An HTML table; the first ``left`` columns are left-aligned text, the rest formatted values."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    out = [f'<div class="scroll"><table{ident}><thead><tr>']
    out += [f'<th class="l">{esc(h)}</th>' if i < left else f"<th>{esc(h)}</th>" for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for r in rows:
        cells = [f'<td class="l">{c if isinstance(c, _Raw) else esc(c)}</td>' if i < left
                 else f"<td>{c if isinstance(c, _Raw) else fmt_value(c)}</td>" for i, c in enumerate(r)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


class _Raw(str):
    """Already-safe HTML for a table cell."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def img_tag(data: bytes, name: str, caption: str = "", mime: str = "image/png") -> str:
    """A ``<figure>`` holding ``data`` as a base64 data URI, ``id="img-<name>"``."""
    uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img id="img-{esc(slug(name))}" alt="{esc(caption or name)}" src="{uri}">{cap}</figure>'


def page(title: str, body: Sequence[str]) -> str:
    """The whole document: inline CSS, body sections, the image-check script, a status line."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body)
            + '\n<pre id="img-status" class="muted">images: not checked (JavaScript off)</pre>'
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def _versions(metrics: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """Versions recorded by the run (``metrics.json``), else the current ones (second value False)."""
    import pairlab

    rec = metrics.get("versions") if isinstance(metrics.get("versions"), dict) else {}
    now = {"python": sys.version.split()[0], "torch": torch.__version__, "pairlab": pairlab.__version__}
    out = {k: str(rec.get(k, now[k])) for k in ("python", "torch", "pairlab")}
    out.update({k: str(v) for k, v in rec.items() if k not in out})
    return out, bool(rec)


def _mtime(p: Path) -> str:
    if not p.exists():
        return "–"
    return _dt.datetime.fromtimestamp(p.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# run report

_GEOMETRY = (("alignment", "alignment ↓ (α=2, test views)"), ("uniformity", "uniformity ↓ (t=2)"),
             ("effective_rank", "effective rank (backbone features)"),
             ("effective_rank_z", "effective rank (projections z)"), ("feature_dim", "feature dim"))
_TIMING = ("steps", "train_s", "eval_s", "wall_s", "cpu_s", "world_size", "torch_threads", "cpu_count")


def _final_metrics(m: dict[str, Any]) -> list[str]:
    out = ["<h2>Final metrics</h2>"]
    if not any(k in m for k in ("knn_acc", "linear_acc")):
        out.append('<p class="muted">No evaluation recorded (metrics.json has no kNN / linear accuracy).</p>')
    else:
        rows = [(name, m.get(f"{p}knn_acc"), m.get(f"{p}linear_acc"))
                for name, p in (("learned (backbone)", ""), ("raw pixels", "raw_"), ("random init", "random_"))]
        out.append(table(["features", "kNN acc", "linear acc"], rows, table_id="final-metrics"))
    geo = [(label, m[k]) for k, label in _GEOMETRY if k in m]
    sc = m.get("scores") if isinstance(m.get("scores"), dict) else {}
    geo += [(f"score {k.replace('_', ' ')} (test views)", sc[k]) for k in ("pos_mean", "neg_mean", "gap") if k in sc]
    if geo:
        out += ["<h3>Geometry</h3>", table(["quantity", "value"], geo, table_id="geometry")]
    tim = [(k, m[k]) for k in _TIMING if k in m and not isinstance(m[k], (list, dict))]
    if tim:
        out += ["<h3>Budget</h3>", table(["quantity", "value"], tim, table_id="timing")]
    return out


def _epoch_table(rows: Sequence[dict[str, Any]], hist: Sequence[dict[str, Any]]) -> list[str]:
    hist_by = {h.get("epoch"): h for h in hist}
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r.items() if k not in keys and not isinstance(v, (list, dict))]
    extra = [k for k in ("pos_mean", "neg_mean", "gap") if any(k in h for h in hist)]
    epochs = [r.get("epoch") for r in rows] + [h.get("epoch") for h in hist if h.get("epoch") not in
                                                 {r.get("epoch") for r in rows}]
    if not keys and not extra:
        return ["<h2>Per epoch</h2>", '<p class="muted">No per-epoch rows (metrics.jsonl is missing or empty).</p>']
    if "epoch" not in keys:
        keys.insert(0, "epoch")
    by = {r.get("epoch"): r for r in rows}
    body = []
    for e in epochs:
        r, h = by.get(e, {"epoch": e}), hist_by.get(e, {})
        body.append([r.get(k) if k != "epoch" else e for k in keys] + [h.get(k) for k in extra])
    header = keys + [f"held-out {k.replace('_', ' ')}" for k in extra]
    return ["<h2>Per epoch</h2>", table(header, body, left=0, table_id="per-epoch")]


def write_run_report(run_dir: str | Path, out: str | Path | None = None, plots: bool = True) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from the run's files; returns its path.

    Uses ``config.yaml`` (required), and when present ``metrics.json``, ``metrics.jsonl``,
    ``score_hist.jsonl`` and every ``*.png``. ``plots=False`` skips drawing the per-epoch histogram figure
    (the table keeps the held-out pos/neg means); PNGs already in the run directory are still embedded.
    """
    import yaml

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    cfg_text = cfg_path.read_text()
    try:
        cfg = yaml.safe_load(cfg_text) or {}
    except yaml.YAMLError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    mpath = run_dir / "metrics.json"
    try:
        metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    except json.JSONDecodeError:
        metrics = {}
    epochs = last_per_epoch(read_jsonl(run_dir / "metrics.jsonl"))
    hist = last_per_epoch(r for r in read_jsonl(run_dir / SCORE_HIST) if "pos_hist" in r and "bin_edges" in r)
    name = str(cfg.get("name") or run_dir.name)
    versions, recorded = _versions(metrics)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    meta = [("run", name), ("directory", str(run_dir)), ("objective", cfg.get("objective", "–")),
            ("dataset", cfg.get("dataset", "–")), ("seed", cfg.get("seed", "–")),
            ("config written", _mtime(cfg_path)), ("metrics written", _mtime(mpath)), ("report generated", now)]
    meta += [(f"{k} version" + ("" if recorded else " (at report time)"), v) for k, v in versions.items()]
    body = [f"<h1>pairlab run: {esc(name)}</h1>",
            f'<p class="muted">Self-contained report generated {esc(now)} by <code>pairlab report</code>.</p>',
            '<table class="meta" id="run-meta"><tbody>'
            + "".join(f"<tr><th class=\"l\">{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta)
            + "</tbody></table>"]
    body += _final_metrics(metrics)
    body += _epoch_table(epochs, hist)
    body.append("<h2>Score histograms per epoch</h2>")
    if hist and plots:
        shown = len(pick_panels(len(hist)))
        body.append(img_tag(histogram_small_multiple(hist), "score-hist-epochs",
                            f"{shown} of {len(hist)} epochs; {hist[-1].get('n', '?')} held-out images, "
                            "cosine of projections, density"))
    elif hist:
        body.append('<p class="muted">Figure skipped (plots off); see the held-out columns above.</p>')
    else:
        body.append(f'<p class="muted">No per-epoch histograms ({SCORE_HIST} is missing).</p>')
    pngs = sorted(run_dir.glob("*.png"))
    body.append("<h2>Plots</h2>")
    if pngs:
        body += [img_tag(p.read_bytes(), p.stem, p.name) for p in pngs]
    else:
        body.append('<p class="muted">No plots in the run directory.</p>')
    body += ["<h2>Config</h2>", f'<pre id="config">{esc(cfg_text)}</pre>']
    return _atomic_write(Path(out) if out is not None else run_dir / REPORT, page(f"pairlab run {name}", body))


# ----------------------------------------------------------------------------------------------------------------
# comparison report


def write_compare_report(out_dir: str | Path, name: str = "", *, title: str = "", command: str = "",
                         out: str | Path | None = None) -> Path:
    """Write ``out_dir/report[-name].html`` from ``leaderboard[-name].csv`` and its PNGs; returns its path."""
    from pairlab.compare.grid import METRICS
    from pairlab.compare.leaderboard import LABELS, _digits, aggregate, fmt, read_csv

    out_dir = Path(out_dir)
    stem = "leaderboard" + (f"-{name}" if name else "")
    csv_path = out_dir / f"{stem}.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{str(csv_path)!r} not found: {str(out_dir)!r} holds no leaderboard of that name")
    rows = read_csv(csv_path)
    summaries, base_s = aggregate(rows), aggregate(rows, kind="baseline")
    heading = title or "Leaderboard" + (f": {name}" if name else "")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    body = [f"<h1>{esc(heading)}</h1>",
            f'<p class="muted">Self-contained report generated {esc(now)} from {esc(csv_path.name)} '
            f"(written {esc(_mtime(csv_path))}).</p>",
            "<h2>Leaderboard</h2>", "<p>Mean ± sample std (ddof=1) over seeds; sorted by kNN accuracy. "
            "↓ = lower is better.</p>"]
    lb = []
    for i, s in enumerate(summaries, 1):
        n = f"{s['n_ok']}" + (f" (+{s['n_failed']} failed)" if s["n_failed"] else "")
        cells = [fmt(s[m + "_mean"], s[m + "_std"], _digits(m)) if s["n_ok"] else "–" for m in METRICS]
        lb.append([str(i) if s["n_ok"] else "–", s["variant"], n, *cells])
    body.append(table(["rank", "variant", "n", *[LABELS.get(m, m) for m in METRICS]], lb, left=2,
                      table_id="leaderboard"))
    if base_s:
        body.append("<h2>Baselines (same evaluation protocol, no training)</h2>")
        body.append(table(["features", "n", "kNN acc", "linear acc"],
                          [[s["variant"], str(s["n_ok"]), fmt(s["knn_acc_mean"], s["knn_acc_std"]),
                            fmt(s["linear_acc_mean"], s["linear_acc_std"])] for s in base_s],
                          left=1, table_id="baselines"))
    runs = [r for r in rows if r.get("kind", "run") == "run"]
    if runs:
        cols = ["variant", "seed", "ok", "knn_acc", "linear_acc", "steps", "wall_s", "error"]
        body_rows = []
        for r in runs:
            rep = Path(r["run_dir"]) / REPORT if r.get("run_dir") else None
            variant: Any = r["variant"]
            if rep is not None and rep.is_file():
                try:
                    href = rep.resolve().relative_to(out_dir.resolve()).as_posix()
                except ValueError:
                    href = rep.resolve().as_uri()
                variant = _Raw(f'<a href="{esc(href)}">{esc(r["variant"])}</a>')
            body_rows.append([variant, r.get("seed"), r.get("ok")] + [r.get(k) for k in cols[3:]])
        body += ["<h2>Runs</h2>", table(cols, body_rows, left=3, table_id="runs")]
    body.append("<h2>Plots</h2>")
    pngs = [out_dir / f"{stem}-{m}.png" for m in METRICS if (out_dir / f"{stem}-{m}.png").is_file()]
    if pngs:
        body += [img_tag(p.read_bytes(), p.stem, LABELS.get(p.stem[len(stem) + 1:], p.stem)) for p in pngs]
    else:
        body.append('<p class="muted">No plots (the grid ran with plots off, or no run succeeded).</p>')
    if command:
        body += ["<h2>Command</h2>", f'<pre id="command">{esc(command)}</pre>']
    target = Path(out) if out is not None else out_dir / ("report" + (f"-{name}" if name else "") + ".html")
    return _atomic_write(target, page(heading, body))


# ----------------------------------------------------------------------------------------------------------------
# CLI


def write_report(path: str | Path, name: str = "") -> Path:
    """A run directory (has ``config.yaml``) or a comparison directory (has ``leaderboard[-name].csv``)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{str(p)!r} is not a directory")
    if (p / "config.yaml").is_file():
        return write_run_report(p)
    if name or (p / "leaderboard.csv").is_file():
        return write_compare_report(p, name)
    boards = sorted(p.glob("leaderboard-*.csv"))
    if len(boards) == 1:
        return write_compare_report(p, boards[0].stem[len("leaderboard-"):])
    if boards:
        names = [b.stem[len("leaderboard-"):] for b in boards]
        raise ValueError(f"{str(p)!r} holds several leaderboards {names}; pick one with --name")
    raise FileNotFoundError(f"{str(p)!r} is neither a run directory (config.yaml) nor a comparison (leaderboard*.csv)")


def register(app: Any) -> None:
    import typer

    @app.command("report")
    def report_cmd(
        path: Path = typer.Argument(..., help="Run directory (runs/<name>) or comparison output directory."),
        name: str = typer.Option("", "--name", help="Leaderboard name (comparison directories holding several)."),
    ) -> None:
        """(Re)write the self-contained HTML report of a run or a comparison."""
        typer.echo(str(write_report(path, name)))
