from __future__ import annotations

import math

import pytest
import torch

from pairlab.scores import Temperature, normalize, prepare, similarity_matrix


def test_cosine_matrix_matches_loop():
    a, c = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    s = similarity_matrix(a, c)
    for i in range(4):
        for j in range(5):
            ref = float(a[i] @ c[j]) / (float(a[i].norm()) * float(c[j].norm()))
            assert s[i, j].item() == pytest.approx(ref, rel=1e-12)
    assert torch.allclose(similarity_matrix(a, c, "dot"), a @ c.T)


def test_zero_row_stays_finite_in_half():
    x = torch.zeros(2, 4, dtype=torch.float16)
    x[1, 0] = 1
    n = normalize(x)
    assert n.dtype == torch.float32 and torch.isfinite(n).all()
    assert n[0].abs().sum() == 0 and n[1, 0] == 1


def test_scale_invariance_of_cosine():
    a = torch.randn(3, 5)
    assert torch.allclose(prepare(a, "cosine"), prepare(a * 1e4, "cosine"), atol=1e-6)


def test_temperature_fixed_and_learnable():
    t = Temperature(0.25)
    assert t.scale().item() == pytest.approx(4.0)
    assert not any(True for _ in t.parameters())
    lt = Temperature(0.07, learnable=True, max_scale=50)
    assert lt.log_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    with torch.no_grad():
        lt.log_scale.fill_(100.0)
    assert lt.scale().item() == pytest.approx(50.0)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        Temperature(bad)


def test_unknown_similarity():
    with pytest.raises(ValueError, match="similarity must be one of"):
        prepare(torch.randn(2, 2), "l2")
