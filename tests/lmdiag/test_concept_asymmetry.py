import math

import pytest
import torch

from pairlab.lmdiag.concept_asymmetry import CAV, concept_asymmetry, fit_cav


def concept_cav(direction, g, n=800, d=16, scale=3.0):
    x_pos = torch.randn(n, d, generator=g, dtype=torch.float64) + scale * direction
    x_neg = torch.randn(n, d, generator=g, dtype=torch.float64)
    return fit_cav(x_pos, x_neg)


def test_cav_recovers_planted_direction():
    g = torch.Generator().manual_seed(0)
    d = torch.zeros(16, dtype=torch.float64)
    d[3] = 1.0
    cav = concept_cav(d, g)
    assert cav.accuracy > 0.8
    assert float(cav.vector @ d) > 0.9 and cav.vector.norm().item() == pytest.approx(1.0)


def test_asymmetry_zero_when_balanced_and_monotone_in_imbalance():
    """Spec §9(d): d_t = a d_r1 + b d_r2 + c d_perp; ≈0 when a = b, grows with |a - b|."""
    g = torch.Generator().manual_seed(1)
    e = torch.eye(16, dtype=torch.float64)
    r1, r2 = concept_cav(e[0], g), concept_cav(e[1], g)
    scores = []
    for a in [0.5, 0.6, 0.8, 1.0]:
        b = 1.0 - a
        t = concept_cav((a * e[0] + b * e[1] + 0.5 * e[2]) / math.sqrt(a * a + b * b + 0.25), g)
        scores.append(concept_asymmetry(t, r1, r2))
    assert abs(scores[0]["asymmetry"]) < 0.1
    mags = [s["abs_asymmetry"] for s in scores]
    assert all(y > x for x, y in zip(mags, mags[1:], strict=False))
    assert abs(scores[0]["cos_r1_r2"]) < 0.2


def test_closed_form_on_given_vectors():
    t = torch.tensor([1.0, 1.0, 0.0])
    out = concept_asymmetry(t, torch.tensor([1.0, 0.0, 0.0]), CAV(torch.tensor([0.0, 0.0, 1.0]), 1.0))
    assert out["cos_t_r1"] == pytest.approx(1 / math.sqrt(2))
    assert out["cos_t_r2"] == pytest.approx(0.0)
    assert out["asymmetry"] == pytest.approx(1 / math.sqrt(2))


def test_errors():
    with pytest.raises(ValueError, match="embedding dims"):
        fit_cav(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="embedding dims"):
        concept_asymmetry(torch.randn(3), torch.randn(3), torch.randn(4))
