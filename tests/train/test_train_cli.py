"""`pairlab train` / `pairlab eval` end to end (module: src/pairlab/train/cli.py; named to avoid
clashing with tests/test_cli.py under pytest's default import mode)."""

import json
from pathlib import Path

import pytest

from pairlab.cli import main

TINY = """
dataset: digits
epochs: 1
batch_size: 64
train_subset: 320
model: {widths: [8, 16], hidden_dim: 32, proj_dim: 16}
eval: {linear_max_iter: 50, geometry_samples: 100}
"""

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def test_train_writes_all_artefacts_and_eval_reruns(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    rc = main(["train", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--name", "t", "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "raw pixels" in out and "random init" in out and "learned" in out
    run = tmp_path / "runs" / "t"
    for f in ("config.yaml", "metrics.jsonl", "metrics.json", "checkpoint.pt", "loss.png", "scores.png",
              "projection.png"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    m = json.loads((run / "metrics.json").read_text())
    for k in ("knn_acc", "linear_acc", "raw_knn_acc", "raw_linear_acc", "random_knn_acc", "random_linear_acc",
              "alignment", "uniformity", "effective_rank", "wall_s", "load_avg_end"):
        assert isinstance(m[k], (int, float, list)), k
    assert 0.1 < m["raw_knn_acc"] <= 1 and 0 <= m["alignment"] <= 4 and m["uniformity"] <= 0
    assert 1 <= m["effective_rank"] <= 16 and m["steps"] == 5
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert (run / "projection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # existing run: refused without --overwrite
    rc = main(["train", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--name", "t", "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    # re-evaluation of the checkpoint gives the same numbers (deterministic protocol)
    assert main(["eval", str(run), "--quiet"]) == 0
    m2 = json.loads((run / "metrics.json").read_text())
    for k in ("knn_acc", "linear_acc", "raw_knn_acc", "random_knn_acc"):
        assert m2[k] == pytest.approx(m[k], abs=1e-6), k


def test_config_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 1\n")
    assert main(["train", "--config", str(bad), "--runs-dir", str(tmp_path)]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", "--objective", "nope", "--dataset", "digits", "--runs-dir", str(tmp_path)]) == 2
    assert "valid choices" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="apt package dataset-fashion-mnist not installed")
def test_fmnist_default_briefly(tmp_path):
    """The real default (Fashion-MNIST, NT-Xent, default model), cut to 40 steps and a 10k/2k evaluation."""
    cfg = tmp_path / "brief.yaml"
    cfg.write_text("eval: {train_subset: 10000, test_subset: 2000}\n")
    rc = main(["train", "--config", str(cfg), "--max-steps", "40", "--runs-dir", str(tmp_path), "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "fmnist-ntxent" / "metrics.json").read_text())
    assert m["steps"] == 40 and m["feature_dim"] == 128
    assert m["raw_knn_acc"] > 0.75 and m["raw_linear_acc"] > 0.75
    assert m["knn_acc"] > 0.6 and m["linear_acc"] > 0.6


def test_summary_lists_the_artefacts_the_run_really_has(tmp_path, capsys):
    from pairlab.train.cli import print_summary, run_artefacts

    run = tmp_path / "r"
    (run / "tensorboard").mkdir(parents=True)
    for f in ("config.yaml", "metrics.json", "metrics.jsonl", "metrics.csv", "checkpoint.pt", "report.html",
              "score_hist.jsonl", "loss.png", "projection.png", "checkpoint.pt.tmp"):
        (run / f).write_text("x")
    got = run_artefacts(run)
    assert got[0] == "report.html"  # the one to open first
    assert set(got) == {"report.html", "metrics.csv", "tensorboard/", "score_hist.jsonl", "loss.png",
                        "projection.png", "metrics.json", "metrics.jsonl", "config.yaml", "checkpoint.pt"}
    print_summary({"run_dir": str(run), "knn_acc": 0.5})
    out = capsys.readouterr().out
    assert all(name in out for name in got) and "*.png" not in out and ".tmp" not in out and "mlruns" not in out
    (run / "report.html").unlink()
    assert "report.html" not in run_artefacts(run) and run_artefacts(tmp_path / "missing") == []


def test_temperature_default_flag_uses_the_objectives_own(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY + "max_steps: 1\neval: {linear_max_iter: 5, geometry_samples: 20, baselines: false, "
                   "plots: false, train_subset: 100, test_subset: 50}\n")
    common = ["train", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--quiet", "--objective", "simlap"]
    assert main([*common, "--name", "d", "--temperature", "default"]) == 0
    row = json.loads((tmp_path / "runs" / "d" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["temperature"] == pytest.approx(0.1)  # SimLAP's paper default, not the config's 0.2
    assert "temperature: null" in (tmp_path / "runs" / "d" / "config.yaml").read_text()
    assert main([*common, "--name", "e", "--temperature", "0.3"]) == 0
    row = json.loads((tmp_path / "runs" / "e" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["temperature"] == pytest.approx(0.3)
    assert main([*common, "--name", "f", "--temperature", "warm"]) == 2
    err = capsys.readouterr().err
    assert "--temperature" in err and "'warm'" in err and "default" in err
