import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from pairlab.report.html import (
    EpochHistograms,
    last_per_epoch,
    pick_panels,
    read_jsonl,
    write_compare_report,
    write_report,
    write_run_report,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")

TINY_RUN = {
    "name": "tiny", "dataset": "digits", "train_subset": 96, "batch_size": 24, "epochs": 3, "seed": 3,
    "model": {"widths": [4, 8], "hidden_dim": 16, "proj_dim": 8},
    "eval": {"train_subset": 150, "test_subset": 80, "geometry_samples": 40, "linear_max_iter": 10},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real (tiny) training run on digits: 3 epochs of 4 steps, evaluation with baselines and plots."""
    from pairlab.train.config import make_config
    from pairlab.train.loop import train

    root = tmp_path_factory.mktemp("runs")
    train(make_config({**TINY_RUN, "runs_dir": str(root)}), quiet=True)
    return root / "tiny"


class _Doc(HTMLParser):
    """Tags with attributes, table cell texts per table id, and whether any resource points outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id", f"anon{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> _Doc:
    d = _Doc()
    d.feed(path.read_text())
    return d


def imgs(doc: _Doc) -> dict[str, bytes]:
    out = {}
    for tag, a in doc.tags:
        if tag == "img":
            head, _, payload = a["src"].partition(",")
            assert head == "data:image/png;base64", head
            out[a["id"]] = base64.b64decode(payload)
    return out


def assert_self_contained(doc: _Doc, raw: str) -> None:
    for tag, a in doc.tags:
        assert tag not in ("link", "iframe", "object", "embed"), tag
        if tag in ("img", "script", "source"):
            assert a.get("src", "data:").startswith("data:"), a.get("src", "")[:60]
    assert not re.search(r"url\(\s*['\"]?(?!data:)", raw), "CSS fetches a resource"
    assert "http://" not in raw and "https://" not in raw


# ------------------------------------------------------------------------------------------------------------
# per-epoch histograms


def test_score_hist_rows_match_a_recomputation_from_the_final_checkpoint(run_dir):
    from pairlab.data.datasets import load_dataset
    from pairlab.data.views import Views
    from pairlab.train.loop import load_run

    rows = read_jsonl(run_dir / "score_hist.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [4, 8, 12]
    n = rows[0]["n"]
    assert n == 256  # digits has 359 test images; the first 256 are scored
    for r in rows:
        assert sum(r["pos_hist"]) == n and sum(r["neg_hist"]) == n * (n - 1)  # every pair, each counted once
    # the batch and views are fixed: the final model scores them exactly as the last row says
    cfg, model, _ = load_run(run_dir)
    test = load_dataset("digits", "test")
    views = Views(test.x.shape[-1], cfg.views, cfg.augment)
    again = EpochHistograms(test.x, views, cfg.seed).compute(model)
    assert again["pos_hist"] == rows[-1]["pos_hist"] and again["neg_hist"] == rows[-1]["neg_hist"]
    assert again["pos_mean"] == pytest.approx(rows[-1]["pos_mean"], abs=1e-6)
    assert rows[0]["pos_mean"] != rows[-1]["pos_mean"]  # training moved the embedding between epochs


def test_epoch_histograms_leave_rng_and_mode_alone():
    from pairlab.data.views import Views

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (20, 1, 28, 28), dtype=torch.uint8, generator=g)
    before = torch.get_rng_state()
    probe = EpochHistograms(x, Views(28, 4), seed=5, n=10)
    assert torch.equal(torch.get_rng_state(), before)
    assert probe.v1.shape == (10, 1, 28, 28) and not torch.equal(probe.v1, probe.v2)
    assert torch.equal(EpochHistograms(x, Views(28, 4), seed=5, n=10).v1, probe.v1)  # same seed, same views
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 6), torch.nn.BatchNorm1d(6))
    model.train()
    stats = model[2].running_mean.clone()
    h = probe.compute(model)
    assert model.training and torch.equal(model[2].running_mean, stats)  # eval() inside, mode restored
    assert sum(h["pos_hist"]) == 10 and sum(h["neg_hist"]) == 90
    with pytest.raises(ValueError, match="at least 2"):
        EpochHistograms(x[:1], Views(28, 2), seed=0)


def test_panels_and_dedup():
    assert pick_panels(5) == [0, 1, 2, 3, 4]
    p = pick_panels(50)
    assert len(p) == 12 and p[0] == 0 and p[-1] == 49 and p == sorted(set(p))
    rows = [{"epoch": 1, "v": 1}, {"epoch": 2, "v": 2}, {"epoch": 2, "v": 3}, {"epoch": 3, "v": 4}]
    assert [r["v"] for r in last_per_epoch(rows)] == [1, 3, 4]  # a resumed run repeated epoch 2


def test_read_jsonl_skips_a_torn_last_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(p) == [{"epoch": 1}, {"epoch": 2}] and read_jsonl(tmp_path / "none.jsonl") == []


# ------------------------------------------------------------------------------------------------------------
# run report content


def test_run_report_holds_config_versions_metrics_epochs_and_every_png(run_dir):
    path = run_dir / "report.html"
    assert path.is_file()  # written by the training loop
    raw = path.read_text()
    doc = parse(path)
    assert_self_contained(doc, raw)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    meta = dict(r for r in doc.tables["run-meta"] if len(r) == 2)
    assert meta["run"] == "tiny" and meta["seed"] == "3" and meta["objective"] == "ntxent"
    assert meta["torch version"] == torch.__version__ and "pairlab version" in meta and "python version" in meta
    final = {r[0]: r[1:] for r in doc.tables["final-metrics"][1:]}
    assert final["learned (backbone)"] == [f"{metrics['knn_acc']:.4f}", f"{metrics['linear_acc']:.4f}"]
    assert final["raw pixels"] == [f"{metrics['raw_knn_acc']:.4f}", f"{metrics['raw_linear_acc']:.4f}"]
    assert final["random init"] == [f"{metrics['random_knn_acc']:.4f}", f"{metrics['random_linear_acc']:.4f}"]
    geo = dict(doc.tables["geometry"][1:])
    assert geo["alignment ↓ (α=2, test views)"] == f"{metrics['alignment']:.4f}"
    epochs = doc.tables["per-epoch"]
    header, body = epochs[0], epochs[1:]
    assert [row[header.index("epoch")] for row in body] == ["1", "2", "3"]
    jl = read_jsonl(run_dir / "metrics.jsonl")
    assert [float(row[header.index("loss")]) for row in body] == pytest.approx([r["loss"] for r in jl], abs=1e-4)
    hist = read_jsonl(run_dir / "score_hist.jsonl")
    gaps = [float(row[header.index("held-out gap")]) for row in body]
    assert gaps == pytest.approx([r["gap"] for r in hist], rel=1e-3, abs=1e-7)
    embedded = imgs(doc)
    for png in ("loss", "scores", "projection"):  # byte-identical to the files
        assert embedded[f"img-{png}"] == (run_dir / f"{png}.png").read_bytes()
    assert embedded["img-score-hist-epochs"][:8] == b"\x89PNG\r\n\x1a\n"
    assert doc.tags.count(("pre", {"id": "config"})) == 1
    assert "objective: ntxent" in raw and "seed: 3" in raw


def test_run_report_escapes_text_and_survives_missing_files(tmp_path):
    (tmp_path / "config.yaml").write_text('name: "<script>alert(1)</script>"\nseed: 7\n')
    out = write_run_report(tmp_path)
    raw = out.read_text()
    assert "<script>alert(1)" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    doc = parse(out)
    assert imgs(doc) == {} and "final-metrics" not in doc.tables
    assert "No evaluation recorded" in raw and "(at report time)" in raw
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        write_run_report(tmp_path / "nope")


def test_plots_off_skips_the_figure_but_keeps_held_out_columns(tmp_path, run_dir):
    for f in ("config.yaml", "metrics.jsonl", "score_hist.jsonl"):
        shutil.copy(run_dir / f, tmp_path / f)
    doc = parse(write_run_report(tmp_path, plots=False))
    assert imgs(doc) == {} and "held-out gap" in doc.tables["per-epoch"][0]


# ------------------------------------------------------------------------------------------------------------
# comparison report


def _fake_grid(tmp_path: Path) -> Path:
    from pairlab.compare.grid import make_row
    from pairlab.compare.leaderboard import write_leaderboard

    rows = []
    for v, accs in (("ntxent", (0.5, 0.7)), ("dcl", (0.8, 0.6))):
        for seed, acc in enumerate(accs):
            rd = tmp_path / "runs" / f"{v}-s{seed}"
            rd.mkdir(parents=True)
            if v == "dcl":
                (rd / "report.html").write_text("<html></html>")
            rows.append(make_row(v, seed, {"knn_acc": acc, "linear_acc": acc / 2, "alignment": 0.1},
                                 run_dir=str(rd)))
    rows.append(make_row("<b>bad</b>", 0, None, error="ValueError: x < y"))
    rows.append(make_row("raw pixels", None, {"knn_acc": 0.3, "linear_acc": 0.2}, kind="baseline"))
    write_leaderboard(rows, tmp_path, name="g")
    return tmp_path


def test_compare_report_tables_and_plots(tmp_path):
    out = _fake_grid(tmp_path)
    path = write_compare_report(out, "g", command="pairlab compare --objective ntxent,dcl")
    assert path.name == "report-g.html"
    raw = path.read_text()
    doc = parse(path)
    assert_self_contained(doc, raw)
    lb = doc.tables["leaderboard"]
    # dcl mean 0.7 ± stdev(0.8, 0.6) = 0.1414 ranks above ntxent 0.6 ± 0.1414; the failed variant is last
    assert [r[1] for r in lb[1:]] == ["dcl", "ntxent", "<b>bad</b>"]
    assert lb[1][3] == "0.7000 ± 0.1414" and lb[2][3] == "0.6000 ± 0.1414" and lb[3][0] == "–"
    assert "<b>bad</b>" not in raw and "x &lt; y" in raw
    assert doc.tables["baselines"][1][:3] == ["raw pixels", "1", "0.3000"]
    links = [a["href"] for t, a in doc.tags if t == "a"]
    assert links == ["runs/dcl-s0/report.html", "runs/dcl-s1/report.html"]  # only runs that have a report
    embedded = imgs(doc)
    pngs = sorted(out.glob("leaderboard-g-*.png"))
    assert len(pngs) == 7 and len(embedded) == 7
    for p in pngs:
        assert embedded[f"img-{p.stem}"] == p.read_bytes()


def test_report_cli(tmp_path, run_dir, capsys):
    from pairlab.cli import main

    out = _fake_grid(tmp_path / "cmp")
    assert main(["report", str(out)]) == 0 and (out / "report-g.html").is_file()
    before = (run_dir / "report.html").stat().st_mtime_ns
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.html").stat().st_mtime_ns >= before
    assert main(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    (out / "leaderboard-h.csv").write_text((out / "leaderboard-g.csv").read_text())
    with pytest.raises(ValueError, match="several leaderboards"):
        write_report(out)
    assert write_report(out, "h").name == "report-h.html"


# ------------------------------------------------------------------------------------------------------------
# headless Chromium: the page renders its plots and tables


def chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--force-device-scale-factor=1", "--window-size=1200,3000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def rendered_images(path: Path) -> tuple[dict[str, tuple[bool, tuple[int, ...]]], str, str]:
    """``{img id: (decoded, (x, y, w, h))}``, the status line and the DOM, from Chromium after ``load``."""
    dom = chromium("--dump-dom", path.resolve().as_uri()).stdout
    out = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        ident = re.search(r'\bid="([^"]+)"', tag)[1]
        decoded = re.search(r'\bdata-decoded="([01])"', tag)
        box = re.search(r'\bdata-box="([-0-9,]+)"', tag)
        assert decoded and box, f"image {ident} was not checked by the page script"
        out[ident] = (decoded[1] == "1", tuple(int(v) for v in box[1].split(",")))
    status = re.search(r'<pre id="img-status"[^>]*>([^<]*)</pre>', dom)[1]
    return out, status, dom


def broken(images: dict[str, tuple[bool, tuple[int, ...]]]) -> list[str]:
    """Images that did not decode or were laid out smaller than 20 px."""
    return sorted(i for i, (ok, box) in images.items() if not ok or box[2] < 20 or box[3] < 20)


def screenshot(path: Path, png: Path) -> np.ndarray:
    from PIL import Image

    chromium(f"--screenshot={png}", path.resolve().as_uri())
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)


@needs_chromium
def test_chromium_renders_plots_and_tables(run_dir, tmp_path):
    report = run_dir / "report.html"
    images, status, dom = rendered_images(report)
    assert set(images) == {"img-loss", "img-scores", "img-projection", "img-score-hist-epochs"}
    assert broken(images) == [] and f"images:{len(images)} broken:0" in status
    assert all(f'<table id="{t}">' in dom for t in ("final-metrics", "geometry", "per-epoch"))
    shot = screenshot(report, tmp_path / "shot.png")
    assert shot.shape == (3000, 1200, 3)
    background = shot[5, 5]
    ink = np.abs(shot - background).sum(-1) > 30  # pixels that differ from the page background
    assert ink.mean() > 0.02, "screenshot is blank"
    # the top of the page holds the title and the tables: text renders there
    assert ink[:600].mean() > 0.01
    inside = 0
    for ident, (_, (x, y, w, h)) in images.items():
        if y + h > shot.shape[0]:
            continue  # below the screenshot
        inside += 1
        region = ink[y + 2 : y + h - 2, x + 2 : x + w - 2]
        assert region.mean() > 0.02, f"{ident} region has no drawing ({region.mean():.4f} ink)"
    assert inside >= 2


@needs_chromium
def test_chromium_detects_a_corrupted_data_uri(run_dir, tmp_path):
    raw = (run_dir / "report.html").read_text()
    m = re.search(r'id="img-scores"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', raw)
    payload = m[1]
    bad = payload[:40] + "A" * 400 + payload[440:]  # valid base64, invalid PNG stream
    path = tmp_path / "corrupt.html"
    path.write_text(raw.replace(payload, bad))
    images, status, dom = rendered_images(path)
    assert broken(images) == ["img-scores"] and len(images) == 4
    assert "broken:1" in status and "image img-scores failed to decode" in dom
