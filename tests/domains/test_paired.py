"""Paired domain: accelerometer/gyroscope split, aligned crops, retrieval and transfer metrics, runner."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from pairlab.domains import paired as pd
from pairlab.domains.timeseries import load_ucr

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon not installed")


@needs_aeon
def test_basicmotions_pair_is_the_channel_split():
    acc, gyro = pd.basicmotions_pair("test")
    full = load_ucr("BasicMotions", "test")
    assert acc.x.shape == (40, 3, 100) and gyro.x.shape == (40, 3, 100)
    assert torch.equal(torch.cat([acc.x, gyro.x], dim=1), full.x)
    assert torch.equal(acc.labels, gyro.labels)


def test_aligned_crop_uses_one_window_for_both():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 3, 50)
    ca, cb = pd.aligned_crop(a, 2 * a + 1, 0.6, g)
    assert torch.allclose(cb, 2 * ca + 1, atol=1e-5)
    assert ca.shape == a.shape
    with pytest.raises(ValueError, match="crop_frac"):
        pd.aligned_crop(a, a, 0.0)


def _retrieval_loop(q, k):
    qn, kn = torch.nn.functional.normalize(q.double(), dim=1), torch.nn.functional.normalize(k.double(), dim=1)
    ranks = []
    for i in range(q.shape[0]):
        s = [float(qn[i] @ kn[j]) for j in range(k.shape[0])]
        ranks.append(1 + sum(v > s[i] for v in s))
    return ranks


def test_retrieval_metrics_match_loop():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    k = k + 1.5 * q
    ranks = _retrieval_loop(q, k)
    m = pd.retrieval_metrics(q, k)
    assert m["recall@1"] == pytest.approx(sum(r <= 1 for r in ranks) / 30)
    assert m["recall@5"] == pytest.approx(sum(r <= 5 for r in ranks) / 30)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 30)
    assert pd.retrieval_metrics(q, q)["mrr"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        pd.retrieval_metrics(q, k[:5])


def test_centroid_transfer_matches_loop():
    g = torch.Generator().manual_seed(2)
    a, ya = torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g)
    b, yb = torch.randn(25, 6, generator=g), torch.randint(0, 4, (25,), generator=g)
    an = torch.nn.functional.normalize(a.double(), dim=1)
    cents = [torch.nn.functional.normalize(an[ya == c].sum(0), dim=0) for c in range(4)]
    correct = 0
    for i in range(25):
        bi = torch.nn.functional.normalize(b[i].double(), dim=0)
        pred = max(range(4), key=lambda c: float(bi @ cents[c]))
        correct += int(pred == int(yb[i]))
    assert pd.centroid_transfer_accuracy(a, ya, b, yb) == pytest.approx(correct / 25)


def test_config_rejects_non_pair_objective_and_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'tower'"):
        pd.make_config({"domain": "paired", "tower": 1})
    cfg = pd.make_config({"domain": "paired", "objective": "ntxent", "runs_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="two-tower"):
        pd.train(cfg, quiet=True)


@pytest.mark.slow
@needs_aeon
def test_cwcl_runner_freezes_tower_a_and_writes_run_dir(tmp_path):
    from pairlab.domains import run

    m = run({"domain": "paired", "objective": "cwcl", "freeze_a": True, "pretrain_epochs": 1, "epochs": 2,
             "runs_dir": str(tmp_path), "name": "p"}, quiet=True)
    files = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"config.yaml", "metrics.json", "metrics.jsonl", "loss.png", "similarity.png"} <= files
    assert len(m["pretrain_history"]) == 1 and len(m["history"]) == 2
    for k in ("gyro2acc_r@1", "transfer_acc", "gyro_linear_acc", "random_gyro2acc_mrr"):
        assert 0.0 <= m[k] <= 1.0
    assert set(m["leaderboard"]) == {"p", "random-init towers", "raw gyroscope"}
