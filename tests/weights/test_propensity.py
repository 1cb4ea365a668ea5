"""Inverse propensity: histogram propensities vs counting loops; the sampler decorrelates a covariate."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.objectives import NTXent
from pairlab.weights.propensity import (
    InversePropensityPairSampler,
    InversePropensityWeights,
    inverse_propensity_weights,
    propensity,
)


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    rx = x.argsort().argsort().double()
    ry = y.double() + 1e-9 * torch.arange(y.numel())  # ties broken deterministically
    ry = ry.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def test_propensity_matches_counting() -> None:
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 0.95, 0.05, 0.55])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    e = propensity(x, y, bins=2)
    bins = [0 if v < 0.5 else 1 for v in x.tolist()]
    for p in range(8):
        same_lab = [q for q in range(8) if y[q] == y[p]]
        assert float(e[p]) == pytest.approx(sum(bins[q] == bins[p] for q in same_lab) / len(same_lab))
    w = inverse_propensity_weights(x, y, bins=2, clip=0.5)
    assert torch.allclose(w, 1 / e.clamp_min(0.5))


def test_sampler_removes_covariate_label_correlation_keeps_semantic() -> None:
    g = torch.Generator().manual_seed(0)
    n = 4000
    sem = torch.rand(n, generator=g)
    y = (sem > 0.5).long()
    cov = y.double() + 0.6 * torch.randn(n, generator=g, dtype=torch.float64)  # e.g. a length ratio
    before = _spearman(cov, y)
    idx = torch.tensor(list(InversePropensityPairSampler(cov, y, num_samples=20000, bins=20, seed=1)))
    after = _spearman(cov[idx], y[idx])
    assert before > 0.5 and abs(after) < 0.1
    # without common-support trimming the non-overlapping tails keep part of the correlation
    idx1 = torch.tensor(list(InversePropensityPairSampler(cov, y, num_samples=20000, bins=20, min_count=0, seed=1)))
    assert _spearman(cov[idx1], y[idx1]) > 2 * abs(after)
    assert abs(_spearman(sem[idx], y[idx]) - _spearman(sem, y)) < 0.05  # the semantic score still predicts y


def test_sampler_is_seeded_and_needs_data() -> None:
    cov, y = torch.rand(50), torch.arange(50) % 2
    a = list(InversePropensityPairSampler(cov, y, bins=2, min_count=1, seed=3))
    b = list(InversePropensityPairSampler(cov, y, bins=2, min_count=1, seed=3))
    assert a == b and len(a) == 50
    s = registry.build("weights", "ipw-sampler", bins=2, min_count=1)
    with pytest.raises(ValueError, match="bind"):
        list(s)
    assert len(list(s.bind(cov, y))) == 50
    with pytest.raises(ValueError, match="common support"):
        InversePropensityPairSampler(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), bins=2)


def test_partition_weights_flatten_negative_covariate_histogram() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 2, 4, dtype=torch.float64)
    cov = torch.rand(16, 16, dtype=torch.float64) ** 3
    w = InversePropensityWeights(bins=4, clip=1e-3, covariate=cov)
    captured = []
    NTXent()(z, weights=lambda s, t, v: captured.append(w(s, t, v)) or captured[-1])
    wm = captured[0]
    sample = torch.arange(8).repeat_interleave(2)
    neg = sample[:, None] != sample[None, :]
    assert float(wm[neg].mean()) == pytest.approx(1.0)
    assert bool((wm[~neg] == 1).all())
    b = ((cov[neg] - cov[neg].min()) / ((cov[neg].max() - cov[neg].min()) / 4)).floor().clamp(0, 3).long()
    mass = torch.zeros(4, dtype=torch.float64).index_add_(0, b, wm[neg])
    assert torch.allclose(mass, mass.mean().expand(4), rtol=1e-9)  # equal weighted mass per bin


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="clip"):
        InversePropensityWeights(clip=0)
    with pytest.raises(ValueError, match="set_covariate"):
        NTXent()(torch.randn(2, 2, 3), weights=InversePropensityWeights())
    with pytest.raises(ValueError, match="NaN"):
        propensity(torch.tensor([float("nan")]), torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        propensity(torch.rand(3), torch.tensor([0, 1]))


def test_empty_covariate_is_a_named_value_error() -> None:
    """Issue #9: an empty covariate used to reach ``x.min()`` and raise a raw RuntimeError."""
    empty_x, empty_y = torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    for call in (lambda: InversePropensityPairSampler(empty_x, empty_y, bins=2, min_count=1),
                 lambda: registry.build("weights", "ipw-sampler").bind(empty_x, empty_y),
                 lambda: propensity(empty_x, empty_y),
                 lambda: inverse_propensity_weights(empty_x, empty_y)):
        with pytest.raises(ValueError, match=r"covariate and labels must hold at least one pair"):
            call()
