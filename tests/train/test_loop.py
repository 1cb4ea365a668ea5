import json
import math

import pytest
import torch

from pairlab.train.checkpoint import load_checkpoint
from pairlab.train.config import make_config
from pairlab.train.loop import build_model, build_objective, call_objective, lr_lambda, train


def tiny(tmp_path, name, **over):
    base = {
        "name": name,
        "runs_dir": str(tmp_path),
        "dataset": "digits",
        "train_subset": 96,
        "batch_size": 24,
        "epochs": 2,
        "deterministic": True,
        "model": {"widths": [4, 8], "hidden_dim": 16, "proj_dim": 8},
        "eval": {
            "baselines": False,
            "plots": False,
            "train_subset": 200,
            "test_subset": 100,
            "geometry_samples": 50,
            "linear_max_iter": 20,
        },
    }
    base.update(over)
    return make_config(base)


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    full = train(tiny(tmp_path, "full", checkpoint_every=3), quiet=True, evaluate_at_end=False)
    assert full["steps"] == 8
    # 4 steps per epoch; "kill" after step 7: the last checkpoint is step 6 (mid-epoch 2), step 7 is redone
    out = train(tiny(tmp_path, "cut", checkpoint_every=3), quiet=True, evaluate_at_end=False, _stop_after_steps=7)
    assert out == {"stopped_at": 7}
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 6
    resumed = train(tiny(tmp_path, "cut", checkpoint_every=3), resume=True, quiet=True, evaluate_at_end=False)
    assert resumed["steps"] == 8
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["history"]
    hb = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["history"]
    assert ha == hb and len(ha) == 8
    # training moved the weights (so the comparison above can fail)
    init = build_model(tiny(tmp_path, "full")).state_dict()
    assert not all(torch.equal(a[k], init[k]) for k in a)


def test_kill_between_checkpoint_and_epoch_row_loses_no_row(tmp_path, monkeypatch):
    """A kill after the end-of-epoch checkpoint but before metrics.jsonl is rewritten: --resume restores the row."""
    import pairlab.train.loop as loop

    full = train(tiny(tmp_path, "full", epochs=3), quiet=True, evaluate_at_end=False)
    assert full["steps"] == 12
    real = loop.write_jsonl_atomic

    def killed_at_epoch_2(path, rows):
        if path.name == "metrics.jsonl" and rows and rows[-1]["epoch"] == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: the checkpoint of step 8 is on disk, the row is not
        return real(path, rows)

    monkeypatch.setattr(loop, "write_jsonl_atomic", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, "cut", epochs=3), quiet=True, evaluate_at_end=False)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert load_checkpoint(cut / "checkpoint.pt")["step"] == 8
    assert [json.loads(x)["epoch"] for x in (cut / "metrics.jsonl").read_text().splitlines()] == [1]
    train(tiny(tmp_path, "cut", epochs=3), resume=True, quiet=True, evaluate_at_end=False)
    rows = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]  # epoch mean loss over the whole epoch
    hist = [json.loads(x) for x in (cut / "score_hist.jsonl").read_text().splitlines()]
    ref_hist = [json.loads(x) for x in (tmp_path / "full" / "score_hist.jsonl").read_text().splitlines()]
    assert hist == ref_hist and [h["epoch"] for h in hist] == [1, 2, 3]


def test_numpy_statistics_in_epoch_rows_keep_the_checkpoint_loadable(tmp_path, monkeypatch):
    """Rows go into the checkpoint: a NumPy scalar statistic must not make it unloadable with weights_only=True."""
    import numpy as np

    from pairlab.objectives.infonce import NTXent

    forward = NTXent.forward

    def with_numpy_stat(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        self.last_stats = {**getattr(self, "last_stats", {}), "np_stat": np.float64(0.25)}
        return out

    monkeypatch.setattr(NTXent, "forward", with_numpy_stat)
    train(tiny(tmp_path, "np"), quiet=True, evaluate_at_end=False, _stop_after_steps=6)  # checkpoint: step 4
    state = load_checkpoint(tmp_path / "np" / "checkpoint.pt")
    assert state["epoch_rows"][0]["np_stat"] == 0.25 and type(state["epoch_rows"][0]["np_stat"]) is float
    train(tiny(tmp_path, "np"), resume=True, quiet=True, evaluate_at_end=False)
    rows = [json.loads(x) for x in (tmp_path / "np" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["np_stat"] == 0.25


def test_resume_mid_epoch_reports_the_whole_epoch_loss(tmp_path):
    full = train(tiny(tmp_path, "full", checkpoint_every=1), quiet=True, evaluate_at_end=False)
    assert full["steps"] == 8
    train(tiny(tmp_path, "cut", checkpoint_every=1), quiet=True, evaluate_at_end=False, _stop_after_steps=6)
    train(tiny(tmp_path, "cut", checkpoint_every=1), resume=True, quiet=True, evaluate_at_end=False)
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    hist = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["history"]
    assert [r["epoch"] for r in rows] == [1, 2]
    want = pytest.approx([sum(hist[:4]) / 4, sum(hist[4:]) / 4])
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref] == want


def test_run_dir_never_overwritten_without_flag(tmp_path):
    cfg = tiny(tmp_path, "r", max_steps=1)
    train(cfg, quiet=True, evaluate_at_end=False)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="--overwrite"):
        train(cfg, quiet=True, evaluate_at_end=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    train(cfg, overwrite=True, quiet=True, evaluate_at_end=False)
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 1


def test_learnable_temperature_is_optimised_and_pair_objective(tmp_path):
    cfg = tiny(tmp_path, "clip", objective="clip", objective_args={"learnable_temperature": True}, max_steps=3)
    obj, kind = build_objective(cfg)
    assert kind == "pair" and obj.temperature.value == pytest.approx(0.2)
    train(cfg, quiet=True, evaluate_at_end=False)
    state = load_checkpoint(tmp_path / "clip" / "checkpoint.pt")
    assert float(state["objective"]["temperature.log_scale"]) != pytest.approx(math.log(1 / 0.2), abs=1e-7)


def test_objective_call_conventions():
    z = torch.randn(6, 2, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    sup, kind = build_objective(make_config({"objective": "supcon"}))
    assert kind == "views"
    from pairlab.objectives import SupCon

    assert float(call_objective(sup, kind, z, labels)) == pytest.approx(float(SupCon(0.2)(z, labels)))
    with pytest.raises(ValueError, match="--views 2"):
        build_objective(make_config({"objective": "clip", "views": 3}))
    with pytest.raises(ValueError, match="valid choices"):
        build_objective(make_config({"objective": "nope"}))
    with pytest.raises(ValueError, match="objective_args"):
        build_objective(make_config({"objective": "ntxent", "objective_args": {"bogus": 1}}))


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)


def test_batch_too_large_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--batch-size"):
        train(tiny(tmp_path, "big", batch_size=500), quiet=True)


def test_metrics_jsonl_per_epoch(tmp_path):
    train(tiny(tmp_path, "m"), quiet=True, evaluate_at_end=False)
    rows = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 8
    assert all(math.isfinite(r["loss"]) and r["images_per_s"] > 0 for r in rows)


def test_grad_cache_flag_matches_plain_step(tmp_path):
    """One chunk = the whole batch: same parameters as the plain step (augmentation RNG replayed);
    several chunks run and give finite losses (BN sees chunk statistics, so values differ)."""
    pytest.importorskip("pairlab.gradcache")
    plain = tiny(tmp_path, "plain", max_steps=2)
    train(plain, quiet=True, evaluate_at_end=False)
    train(tiny(tmp_path, "gc1", max_steps=2, grad_cache_chunk=24), quiet=True, evaluate_at_end=False)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "gc1")
    params = [n for n, _ in build_model(plain).named_parameters()]
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in params)
    out = train(tiny(tmp_path, "gc3", max_steps=2, grad_cache_chunk=10), quiet=True, evaluate_at_end=False)
    hist = load_checkpoint(tmp_path / "gc3" / "checkpoint.pt")["history"]
    assert out["steps"] == 2 and all(math.isfinite(v) for v in hist)


def _ddp_worker(rank, world, root):
    from pathlib import Path

    m = train(tiny(Path(root), "ddp"), quiet=True, evaluate_at_end=False)
    return {"steps": m["steps"], "world": m["world_size"]}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_shard_data_and_only_rank0_writes(tmp_path):
    from pairlab import distributed

    out = distributed.launch(_ddp_worker, 2, args=(str(tmp_path),))
    # 96 images / 2 ranks / batch 24 = 2 steps per epoch, 2 epochs
    assert out == [{"steps": 4, "world": 2}, {"steps": 4, "world": 2}]
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # one line per epoch: only rank 0 writes
    assert rows[0]["anchors_used_global"] == 2 * 24 * 2  # candidates gathered from both ranks
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["step"] == 4


@pytest.mark.parametrize(
    "overrides",
    [
        {"candidates": "queue", "candidates_args": {"size": 64, "init": "empty"}},
        {
            "candidates": "mochi",
            "candidates_args": {"num_hard": 16, "num_mix": 8, "num_query_mix": 4},
            "weights": "hardness",
        },
        {"objective": "triplet-margin", "temperature": None},
        {
            "objective": "supcon",
            "weights": "hardness",
            "candidates": "queue",
            "candidates_args": {"size": 64, "with_labels": True, "init": "empty"},
        },
    ],
    ids=["queue", "mochi-hardness", "triplet-labels", "supcon-queue-hardness"],
)
def test_loop_drives_candidates_weights_and_label_objectives(tmp_path, overrides):
    """The loop reaches candidates, weights and 'labels' objectives from the config: the first loss equals
    the objective called by hand on the same embeddings (same seed), and a queue is filled after the steps."""
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, build_pair_components, call_objective, train

    base = {
        "name": "comp",
        "dataset": "digits",
        "epochs": 1,
        "max_steps": 3,
        "batch_size": 64,
        "runs_dir": str(tmp_path),
        "train_subset": 256,
        "eval": {"baselines": False, "plots": False, "train_subset": 256, "test_subset": 64},
    }
    cfg = make_config({**base, **overrides})
    obj, kind = build_objective(cfg)
    gen, w = build_pair_components(cfg, 256)
    assert (gen is not None) == ("candidates" in overrides) and (w is not None) == ("weights" in overrides)
    metrics = train(cfg, quiet=True, evaluate_at_end=False)
    assert metrics["steps"] == 3
    # a hand call through the same path is finite and differentiable
    z = torch.randn(8, 2, cfg.model.proj_dim, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    if gen is not None:
        c = gen(z, labels, ids=torch.arange(8), epoch=0)
        loss = call_objective(obj, kind, c.views_or(z), labels, **c.objective_kwargs(w))
    else:
        loss = call_objective(obj, kind, z, labels, **({} if w is None else {"weights": w}))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_loop_rejects_candidates_with_pair_objective():
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective

    with pytest.raises(ValueError, match="candidates/weights need a 'views' objective"):
        build_objective(make_config({"objective": "clip", "candidates": "queue"}))


def _user_data(tmp_path, kind):
    import numpy as np

    if kind == "npz-vectors":
        rng = np.random.default_rng(0)
        y = np.arange(60) % 2
        x = rng.normal(size=(60, 5)).astype(np.float32) + 3.0 * y[:, None]
        np.savez(tmp_path / "v.npz", x=x, y=y)
        return f"npz:{tmp_path}/v.npz"
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(30):  # unlabelled: images directly in the folder
        Image.new("L", (10, 10), i * 8).save(tmp_path / "imgs" / f"{i:03d}.png")
    return f"folder:{tmp_path}/imgs"


@pytest.mark.parametrize("kind", ["npz-vectors", "unlabelled-folder"])
def test_user_data_runs_write_report_and_per_epoch_histograms(tmp_path, kind):
    from pairlab.report.html import read_jsonl

    cfg = tiny(tmp_path, kind, dataset=_user_data(tmp_path, kind), train_subset=None, batch_size=8, views=3,
               deterministic=False)
    m = train(cfg, quiet=True)
    run = tmp_path / kind
    rows = read_jsonl(run / "score_hist.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["n"] >= 2 for r in rows)
    assert all(-1 - 1e-6 <= r["pos_mean"] <= 1 + 1e-6 and len(r["pos_hist"]) == len(r["bin_edges"]) - 1 for r in rows)
    html = (run / "report.html").read_text()
    assert "<html" in html.lower() and kind in html
    assert -1 <= m["scores"]["pos_mean"] <= 1 and m["alignment"] >= 0  # the K=2 geometry of the run's views
    assert ("knn_acc" in m) == (kind == "npz-vectors")


def test_null_temperature_means_each_objectives_own_default():
    import inspect

    from pairlab import registry

    ctx = {"num_classes": 10, "num_samples": 100}
    for name in ("simlap", "ntxent", "dcl"):
        own = inspect.signature(registry.get("objectives", name).obj).parameters["temperature"].default
        obj, _ = build_objective(make_config({"objective": name, "temperature": None}), ctx)
        assert obj.temperature.value == pytest.approx(own), name
        obj, _ = build_objective(make_config({"objective": name}), ctx)  # the embedded config's 0.2
        assert obj.temperature.value == pytest.approx(0.2), name
    simlap, _ = build_objective(make_config({"objective": "simlap", "temperature": None}), ctx)
    assert simlap.temperature.value == pytest.approx(0.1)  # the SimLAP paper's tau
    explicit, _ = build_objective(make_config({"objective": "simlap", "temperature": None,
                                               "objective_args": {"temperature": 0.3}}), ctx)
    assert explicit.temperature.value == pytest.approx(0.3)
