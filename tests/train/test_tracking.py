"""Run tracking: TensorBoard / CSV / mlflow backends of RunLogger, the --logger option, progress visibility."""

import csv
import json
import math
import sys

import pytest

from pairlab.cli import main
from pairlab.train import tracking
from pairlab.train.loop import lr_lambda
from pairlab.train.tracking import CSV_COLUMNS, RunLogger, parse_loggers, show_progress

TINY = """
epochs: 1
batch_size: 32
train_subset: 128
model: {widths: [4, 8], hidden_dim: 16, proj_dim: 8}
eval: {train_subset: 200, test_subset: 100, linear_max_iter: 5, geometry_samples: 40, baselines: false,
       plots: PLOTS}
"""
LR, STEPS = 3e-3, 3


def _train(tmp_path, name, *extra, plots=False):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace("PLOTS", str(plots).lower()))
    argv = ["train", "--dataset", "digits", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"),
            "--name", name, "--max-steps", str(STEPS), "--lr", str(LR), "--quiet", *extra]
    assert main(argv) == 0
    return tmp_path / "runs" / name


def _csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return tuple(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tb"), "tb")


def test_tensorboard_scalars_equal_csv_and_jsonl(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    header, rows = _csv(default_run / "metrics.csv")
    assert header == CSV_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    losses = [float(r["loss"]) for r in rows]
    acc = EventAccumulator(str(default_run / "tensorboard"))
    acc.Reload()
    tb = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert [s for s, _ in tb["train/loss"]] == list(range(1, STEPS + 1))
    assert [v for _, v in tb["train/loss"]] == pytest.approx(losses, rel=1e-6)  # TB stores float32
    # lr: the value each step used = lr * schedule(step - 1) (5% warm-up of 3 steps = none, then cosine)
    want_lr = [LR * lr_lambda(STEPS, int(0.05 * STEPS))(s) for s in range(STEPS)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(want_lr, rel=1e-12)
    assert [v for _, v in tb["train/lr"]] == pytest.approx(want_lr, rel=1e-6)
    # the epoch row (metrics.jsonl) is the mean of the step losses, in all three places
    (row,) = [json.loads(line) for line in (default_run / "metrics.jsonl").read_text().splitlines()]
    assert row["loss"] == pytest.approx(sum(losses) / STEPS, rel=1e-12)
    assert float(rows[-1]["epoch_loss"]) == pytest.approx(row["loss"], rel=1e-12)
    assert all(r["epoch_loss"] == "" for r in rows[:-1])
    assert tb["epoch/loss"] == [(STEPS, pytest.approx(row["loss"], rel=1e-6))]
    final = json.loads((default_run / "metrics.json").read_text())
    assert tb["final/knn_acc"] == [(STEPS, pytest.approx(final["knn_acc"], rel=1e-6))]
    assert tb["final/linear_acc"][0][1] == pytest.approx(final["linear_acc"], rel=1e-6)


def test_mlflow_run_reads_back(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = _train(tmp_path, "ml", "--logger", "mlflow", plots=True)
    assert not (run / "metrics.csv").exists() and not (run / "tensorboard").exists()  # only the chosen backend
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    run_id = (run / "mlflow_run_id").read_text().strip()
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED" and r.info.run_name == "ml"
    assert r.data.params["batch_size"] == "32" and r.data.params["model.proj_dim"] == "8"
    assert r.data.params["dataset"] == "digits"
    hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert [s for s, _ in hist] == list(range(1, STEPS + 1))
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(v for _, v in hist) / STEPS == pytest.approx(row["loss"], rel=1e-9)
    final = json.loads((run / "metrics.json").read_text())
    assert r.data.metrics["final_knn_acc"] == pytest.approx(final["knn_acc"], rel=1e-12)
    assert r.data.metrics["epoch_loss"] == pytest.approx(row["loss"], rel=1e-12)
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"loss.png", "projection.png", "scores.png"} <= arts


def test_mlflow_gets_the_complete_csv_and_resumes_its_run(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "u"
    with RunLogger(run, ["mlflow", "csv"], config={"lr": 0.1, "model": {"widths": [4, 8]}}) as log:
        for s in (1, 2, 3):
            log.log_step(s, 1, loss=1.0 / s, lr=0.1)
        log.log_epoch({"epoch": 1, "step": 3, "loss": 0.6})
        log.log_final({"knn_acc": 0.5}, [run / "metrics.csv"])
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    run_id = (run / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).data.params == {"lr": "0.1", "model.widths": "[4, 8]"}
    copy = client.download_artifacts(run_id, "metrics.csv", str(tmp_path))
    assert open(copy).read() == (run / "metrics.csv").read_text()  # the last (epoch) row was flushed first
    assert len(open(copy).read().splitlines()) == 4
    with RunLogger(run, ["mlflow"], start_step=3) as log:  # resume: same mlflow run, more steps
        log.log_step(4, 2, loss=0.2, lr=0.1)
    assert (run / "mlflow_run_id").read_text().strip() == run_id
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]


def test_resumed_run_continues_the_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pairlab.train.config import load_config
    from pairlab.train.loop import train

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace("PLOTS", "false"))
    c = load_config(cfg, {"dataset": "digits", "runs_dir": str(tmp_path), "name": "r", "max_steps": STEPS,
                          "checkpoint_every": 1})
    assert train(c, quiet=True, evaluate_at_end=False, _stop_after_steps=2) == {"stopped_at": 2}
    _, rows = _csv(tmp_path / "r" / "metrics.csv")
    before = [float(r["loss"]) for r in rows]
    assert len(before) == 2
    train(c, resume=True, quiet=True, evaluate_at_end=False)
    _, rows = _csv(tmp_path / "r" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and [float(r["loss"]) for r in rows[:2]] == before
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    tb = sorted((e.step, e.value) for e in acc.Scalars("train/loss"))
    assert [s for s, _ in tb] == [1, 2, 3]
    assert [v for _, v in tb] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-6)


def test_bad_logger_exits_2_listing_choices(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--runs-dir", str(tmp_path), "--logger", "foo"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown logger 'foo'" in err and "tensorboard, csv, mlflow, none" in err
    assert not any(tmp_path.iterdir())  # rejected before anything was written


def test_parse_loggers():
    assert parse_loggers(None) == ["tensorboard", "csv"]
    assert parse_loggers("CSV, mlflow,csv") == ["csv", "mlflow"]
    assert parse_loggers("none") == [] and parse_loggers([]) == []
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_loggers("none,csv")
    with pytest.raises(ValueError, match="valid choices"):
        parse_loggers(["tensorbored"])


def test_csv_rows_and_resume_truncation(tmp_path):
    with RunLogger(tmp_path, ["csv"]) as log:
        for s in range(1, 7):
            log.log_step(s, (s - 1) // 3 + 1, loss=10.0 - s, lr=0.1 * s)
            if s % 3 == 0:
                log.log_epoch({"epoch": s // 3, "step": s, "loss": 9.0, "images_per_s": 5.0, "extra": 1.0})
    header, rows = _csv(tmp_path / "metrics.csv")
    assert header == CSV_COLUMNS and len(rows) == 6
    assert [float(r["loss"]) for r in rows] == [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]
    assert [r["images_per_s"] for r in rows] == ["", "", "5.0", "", "", "5.0"]
    # a run killed after step 6 but checkpointed at step 4 resumes at 4: rows 5 and 6 are recomputed
    with RunLogger(tmp_path, "csv", start_step=4) as log:
        log.log_step(5, 2, loss=-5.0, lr=0.0)
    _, rows = _csv(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5] and float(rows[-1]["loss"]) == -5.0


def test_other_ranks_write_nothing(tmp_path):
    with RunLogger(tmp_path / "r1", ["csv", "tensorboard"], enabled=False) as log:
        log.log_step(1, 1, loss=1.0, lr=0.1)
        log.log_final({"knn_acc": 0.5})
    assert not (tmp_path / "r1").exists()


def test_missing_mlflow_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(ValueError, match="pip install mlflow-skinny"):
        RunLogger(tmp_path / "x", ["csv", "mlflow"])
    assert not (tmp_path / "x").exists()  # checked before anything is created


def test_final_metrics_flattened_and_non_numbers_dropped():
    assert tracking.numeric({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": [1], "f": True, "g": math.nan}) == {
        "a": 1.0, "b.c": 2.5}


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_hidden_when_quiet_or_not_a_terminal(capsys):
    assert show_progress(False, _Stream(True)) and not show_progress(True, _Stream(True))
    assert not show_progress(False, _Stream(False)) and not show_progress(False, object())
    with tracking.progress("eval", 3) as bar:  # pytest's captured stdout is not a tty: nothing drawn
        bar.advance(3, status="done")
    assert capsys.readouterr().out == ""


def test_domain_run_directories_are_tracked_too(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pairlab.domains import RunDir

    rd = RunDir(tmp_path, "d")
    for e in (1, 2):
        rd.log({"epoch": e, "loss": 1.0 / e, "valid_hr": 0.1 * e})
    rd.finish({"linear_acc": 0.75}, t_start=0.0)
    _, rows = _csv(tmp_path / "d" / "metrics.csv")
    assert [(r["step"], r["loss"], r["epoch_loss"]) for r in rows] == [("1", "1.0", "1.0"), ("2", "0.5", "0.5")]
    acc = EventAccumulator(str(tmp_path / "d" / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("epoch/valid_hr")] == [(1, pytest.approx(0.1)),
                                                                          (2, pytest.approx(0.2))]
    assert acc.Scalars("final/linear_acc")[0].value == 0.75
