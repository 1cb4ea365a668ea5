"""pairlab.compare.cli: exit code 2 on bad input, --variant parsing, --dry-run plan, a tiny real run."""

from __future__ import annotations

import pytest

from pairlab.cli import main
from pairlab.compare.cli import parse_variant

TINY = ["--set", "dataset=digits", "--set", "max_steps=2", "--set", "batch_size=64",
        "--set", "model={widths: [8, 16], hidden_dim: 32, proj_dim: 16}", "--set", "eval.plots=false",
        "--set", "eval.linear_max_iter=20", "--set", "eval.baselines=false"]


def test_parse_variant():
    assert parse_variant("dcl-b32:objective=dcl;batch_size=32") == ("dcl-b32", {"objective": "dcl", "batch_size": 32})
    assert parse_variant("ntxent") == ("ntxent", {})
    with pytest.raises(ValueError, match="--variant"):
        parse_variant(":a=1")


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to compare"),
    (["--objective", "ntxent,nope"], "unknown objective 'nope'"),
    (["--objective", "ntxent", "--seeds", "x"], "seeds"),
    (["--objective", "ntxent", "--set", "lr"], "--set expects KEY=VALUE"),
    (["--grid", "does-not-exist.yaml"], "not found"),
    (["--objective", "ntxent", "--set", "epochs=0"], "invalid configuration"),
    (["--objective", "ntxent,ntxent"], "duplicate variant"),
])
def test_bad_input_exits_2(tmp_path, capsys, argv, message):
    assert main(["compare", *argv, "--runs-dir", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_bad_grid_file_exits_2(tmp_path, capsys):
    g = tmp_path / "g.yaml"
    g.write_text("variants: [ntxent]\nseed: [0]\n")
    assert main(["compare", "--grid", str(g), "--runs-dir", str(tmp_path), "--quiet"]) == 2
    assert "unknown keys ['seed']" in capsys.readouterr().err


def test_dry_run_and_real_run(tmp_path, capsys):
    args = ["compare", "--objective", "ntxent", "--variant", "bad:epochs=0", *TINY,
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path), "--name", "t"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ntxent seed 0: new" in out and "bad seed 0: rejected" in out
    assert main([*args, "--quiet", "--no-baselines"]) == 0
    md = (tmp_path / "leaderboard-t.md").read_text()
    assert "| 1 | ntxent |" in md and "| bad | 0 | config rejected:" in md
    assert "pairlab compare --objective ntxent --variant bad:epochs=0" in md
    assert main([*args, "--dry-run"]) == 0
    assert "ntxent seed 0: done" in capsys.readouterr().out
