"""`pairlab plot RUN...`: overlaid curves equal the runs' logged values; bars equal the final metrics."""

import json
import math

import numpy as np
import pytest

from pairlab.cli import main
from pairlab.report.overlay import plot_runs, read_run
from pairlab.train.tracking import RunLogger

PNG = b"\x89PNG\r\n\x1a\n"


def _make_run(path, losses, final=None, steps_per_epoch=2):
    """A run directory as the training loop writes it: metrics.csv (RunLogger), metrics.jsonl, metrics.json."""
    with RunLogger(path, ["csv"]) as log:
        for s, loss in enumerate(losses, start=1):
            epoch = (s - 1) // steps_per_epoch + 1
            log.log_step(s, epoch, loss=loss, lr=1e-3 / s)
            if s % steps_per_epoch == 0:
                row = {"epoch": epoch, "step": s, "loss": float(np.mean(losses[s - steps_per_epoch : s])),
                       "pos_score_mean": 0.1 * epoch}
                log.log_epoch(row)
                with open(path / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
    if final is not None:
        (path / "metrics.json").write_text(json.dumps(final))
    return path


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    a = _make_run(tmp_path / "runs" / "ntxent", list(4 - np.cumsum(rng.random(6)) * 0.3),
                  {"knn_acc": 0.71, "linear_acc": 0.8, "steps": 6})
    b = _make_run(tmp_path / "runs" / "supcon", list(5 - np.cumsum(rng.random(4)) * 0.5),
                  {"knn_acc": 0.9, "linear_acc": 0.93, "scores": {"gap": 0.2}})
    return a, b


def _losses(run):
    return [float(line.split(",")[2]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]


def test_overlaid_lines_equal_the_runs_losses_and_png_written(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "plots" / "overlay.png"
    fig = plot_runs([a, b], out=out)
    assert out.read_bytes()[:8] == PNG
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["ntxent", "supcon"]
    assert lines[0].get_color() != lines[1].get_color()
    for ln, run in zip(lines, (a, b), strict=True):
        ys = _losses(run)
        np.testing.assert_allclose(ln.get_xdata(), np.arange(1, len(ys) + 1))
        np.testing.assert_allclose(ln.get_ydata(), ys, rtol=1e-12)
    # bars: one container per run, heights = final knn/linear accuracy
    heights = [[p.get_height() for p in c] for c in fig.axes[1].containers]
    assert heights == [pytest.approx([0.71, 0.8]), pytest.approx([0.9, 0.93])]


def test_cli_writes_the_png(two_runs, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert main(["plot", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and str(out) in capsys.readouterr().out


def test_epoch_metric_from_jsonl_and_history_fallback(two_runs, tmp_path):
    a, _ = two_runs
    fig = plot_runs([a], metric="pos_score_mean")  # only in metrics.jsonl: x = step of each epoch row
    (ln,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(ln.get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(ln.get_ydata(), [0.1, 0.2, 0.3])
    # a domain-style run: jsonl rows keyed by epoch only, and a metrics.json history
    d = tmp_path / "dom"
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": 1.0 / e}) + "\n" for e in (1, 2, 3)))
    (ln,) = plot_runs([d]).axes[0].get_lines()
    np.testing.assert_allclose(ln.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(ln.get_ydata(), [1.0, 0.5, 1 / 3])
    h = tmp_path / "hist"
    h.mkdir()
    (h / "metrics.json").write_text(json.dumps({"history": [3.0, 2.0], "knn_acc": 0.5}))
    fig = plot_runs([h])
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [3.0, 2.0])
    heights = [p.get_height() for p in fig.axes[1].containers[0]]
    assert heights[0] == 0.5 and math.isnan(heights[1])  # no linear_acc: no bar


def test_same_names_get_parent_prefix(tmp_path):
    a = _make_run(tmp_path / "x" / "run", [1.0, 0.5])
    b = _make_run(tmp_path / "y" / "run", [2.0, 1.5])
    labels = [ln.get_label() for ln in plot_runs([a, b]).axes[0].get_lines()]
    assert labels == ["x/run", "y/run"]


def test_not_a_run_directory_and_unknown_metric(two_runs, tmp_path, capsys):
    runs_parent = two_runs[0].parent
    assert main(["plot", str(runs_parent), "--out", str(tmp_path / "x.png")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="available: .*loss.*pos_score_mean"):
        plot_runs([two_runs[0]], metric="accuracy")
    assert not (tmp_path / "x.png").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        read_run(bad)
