"""Domain dispatch, run directory and the grid runner (leaderboard mean/std equal the per-run values)."""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics

import pytest

import pairlab.domains as dom


def test_dispatch_errors(tmp_path):
    with pytest.raises(ValueError, match="no 'domain' key"):
        dom.make_config({"name": "x"})
    with pytest.raises(ValueError, match="domain. must be one of"):
        dom.run({"domain": "audio"})
    with pytest.raises(FileNotFoundError):
        dom.run(tmp_path / "missing.yaml")
    assert dom.domain_of({"dataset": "fmnist"}) is None


def test_run_dir_refuses_existing(tmp_path):
    rd = dom.RunDir(tmp_path, "a")
    rd.log({"epoch": 1})
    with pytest.raises(ValueError, match="already exists"):
        dom.RunDir(tmp_path, "a")
    dom.RunDir(tmp_path, "a", overwrite=True)
    assert not (tmp_path / "a" / "metrics.jsonl").exists()


@pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon not installed")
def test_compare_aggregates_seeds_and_writes_leaderboard(tmp_path):
    cfg = tmp_path / "ts-tiny.yaml"
    cfg.write_text("domain: timeseries\nname: tiny\ndataset: ucr-italypowerdemand\nepochs: 1\nbatch_size: 34\n"
                   "widths: [8]\nplots: false\n")
    out = tmp_path / "board"
    rows = dom.compare([cfg], seeds=(0, 1), out=out, runs_dir=tmp_path / "runs", command="test")
    by = {r["method"]: r for r in rows}
    assert set(by) == {"tiny", "1nn-euclidean (raw)", "raw series", "random-init cnn"}
    per = [json.loads((tmp_path / "runs" / f"tiny-s{s}" / "metrics.json").read_text()) for s in (0, 1)]
    vals = [p["linear_acc"] for p in per]
    assert by["tiny"]["linear_acc"] == pytest.approx(statistics.fmean(vals))
    assert by["tiny"]["linear_acc_std"] == pytest.approx(statistics.stdev(vals))
    assert by["tiny"]["n_seeds"] == 2 and by["raw series"]["kind"] == "baseline"
    with open(out.with_suffix(".csv")) as f:
        assert {r["method"] for r in csv.DictReader(f)} == set(by)
    assert "Command: `test`" in out.with_suffix(".md").read_text() and out.with_suffix(".png").stat().st_size > 0
    mtime = (tmp_path / "runs" / "tiny-s0" / "metrics.json").stat().st_mtime
    dom.compare([cfg], seeds=(0,), runs_dir=tmp_path / "runs")  # finished run with the same config: reused
    assert (tmp_path / "runs" / "tiny-s0" / "metrics.json").stat().st_mtime == mtime


def test_compare_marks_a_config_that_is_itself_a_baseline(tmp_path, monkeypatch):
    """A run whose learned row is listed as a baseline (text ``steps: 0``) stays a baseline after seed renaming."""
    cfg = tmp_path / "text-base.yaml"
    cfg.write_text("domain: text\nname: pre\nsteps: 0\n")

    def fake_run(data, over, overwrite=False, quiet=True):
        name = over["name"]
        return {"leaderboard": {name: {"acc": 0.5 + over["seed"] / 10}}, "leaderboard_group": "g",
                "leaderboard_baselines": [name]}

    monkeypatch.setattr(dom, "run", fake_run)
    rows = dom.compare([cfg], seeds=(0, 2), runs_dir=tmp_path, reuse=False)
    assert len(rows) == 1 and rows[0]["method"] == "pre" and rows[0]["kind"] == "baseline"
    assert rows[0]["acc"] == pytest.approx(0.6) and rows[0]["n_seeds"] == 2


class _Tty:
    """A stdout that says it is a terminal and keeps what rich writes."""

    def __init__(self):
        self.parts: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def flush(self) -> None:
        pass


def test_fit_progress_bar_on_a_terminal_lines_when_piped_nothing_when_quiet(monkeypatch, capsys):
    def loop(quiet):
        with dom.fit_progress("fit", 3, quiet=quiet) as tick:
            for e in range(3):
                tick(f"epoch {e + 1}/3 loss 0.5", show=e != 1)

    loop(quiet=True)
    assert capsys.readouterr().out == ""
    loop(quiet=False)  # capsys: not a terminal -> the plain lines the runner asked to show
    assert capsys.readouterr().out.splitlines() == ["epoch 1/3 loss 0.5", "epoch 3/3 loss 0.5"]
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    seen = []
    import pairlab.train.tracking as tracking

    real = tracking.progress

    def spy(label, total, **kw):
        cm = real(label, total, **kw)
        bar = cm.__enter__()
        seen.append(bar)
        return _Wrap(cm, bar)

    class _Wrap:
        def __init__(self, cm, bar):
            self.cm, self.bar = cm, bar

        def __enter__(self):
            return self.bar

        def __exit__(self, *a):
            task = self.bar.prog.tasks[0]
            seen.append((task.completed, task.total, task.fields["status"]))
            return self.cm.__exit__(*a)

    monkeypatch.setattr(tracking, "progress", spy)
    loop(quiet=False)
    assert seen[0].prog is not None and seen[1] == (3, 3, "epoch 3/3 loss 0.5")  # the bar ran to the end
    assert not any("epoch 1/3 loss 0.5\n" in p for p in tty.parts)  # no plain lines under the bar
