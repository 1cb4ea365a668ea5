"""pairlab.compare.leaderboard: mean/std against statistics by hand, ranking, CSV round trip, Markdown, plots."""

from __future__ import annotations

import math

import pytest

from pairlab.compare.grid import METRICS, Variant, make_row
from pairlab.compare.leaderboard import aggregate, fmt, mean_std, read_csv, write_leaderboard


def rows():
    vals = {"a": [0.1, 0.2, 0.6], "b": [0.5], "c": [None, 0.3]}
    out = []
    for name, knns in vals.items():
        for seed, k in enumerate(knns):
            if k is None:
                out.append(make_row(name, seed, None, error="ValueError: boom"))
            else:
                out.append(make_row(name, seed, {m: k * (i + 1) for i, m in enumerate(METRICS)}))
    out.append(make_row("bad", 0, None, error="config rejected: x"))
    out.append(make_row("raw pixels", None, {"knn_acc": 0.42, "linear_acc": 0.43}, kind="baseline"))
    return out


def test_mean_std_by_hand():
    m, s = mean_std([0.1, 0.2, 0.6])
    assert m == pytest.approx(0.3)
    assert s == pytest.approx(math.sqrt(((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + (0.6 - 0.3) ** 2) / 2))
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([None, float("nan")]) == (None, None)
    assert fmt(0.3, None) == "0.3000" and fmt(None, None) == "–" and fmt(1.23456, 0.1, 2) == "1.23 ± 0.10"


def test_aggregate_ranks_by_knn_and_puts_failures_last():
    summ = aggregate(rows())
    assert [s["variant"] for s in summ] == ["b", "a", "c", "bad"]  # kNN means 0.5, 0.3, 0.3 (tie: input order)
    a = summ[1]
    assert a["n_ok"] == 3 and a["n_failed"] == 0
    # metric i is knn * (i + 1): the means scale accordingly
    for i, m in enumerate(METRICS):
        assert a[m + "_mean"] == pytest.approx(0.3 * (i + 1))
        assert a[m + "_std"] == pytest.approx(mean_std([0.1, 0.2, 0.6])[1] * (i + 1))
    c = summ[2]
    assert (c["n_ok"], c["n_failed"], c["errors"], c["knn_acc_std"]) == (1, 1, ["ValueError: boom"], None)
    assert summ[3]["n_ok"] == 0 and summ[3]["knn_acc_mean"] is None
    base = aggregate(rows(), kind="baseline")
    assert [(s["variant"], s["knn_acc_mean"]) for s in base] == [("raw pixels", 0.42)]


def test_files_written(tmp_path):
    rs = rows()
    paths = write_leaderboard(rs, tmp_path, name="x", command="pairlab compare --objective a,b", seeds=[0, 1, 2],
                              base={"dataset": "digits", "epochs": 1}, variants=[Variant("a", {"objective": "dcl"})],
                              notes="## Claims\n\nnone", title="T")
    assert set(paths) == {"csv", "md", *METRICS}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    back = read_csv(paths["csv"])
    assert len(back) == len(rs)
    assert back[0]["knn_acc"] == pytest.approx(0.1) and back[0]["ok"] is True and back[0]["seed"] == 0
    assert back[-1]["seed"] is None and back[-1]["kind"] == "baseline"
    md = paths["md"].read_text()
    assert md.startswith("# T\n")
    assert "| 1 | b |  | 1 | 0.5000 |" in md  # single seed: no ± part
    assert "| 2 | a | `{\"objective\":\"dcl\"}` | 3 | 0.3000 ± 0.2646 |" in md
    assert "| 3 | c |  | 1 (+1 failed) |" in md
    assert "| bad | 0 | config rejected: x |" in md
    assert "| raw pixels | 1 | 0.4200 | 0.4300 |" in md
    assert "```sh\npairlab compare --objective a,b\n```" in md
    assert "data set `digits`" in md and "Seeds: [0, 1, 2]" in md
    assert "## Claims" in md and "![leaderboard-x-knn_acc](leaderboard-x-knn_acc.png)" in md
