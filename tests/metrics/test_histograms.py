import pytest
import torch

from pairlab import registry
from pairlab.metrics.histograms import pos_neg_scores, score_histograms


def test_pos_neg_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    pos, neg = pos_neg_scores(a, b, max_negatives=None)
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    assert pos.tolist() == pytest.approx([cos(a[i], b[i]) for i in range(5)], abs=1e-6)
    ref = sorted(cos(a[i], b[j]) for i in range(5) for j in range(5) if i != j)
    assert sorted(neg.tolist()) == pytest.approx(ref, abs=1e-6)
    _, sub = pos_neg_scores(a, b, max_negatives=7)
    assert sub.numel() == 7


def test_histogram_summary():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    h = score_histograms(a, a, bins=4)
    assert h["pos_mean"] == pytest.approx(1.0) and h["neg_mean"] == pytest.approx(0.0) and h["gap"] == pytest.approx(1)
    assert sum(h["pos_hist"]) == 2 and sum(h["neg_hist"]) == 2 and h["neg_hist"][2] == 2 and h["pos_hist"][3] == 2
    assert "pos_neg_hist" in registry.available("metrics")
    with pytest.raises(ValueError, match="at least 2"):
        pos_neg_scores(torch.randn(1, 2), torch.randn(1, 2))
