"""Time-series domain: .ts parser, UCR loaders, views, encoder, 1-NN baseline, batches, runner artefacts."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from pairlab.domains import timeseries as ts

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon not installed")

TS_FILE = """# comment
@problemName Toy
@univariate false
@dimensions 2
@classLabel true b a
@data
1,2,3:4,5,6:a
7,8,9:10,11,12:b
"""


def test_read_ts_multivariate_and_class_order(tmp_path):
    p = tmp_path / "Toy_TRAIN.ts"
    p.write_text(TS_FILE)
    x, y, classes = ts.read_ts(p)
    assert classes == ("b", "a")
    assert x.shape == (2, 2, 3)
    assert x[0].tolist() == [[1, 2, 3], [4, 5, 6]] and x[1, 1].tolist() == [10, 11, 12]
    assert y.tolist() == [1, 0]


def test_read_ts_rejects_unequal_lengths_and_unknown_labels(tmp_path):
    p = tmp_path / "Bad.ts"
    p.write_text("@classLabel true a\n@data\n1,2,3:a\n1,2:a\n")
    with pytest.raises(ValueError, match="unequal lengths"):
        ts.read_ts(p)
    p.write_text("@classLabel true a\n@data\n1,2,3:z\n")
    with pytest.raises(ValueError, match="not in @classLabel"):
        ts.read_ts(p)
    with pytest.raises(FileNotFoundError):
        ts.read_ts(tmp_path / "missing.ts")


@needs_aeon
@pytest.mark.parametrize("name,train,test,c,length,k", [
    ("GunPoint", 50, 150, 1, 150, 2), ("ItalyPowerDemand", 67, 1029, 1, 24, 2), ("ArrowHead", 36, 175, 1, 251, 3),
    ("BasicMotions", 40, 40, 6, 100, 4), ("OSULeaf", 200, 242, 1, 427, 6)])
def test_ucr_shapes_match_the_archive(name, train, test, c, length, k):
    a, b = ts.load_ucr(name, "train"), ts.load_ucr(name, "test")
    assert tuple(a.x.shape) == (train, c, length) and tuple(b.x.shape) == (test, c, length)
    assert len(a.classes) == k and set(a.labels.tolist()) == set(range(k))


def test_load_ucr_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        ts.load_ucr("GunPoint", "val")
    with pytest.raises(FileNotFoundError, match="Zenodo"):
        ts.load_ucr("ECG200", "train", data_dir=tmp_path)


def test_registered_loaders():
    from pairlab import registry

    names = registry.available("datasets")
    if "ucr-gunpoint" not in names:  # pairlab.domains is not (yet) in registry.PACKAGES: import registers them
        import pairlab.domains.timeseries  # noqa: F401
    assert {"ucr-gunpoint", "ucr-osuleaf", "ucr-basicmotions"} <= set(registry._REGISTRY["datasets"])


def test_standardize_channels_uses_train_stats():
    tr = torch.randn(10, 2, 30) * torch.tensor([1.0, 5.0])[None, :, None] + 3
    te = tr + 1
    a, b = ts.standardize_channels(tr, te)
    assert torch.allclose(a.mean(dim=(0, 2)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(a.std(dim=(0, 2)), torch.ones(2), atol=1e-5)
    assert torch.allclose(b - a, 1 / tr.std(dim=(0, 2))[None, :, None].expand_as(a), atol=1e-5)


def test_permutation_keeps_values_and_permutes_channels_together():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 40, dtype=torch.float32).view(1, 2, 40).repeat(8, 1, 1)
    y = ts.permutation(x, max_segments=5, p=1.0, generator=g)
    assert torch.equal(torch.sort(y, dim=2).values, x)
    assert torch.equal(y[:, 1] - y[:, 0], torch.full((8, 40), 40.0))  # same time order in both channels
    assert not torch.equal(y, x)
    assert torch.equal(ts.permutation(x, 5, p=0.0, generator=g), x)


def test_time_warp_identity_endpoints_and_monotone():
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 50).view(1, 1, 50).repeat(6, 1, 1)
    assert torch.allclose(ts.time_warp(ramp, 0.0, generator=g), ramp, atol=1e-6)
    w = ts.time_warp(ramp, 0.5, knots=4, p=1.0, generator=g)
    assert torch.allclose(w[..., 0], ramp[..., 0]) and torch.allclose(w[..., -1], ramp[..., -1], atol=1e-6)
    assert bool((w.diff(dim=2) >= -1e-7).all())  # a monotone map of a ramp stays monotone
    assert not torch.allclose(w, ramp, atol=1e-3)


def test_scaling_and_jitter():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 20).abs() + 0.5
    s = ts.scaling(x, 0.2, g)
    ratio = s / x
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-5)  # one factor per series and channel
    assert torch.equal(ts.jitter(x, 0.0, g), x)
    assert float((ts.jitter(x, 0.1, g) - x).std()) == pytest.approx(0.1, rel=0.3)


def test_views_layout_and_reproducible():
    v = ts.TSViews(3)
    x = torch.randn(5, 2, 30)
    a = v(x, torch.Generator().manual_seed(0))
    b = v(x, torch.Generator().manual_seed(0))
    assert a.shape == (5, 3, 2, 30) and torch.equal(a, b)
    assert not torch.equal(a[:, 0], a[:, 1])
    with pytest.raises(ValueError, match=r"\[B, C, L\]"):
        v(torch.randn(5, 30))


def test_cnn_shapes_any_length():
    m = ts.CNN1d(3, proj_dim=16).eval()
    for length in (24, 101):
        x = torch.randn(4, 3, length)
        assert m.features(x).shape == (4, 128) and m(x).shape == (4, 16)


def test_one_nn_euclidean_matches_loop():
    g = torch.Generator().manual_seed(3)
    tr, te = torch.randn(20, 2, 7, generator=g), torch.randn(9, 2, 7, generator=g)
    ytr, yte = torch.randint(0, 3, (20,), generator=g), torch.randint(0, 3, (9,), generator=g)
    correct = 0
    for i in range(9):
        d = [float(((te[i] - tr[j]) ** 2).sum()) for j in range(20)]
        correct += int(ytr[min(range(20), key=d.__getitem__)] == yte[i])
    assert ts.one_nn_euclidean_accuracy(tr, ytr, te, yte) == pytest.approx(correct / 9)


@pytest.mark.parametrize("n,b", [(50, 64), (65, 32), (67, 64), (10, 3)])
def test_epoch_batches_cover_every_index_once(n, b):
    batches = ts.epoch_batches(n, b, torch.Generator().manual_seed(0))
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert all(x.numel() >= 2 for x in batches)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown key 'epoch'"):
        ts.make_config({"domain": "timeseries", "epoch": 3})
    with pytest.raises(ValueError, match="dataset must be one of"):
        ts.make_config({"domain": "timeseries", "dataset": "ucr-ecg200"})
    with pytest.raises(ValueError, match="input="):
        ts.build_objective("triplet-margin", {}, 0.2, 10, 2)


@pytest.mark.slow
@needs_aeon
def test_runner_writes_run_dir(tmp_path):
    objective, args = "dbpm", {"warm_epochs": 1}
    from pairlab.domains import run

    cfg = {"domain": "timeseries", "dataset": "ucr-italypowerdemand", "objective": objective,
           "objective_args": args, "epochs": 2, "batch_size": 32, "runs_dir": str(tmp_path), "name": "r",
           "widths": [8, 16], "plots": True}
    m = run(cfg, quiet=True)
    d = tmp_path / "r"
    files = {p.name for p in d.iterdir()}
    assert {"config.yaml", "metrics.json", "metrics.jsonl", "loss.png", "projection.png"} <= files
    rows = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert 0 <= m["linear_acc"] <= 1 and 0 <= m["raw_1nn_ed_acc"] <= 1
    assert set(m["leaderboard"]) == {"r", "1nn-euclidean (raw)", "raw series", "random-init cnn"}
    assert "dbpm_noisy" in rows[-1] and "mean_weight" in rows[-1]  # DBPM got indices and set_epoch
    with pytest.raises(ValueError, match="already exists"):
        run(cfg, quiet=True)


@pytest.mark.slow
@needs_aeon
def test_runner_progress_lines_when_piped_and_none_when_quiet(tmp_path, capsys):
    """The fit loop reports through pairlab.domains.fit_progress: off a terminal one plain line per epoch."""
    from pairlab.domains import run

    cfg = {"domain": "timeseries", "dataset": "ucr-italypowerdemand", "objective": "ntxent", "epochs": 2,
           "batch_size": 64, "runs_dir": str(tmp_path), "name": "p", "widths": [4, 8], "plots": False}
    run(cfg, quiet=False)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(" loss ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    run({**cfg, "name": "q"}, quiet=True)
    assert capsys.readouterr().out == ""
