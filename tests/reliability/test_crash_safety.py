"""Crash safety of training runs: SIGKILL at random points (20 kills), torn/corrupted checkpoints, no overwrite.

- ``test_sigkill_20_times_then_resume_matches_uninterrupted`` (slow, run by ``make test``): a ``pairlab train``
  subprocess (deterministic, a checkpoint every step) is killed with SIGKILL 20 times, at random delays and, every
  third kill, the moment a checkpoint temp file appears (i.e. during a checkpoint write); each time ``--resume``
  continues it. The finished run must have the uninterrupted run's final weights, loss history and metrics.
- A truncated or bit-flipped checkpoint is reported as corrupted (a clear ``ValueError`` naming the file), and
  ``--resume`` falls back to the previous good checkpoint and still reaches the uninterrupted result.
- A run directory is never overwritten without ``--overwrite`` (exit code 2, files byte-identical).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pairlab.cli import main
from pairlab.train.checkpoint import load_checkpoint, save_checkpoint
from pairlab.train.config import make_config
from pairlab.train.loop import train

ROOT = Path(__file__).resolve().parents[2]


def tiny(runs: Path, name: str, **over) -> dict:
    cfg = {
        "name": name, "runs_dir": str(runs), "dataset": "digits", "train_subset": 96, "batch_size": 24,
        "epochs": 2, "deterministic": True, "checkpoint_every": 1, "warmup_frac": 0.1,
        "model": {"widths": [4, 8], "hidden_dim": 16, "proj_dim": 8},
        "eval": {"baselines": False, "plots": False, "train_subset": 200, "test_subset": 100,
                 "geometry_samples": 50, "linear_max_iter": 20},
    }
    cfg.update(over)
    return cfg


def _state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoint.pt")


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ corrupted files
@pytest.mark.parametrize("damage", ["truncate_half", "truncate_tiny", "empty", "garbage", "bitflip"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    p = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {"w": torch.randn(64, 64)}, "step": 3}, p)
    data = p.read_bytes()
    if damage == "truncate_half":
        data = data[: len(data) // 2]
    elif damage == "truncate_tiny":
        data = data[:100]
    elif damage == "empty":
        data = b""
    elif damage == "garbage":
        data = b"not a checkpoint" * 10
    else:  # one flipped byte in the middle of the tensor data: torch.load alone would not notice
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    p.write_bytes(data)
    with pytest.raises(ValueError, match=r"checkpoint.pt.*(corrupt|truncated)"):
        load_checkpoint(p)


def test_resume_falls_back_to_previous_good_checkpoint(tmp_path):
    ref = train(make_config(tiny(tmp_path, "ref")), quiet=True, evaluate_at_end=False)
    assert ref["steps"] == 8
    cfg = make_config(tiny(tmp_path, "cut"))
    assert train(cfg, quiet=True, evaluate_at_end=False, _stop_after_steps=5) == {"stopped_at": 5}
    run = tmp_path / "cut"
    ck = run / "checkpoint.pt"
    assert load_checkpoint(ck)["step"] == 4  # checkpoint_every=1, the stop skips step 5's checkpoint
    ck.write_bytes(ck.read_bytes()[:-200])  # torn: as if the file system lost the tail
    out = train(cfg, resume=True, quiet=True, evaluate_at_end=False)
    assert out["steps"] == 8
    assert _same_weights(_state(run)["model"], _state(tmp_path / "ref")["model"])
    assert _state(run)["history"] == _state(tmp_path / "ref")["history"]


def test_resume_with_every_checkpoint_corrupted_is_a_clear_error(tmp_path, capsys):
    cfg = tiny(tmp_path, "bad")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    assert train(make_config(cfg), quiet=True, evaluate_at_end=False, _stop_after_steps=3) == {"stopped_at": 3}
    for p in (tmp_path / "bad").glob("checkpoint*.pt"):
        p.write_bytes(b"garbage")
    code = main(["train", "--config", str(tmp_path / "bad.yaml"), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint" in err and ("corrupt" in err or "truncated" in err)
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------ no overwrite
def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (recursively, e.g. ``tensorboard/``), keyed by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_run_directory_never_overwritten_without_flag(tmp_path, capsys):
    cfg = tiny(tmp_path, "keep", max_steps=2)
    (tmp_path / "keep.yaml").write_text(yaml.safe_dump(cfg))
    train(make_config(cfg), quiet=True, evaluate_at_end=False)
    before = _tree_bytes(tmp_path / "keep")
    assert (tmp_path / "keep" / "tensorboard").is_dir() and len(before) > 3
    code = main(["train", "--config", str(tmp_path / "keep.yaml"), "--quiet", "--lr", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    after = _tree_bytes(tmp_path / "keep")
    assert after == before
    # with --overwrite it is replaced (a fresh run: different lr, different weights)
    old_w = load_checkpoint(tmp_path / "keep" / "checkpoint.pt")["model"]
    assert main(["train", "--config", str(tmp_path / "keep.yaml"), "--quiet", "--lr", "0.1", "--overwrite"]) == 0
    assert not _same_weights(old_w, load_checkpoint(tmp_path / "keep" / "checkpoint.pt")["model"])


# ------------------------------------------------------------------------------------------------ 20 SIGKILLs
def _spawn(cfg_path: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pairlab", "train", "--config", str(cfg_path), "--quiet"]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _tmp_files(run: Path) -> list[Path]:
    return list(run.glob("*.tmp")) if run.is_dir() else []


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in m.items() if isinstance(v, float) and not k.endswith("_s") and "load" not in k}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_20_times_then_resume_matches_uninterrupted(tmp_path):
    kills_wanted = 20
    over = {"train_subset": 192, "epochs": 3}  # 8 steps per epoch, 24 steps
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump(tiny(tmp_path, "ref", **over)))
    ref = subprocess.run([sys.executable, "-m", "pairlab", "train", "--config", str(ref_cfg), "--quiet"], cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_state, ref_metrics = _state(tmp_path / "ref"), _metrics(tmp_path / "ref")
    assert ref_state["step"] == 24 and "knn_acc" in ref_metrics

    rng = random.Random(1234)
    kills, during_write, trials, finished = 0, 0, 0, []
    while kills < kills_wanted:
        trials += 1
        name = f"killed{trials}"
        cfg_path = tmp_path / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(tiny(tmp_path, name, **over)))
        run = tmp_path / name
        resume = False
        while True:
            proc = _spawn(cfg_path, resume)
            resume = True
            target_write = kills < kills_wanted and kills % 3 == 2
            deadline = time.monotonic() + (60.0 if target_write else rng.uniform(1.0, 8.0))
            killed_in_write = False
            while proc.poll() is None and time.monotonic() < deadline and kills < kills_wanted:
                if target_write and _tmp_files(run):
                    killed_in_write = True
                    break
                time.sleep(0.002 if target_write else 0.02)
            if proc.poll() is None and kills < kills_wanted:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                during_write += killed_in_write
                continue
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"resume failed after {kills} kills:\n{err.decode()[-3000:]}"
            finished.append(run)
            break
    assert kills == kills_wanted
    assert during_write >= 3, f"only {during_write} kills landed during a checkpoint write"
    for run in finished:
        state = _state(run)
        assert state["step"] == 24 and len(state["history"]) == 24
        assert state["history"] == ref_state["history"], f"{run.name}: loss history differs from the reference"
        assert _same_weights(state["model"], ref_state["model"]), f"{run.name}: final weights differ"
        assert _metrics(run) == ref_metrics
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3], f"{run.name}: per-epoch rows {[r['epoch'] for r in rows]}"
    print(f"kills={kills} during_write={during_write} trials={trials} finished={len(finished)}")
