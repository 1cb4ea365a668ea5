"""pairlab.compare.grid: overrides, seeds, grid files, rows, resume/reuse, failures recorded, a real digits run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pairlab.compare.grid import (
    Backend,
    Variant,
    compare,
    load_grid,
    merge,
    objective_variants,
    parse_seeds,
    parse_set,
    run_config,
    run_state,
)
from pairlab.compare.leaderboard import aggregate, read_csv
from pairlab.train.config import dump_config

TINY = {"dataset": "digits", "batch_size": 64, "epochs": 1, "max_steps": 2,
        "model": {"widths": [8, 16], "hidden_dim": 32, "proj_dim": 16},
        "eval": {"plots": False, "linear_max_iter": 20, "baselines": False, "geometry_samples": 100}}

# fake per-(objective, seed) metrics; the hand computation below uses these numbers
FAKE = {("ntxent", 0): 0.50, ("ntxent", 1): 0.70, ("dcl", 0): 0.80, ("dcl", 1): 0.60, ("supcon", 0): 0.90,
        ("supcon", 1): 0.92}


class FakeTrainer:
    """Writes config.yaml/metrics.jsonl/metrics.json like the loop; counts calls; can fail on demand."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, int, bool, bool]] = []
        self.fail = fail

    def __call__(self, cfg, *, resume, overwrite, quiet):
        self.calls.append((cfg.objective, cfg.seed, resume, overwrite))
        run_dir = Path(cfg.runs_dir) / cfg.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        if cfg.objective in self.fail:
            raise RuntimeError(f"{cfg.objective} exploded\nsecond line")
        knn = FAKE[(cfg.objective, cfg.seed)]
        with open(run_dir / "metrics.jsonl", "w") as f:
            f.write(json.dumps({"epoch": 1, "epoch_s": 2.0 + cfg.seed}) + "\n")
            f.write(json.dumps({"epoch": 2, "epoch_s": 4.0 + cfg.seed}) + "\n")
        m = {"knn_acc": knn, "linear_acc": knn + 0.05, "alignment": 1.0 - knn, "uniformity": -knn,
             "effective_rank": 10 * knn, "effective_rank_z": 5 * knn, "steps": 7, "load_avg_end": [3.5, 1, 1]}
        (run_dir / "metrics.json").write_text(json.dumps(m))
        return m


def fake_baselines(cfg, seeds):
    return [{"variant": "raw pixels", "seed": None, "knn_acc": 0.4, "linear_acc": 0.45}] + [
        {"variant": "random init", "seed": s, "knn_acc": 0.3 + 0.1 * s, "linear_acc": 0.35} for s in seeds]


def test_parse_set_nested_yaml_values():
    got = parse_set(["lr=1e-3", "eval.knn_k=10", "model.widths=[8, 16]", "name=x", "temperature=null",
                     "objective_args.tau=0.5"])
    assert got == {"lr": 1e-3, "eval": {"knn_k": 10}, "model": {"widths": [8, 16]}, "name": "x",
                   "temperature": None, "objective_args": {"tau": 0.5}}
    for bad in ("lr", "=3", "a..b=1", "x=[1,"):
        with pytest.raises(ValueError, match="--set"):
            parse_set([bad])


def test_parse_seeds_and_objective_variants():
    assert parse_seeds("2,0,1") == [0, 1, 2]
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert parse_seeds([1, 1]) == [1]
    for bad in ("a", "", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)
    vs = objective_variants("ntxent, dcl")
    assert [(v.name, v.overrides) for v in vs] == [("ntxent", {"objective": "ntxent"}), ("dcl", {"objective": "dcl"})]
    with pytest.raises(ValueError, match="variant name"):
        Variant("a/b")


def test_merge_and_run_config(tmp_path):
    base = {"dataset": "digits", "model": {"widths": [8, 16], "proj_dim": 16}}
    assert merge(base, {"model": {"proj_dim": 32}}) == {"dataset": "digits", "model": {"widths": [8, 16],
                                                                                        "proj_dim": 32}}
    cfg = run_config(base, Variant("v", {"model": {"proj_dim": 32}, "objective": "dcl"}), 3, tmp_path)
    assert (cfg.name, cfg.seed, cfg.objective, cfg.model.proj_dim, cfg.model.widths) == ("v-s3", 3, "dcl", 32, (8, 16))
    assert run_config(base, Variant("m", {"candidates": "mochi"}), 0, tmp_path).candidates == "mochi"
    with pytest.raises(ValueError, match="unknown key 'candidate'"):
        run_config(base, Variant("w", {"candidate": "mochi"}), 0, tmp_path)


def test_load_grid(tmp_path):
    (tmp_path / "base.yaml").write_text("dataset: digits\nepochs: 3\n")
    g = tmp_path / "compare-x.yaml"
    g.write_text("base_config: base.yaml\nbase: {epochs: 1}\nseeds: [1, 0]\nvariants:\n  - ntxent\n"
                 "  - {name: dcl-b32, set: {objective: dcl, batch_size: 32}}\nnotes: hello\n")
    grid = load_grid(g)
    assert grid.base == {"dataset": "digits", "epochs": 1}
    assert grid.seeds == [0, 1]
    assert [(v.name, v.overrides) for v in grid.variants] == [
        ("ntxent", {"objective": "ntxent"}), ("dcl-b32", {"objective": "dcl", "batch_size": 32})]
    assert grid.notes == "hello"
    g.write_text("variants: [ntxent]\nbogus: 1\n")
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        load_grid(g)
    g.write_text("variants: [ntxent, ntxent]\n")
    with pytest.raises(ValueError, match="duplicate variant"):
        load_grid(g)


def test_rows_and_aggregation_match_hand_computation(tmp_path):
    fake = FakeTrainer()
    variants = objective_variants("ntxent,dcl,supcon")
    rows = compare(variants, [0, 1], TINY, tmp_path / "out", runs_dir=tmp_path / "runs", name="t", quiet=True,
                   backend=Backend(fake, fake_baselines))
    # seed-major training order, variant-major rows
    assert [(c[0], c[1]) for c in fake.calls] == [("ntxent", 0), ("dcl", 0), ("supcon", 0), ("ntxent", 1),
                                                   ("dcl", 1), ("supcon", 1)]
    runs = [r for r in rows if r["kind"] == "run"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("ntxent", 0), ("ntxent", 1), ("dcl", 0), ("dcl", 1),
                                                         ("supcon", 0), ("supcon", 1)]
    r0 = runs[0]
    assert r0["ok"] and r0["knn_acc"] == 0.5 and r0["steps"] == 7 and r0["load_avg"] == 3.5
    assert r0["epoch_s"] == pytest.approx((2.0 + 4.0) / 2)  # mean of the per-epoch seconds
    summ = {s["variant"]: s for s in aggregate(rows)}
    assert [s["variant"] for s in aggregate(rows)] == ["supcon", "dcl", "ntxent"]  # sorted by mean kNN
    # hand computation: ntxent kNN {0.5, 0.7}: mean 0.6, sample std sqrt(((-.1)^2 + .1^2) / 1)
    assert summ["ntxent"]["knn_acc_mean"] == pytest.approx(0.6)
    assert summ["ntxent"]["knn_acc_std"] == pytest.approx(math.sqrt(0.02))
    assert summ["dcl"]["effective_rank_mean"] == pytest.approx(7.0)
    assert summ["dcl"]["effective_rank_std"] == pytest.approx(math.sqrt((1 + 1) / 1))
    assert summ["supcon"]["epoch_s_mean"] == pytest.approx((3.0 + 4.0) / 2)  # seed 0: 3.0, seed 1: 4.0
    assert summ["supcon"]["knn_acc_values"] == [0.9, 0.92]
    # baselines: raw once, random init per seed
    base = {s["variant"]: s for s in aggregate(rows, kind="baseline")}
    assert base["raw pixels"]["n_ok"] == 1 and base["raw pixels"]["knn_acc_mean"] == 0.4
    assert base["random init"]["knn_acc_mean"] == pytest.approx(0.35)
    # files
    out = tmp_path / "out"
    assert read_csv(out / "leaderboard-t.csv") == [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]
    md = (out / "leaderboard-t.md").read_text()
    assert "| 3 | ntxent | `{\"objective\":\"ntxent\"}` | 2 | 0.6000 ± 0.1414 |" in md
    assert md.index("| supcon") < md.index("| dcl") < md.index("| ntxent")
    assert "| random init | 2 | 0.3500 ± 0.0707 |" in md
    assert len(list(out.glob("leaderboard-t-*.png"))) == 7


def test_resume_reuses_finished_runs_and_reruns_changed_config(tmp_path):
    fake = FakeTrainer()
    kw = dict(runs_dir=tmp_path / "runs", quiet=True, plots=False, backend=Backend(fake, fake_baselines))
    v = objective_variants("ntxent,dcl")
    compare(v, [0], TINY, tmp_path, **kw)
    assert len(fake.calls) == 2
    rows = compare(v, [0], TINY, tmp_path, **kw)
    assert len(fake.calls) == 2  # nothing retrained
    assert all(r["reused"] for r in rows if r["kind"] == "run")
    assert [r["knn_acc"] for r in rows if r["kind"] == "run"] == [0.5, 0.8]
    # an interrupted run (config written, no metrics.json) is resumed, not restarted
    (tmp_path / "runs" / "dcl-s0" / "metrics.json").unlink()
    compare(v, [0], TINY, tmp_path, **kw)
    assert fake.calls[-1] == ("dcl", 0, True, False)
    # a changed base config makes the old directories stale: retrained with overwrite
    compare(v, [0], merge(TINY, {"lr": 0.01}), tmp_path, **kw)
    assert fake.calls[-2:] == [("ntxent", 0, False, True), ("dcl", 0, False, True)]
    # rerun=True retrains everything
    compare(v, [0], merge(TINY, {"lr": 0.01}), tmp_path, rerun=True, **kw)
    assert len(fake.calls) == 7
    assert run_state(run_config(merge(TINY, {"lr": 0.01}), v[0], 0, tmp_path / "runs")) == "done"


def test_failing_and_rejected_variants_are_rows(tmp_path):
    fake = FakeTrainer(fail={"dcl"})
    variants = [*objective_variants("ntxent,dcl"), Variant("ntxent-mochi", {"candidate": "mochi"})]
    rows = compare(variants, [0, 1], TINY, tmp_path, runs_dir=tmp_path / "runs", quiet=True, plots=False,
                   backend=Backend(fake, fake_baselines))
    by = {(r["variant"], r["seed"]): r for r in rows if r["kind"] == "run"}
    assert by[("ntxent", 1)]["ok"] and by[("ntxent", 1)]["knn_acc"] == 0.7
    assert not by[("dcl", 0)]["ok"] and by[("dcl", 0)]["error"] == "RuntimeError: dcl exploded"
    assert not by[("ntxent-mochi", 0)]["ok"]
    assert "config rejected" in by[("ntxent-mochi", 0)]["error"] and "'candidate'" in by[("ntxent-mochi", 0)]["error"]
    assert ("ntxent-mochi" not in {c[0] for c in fake.calls}) and len(fake.calls) == 4
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Runs that did not train" in md and "RuntimeError: dcl exploded" in md
    assert "| – | dcl |" in md  # unranked, listed after the ranked variants
    # failed runs are retried on the next call (not cached)
    compare(variants, [0], TINY, tmp_path, runs_dir=tmp_path / "runs", quiet=True, plots=False,
            backend=Backend(fake, None))
    assert fake.calls[-1] == ("dcl", 0, True, False)  # its directory holds the same config: resumed


def test_unknown_names_are_input_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        compare(objective_variants("ntxent,nope"), [0], TINY, tmp_path, quiet=True)
    with pytest.raises(ValueError, match="duplicate variant"):
        compare(objective_variants("ntxent,ntxent"), [0], TINY, tmp_path, quiet=True)
    with pytest.raises(ValueError, match="invalid configuration"):
        compare(objective_variants("ntxent"), [0], {"epochs": 0}, tmp_path, quiet=True)


def test_real_digits_grid_and_reuse(tmp_path):
    """Real training loop on sklearn digits (2 steps): a working and a failing objective, baselines once."""
    rows = compare(objective_variants("ntxent,amcl"), [0], TINY, tmp_path, runs_dir=tmp_path / "runs",
                   name="digits", quiet=True, plots=False)
    by = {r["variant"]: r for r in rows}
    nt = by["ntxent"]
    assert nt["ok"] and nt["steps"] == 2
    saved = json.loads((tmp_path / "runs" / "ntxent-s0" / "metrics.json").read_text())
    assert nt["knn_acc"] == saved["knn_acc"] and 0 <= nt["knn_acc"] <= 1 and nt["epoch_s"] > 0
    assert not by["amcl"]["ok"] and "dim = 64" in by["amcl"]["error"]  # AMCL's default dim vs proj_dim 16
    assert by["raw pixels"]["kind"] == "baseline" and 0.5 < by["raw pixels"]["knn_acc"] <= 1
    assert by["random init"]["seed"] == 0
    again = compare(objective_variants("ntxent"), [0], TINY, tmp_path, runs_dir=tmp_path / "runs", name="digits",
                    quiet=True, plots=False)
    assert again[0]["reused"] and again[0]["knn_acc"] == nt["knn_acc"]
    assert again[1]["knn_acc"] == by["raw pixels"]["knn_acc"]  # baselines cached in runs/baselines.json


def test_vector_npz_grid_with_baselines(tmp_path):
    """``pairlab compare`` on user vectors (``npz:``): the MLP encoder is built for runs and random-init baselines."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    x = rng.normal(size=(120, 6)).astype(np.float32)
    x[:, 0] += np.where(y == 1, 4.0, -4.0)  # planted: a linear probe on the raw vectors separates the classes
    np.savez(tmp_path / "v.npz", x=x, y=y)
    base = {**TINY, "dataset": f"npz:{tmp_path}/v.npz", "batch_size": 32,
            "eval": {**TINY["eval"], "baselines": True}}
    rows = compare(objective_variants("ntxent"), [0], base, tmp_path, runs_dir=tmp_path / "runs", name="vec",
                   quiet=True, plots=False)
    by = {r["variant"]: r for r in rows}
    assert by["ntxent"]["ok"] and by["ntxent"]["steps"] == 2, by["ntxent"].get("error")
    assert by["raw pixels"]["linear_acc"] > 0.9  # the planted direction
    assert by["random init"]["seed"] == 0 and 0 <= by["random init"]["knn_acc"] <= 1
