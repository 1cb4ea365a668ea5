"""``pairlab bench loss``: a tiny grid through the CLI (JSON records with the floor attached), the ratio
table against the fastest peer and the floor, and bad input."""

from __future__ import annotations

import json

import pytest

from pairlab.bench import cli as bench_cli
from pairlab.bench import runner
from pairlab.bench.cli import markdown, rows
from pairlab.cli import main


def test_tiny_grid_json(tmp_path, capsys, monkeypatch):
    """in-process measurements (the subprocess path is tested in test_runner.py)."""
    monkeypatch.setattr(bench_cli, "run_config", lambda cfg, timeout, cap: runner.measure(cfg))
    out = tmp_path / "r.json"
    code = main(["bench", "loss", "--n", "16", "--impl", "pairlab", "--form", "clip", "--repeats", "1",
                 "--budget", "0", "--threads", "1", "--json", "--out", str(out)])
    assert code == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["impl"] for r in records] == ["floor", "pairlab"]
    floor, rec = records
    assert rec["ok"] and rec["floor_s"] == floor["fwd_bwd_s"] and rec["n"] == 16 and rec["d"] == 128
    assert json.loads(out.read_text()) == records


def _rec(impl, t, mib, ok=True, form="simclr", n=4096, reason="", loss_mib=None):
    return {"impl": impl, "form": form, "n": n, "d": 128, "fwd_bwd_s": t if ok else None, "peak_mib": mib,
            "ok": ok, "reason": reason, "floor_s": 0.25, "others_cores": 0.1, "loss_mib": loss_mib}


def test_ratios_to_fastest_peer_and_floor():
    records = [_rec("pairlab", 0.2, 300, loss_mib=20), _rec("torch-ce", 0.8, 1000),
               _rec("torch-ce-compile", 0.4, 900, loss_mib=640),
               _rec("lightly", None, 2000, ok=False, reason="not available: cannot import lightly"),
               _rec("pairlab", 1.0, 250, form="clip")]
    table = {(r[0], r[2]): r for r in rows(records)}
    pl = table[("simclr", "pairlab")]
    assert pl[5] == "0.50" and pl[6] == "0.80" and pl[8] == f"{300 / 900:.2f}"
    assert pl[9] == "20 MiB" and pl[10] == f"{20 / 640:.3f}"  # the loss's own memory, as a ratio to the peer's
    assert table[("simclr", "torch-ce")][9] == "-"  # not recorded
    assert table[("simclr", "torch-ce-compile")][5] == "1.00"
    assert table[("simclr", "lightly")][12].startswith("not available")
    assert table[("clip", "pairlab")][5] == "-"  # no peer measured in that form
    md = markdown(records)
    assert md.count("\n") == 2 + 5 and "| simclr | 4096 | pairlab | 200.0 ms | - | 0.50 | 0.80 |" in md
    # with CPU times recorded, the ratios use them
    records[0]["extra"] = {"cpu_s": 0.1, "floor_cpu_s": 0.2}
    records[2]["extra"] = {"cpu_s": 0.4}
    pl = {(r[0], r[2]): r for r in rows(records)}[("simclr", "pairlab")]
    assert pl[4] == "100.0 ms" and pl[5] == "0.25" and pl[6] == "0.50"


@pytest.mark.parametrize("args,match", [(["--form", "triplet"], "form"), (["--impl", "nope"], "impl"),
                                        (["--repeats", "0"], "repeats")])
def test_bad_input_exits_2(args, match, capsys):
    assert main(["bench", "loss", "--n", "16", *args]) == 2
    assert match in capsys.readouterr().err
