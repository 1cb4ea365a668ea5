"""The one equation (dense path) against brute-force per-pair loops in float64."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab.nce import nce


def brute_nce(s, p, v, w, aggregation, decoupled):
    """Per-anchor loop straight from DESIGN §1 (python floats, no vectorisation)."""
    n, m = s.shape
    losses, used = [], []
    for i in range(n):
        pos = [(j, float(p[i, j])) for j in range(m) if v[i, j] and p[i, j] > 0]
        part = [j for j in range(m) if v[i, j] and w[i, j] > 0 and not (decoupled and p[i, j] > 0)]
        if not pos or not part:
            used.append(False)
            losses.append(0.0)
            continue
        used.append(True)
        mx = max(float(s[i, j]) for j in part)
        log_z = mx + math.log(sum(float(w[i, j]) * math.exp(float(s[i, j]) - mx) for j in part))
        total = sum(q for _, q in pos)
        if aggregation == "mean_log":
            pos_term = sum(q * float(s[i, j]) for j, q in pos) / total
        else:
            pos_term = math.log(sum(q * math.exp(float(s[i, j])) for j, q in pos) / total)
        losses.append(log_z - pos_term)
    k = sum(used)
    return sum(losses) / k, losses, used


def _case(seed=0, n=7, m=9):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, m, generator=g, dtype=torch.float64) * 3
    p = (torch.rand(n, m, generator=g) < 0.3).double() * torch.rand(n, m, generator=g, dtype=torch.float64)
    v = torch.rand(n, m, generator=g) < 0.85
    w = torch.rand(n, m, generator=g, dtype=torch.float64) * 2
    w[0, :3] = 0.0
    p[1] = 0.0  # anchor without positive
    return s, p, v, w


@pytest.mark.parametrize("aggregation", ["mean_log", "log_mean"])
@pytest.mark.parametrize("decoupled", [False, True])
def test_matches_brute_force(aggregation, decoupled):
    s, p, v, w = _case()
    res = nce(s, p, v, w, aggregation=aggregation, decoupled=decoupled)
    ref, per, used = brute_nce(s, p, v, w, aggregation, decoupled)
    assert res.loss.item() == pytest.approx(ref, rel=1e-12)
    assert res.used.tolist() == used
    assert torch.allclose(res.per_anchor, torch.tensor(per, dtype=torch.float64), atol=1e-12)
    assert res.stats["anchors_without_positive"] >= 1


@pytest.mark.parametrize("aggregation", ["mean_log", "log_mean"])
def test_gradcheck(aggregation):
    s, p, v, w = _case(1, 5, 6)
    s.requires_grad_(True)
    w.requires_grad_(False)
    assert torch.autograd.gradcheck(lambda x: nce(x, p, v, w + 0.1, aggregation=aggregation).loss, (s,))


def test_gradient_matches_brute_force_finite_difference():
    s, p, v, w = _case(2, 4, 5)
    s.requires_grad_(True)
    nce(s, p, v, w).loss.backward()
    eps = 1e-6
    for i in range(4):
        for j in range(5):
            sp, sm = s.detach().clone(), s.detach().clone()
            sp[i, j] += eps
            sm[i, j] -= eps
            fd = (brute_nce(sp, p, v, w, "mean_log", False)[0] - brute_nce(sm, p, v, w, "mean_log", False)[0]) / (
                2 * eps
            )
            assert s.grad[i, j].item() == pytest.approx(fd, abs=1e-7)


def test_onehot_equals_cross_entropy():
    s = torch.randn(6, 6, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.bool)
    ref = torch.nn.functional.cross_entropy(s, torch.arange(6))
    assert nce(s, eye).loss.item() == pytest.approx(ref.item(), rel=1e-12)


def test_no_positive_raises_or_explicit_zero():
    s = torch.randn(4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="no anchor"):
        nce(s, torch.zeros(4, 4))
    res = nce(s, torch.zeros(4, 4), on_no_positive="zero")
    assert res.loss.item() == 0.0
    res.loss.backward()  # connected to the graph, zero gradient
    assert torch.equal(s.grad, torch.zeros_like(s))
    assert res.stats["anchors_used"] == 0


def test_excluded_anchor_gets_no_gradient_and_no_nan():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.zeros(3, 4)
    p[0, 1] = 1
    v = torch.ones(3, 4, dtype=torch.bool)
    v[2] = False  # anchor 2 has nothing valid at all
    res = nce(s, p, v)
    res.loss.backward()
    assert torch.isfinite(s.grad).all()
    assert torch.equal(s.grad[1:], torch.zeros_like(s.grad[1:]))


def test_large_scores_are_stable():
    s = torch.tensor([[1000.0, 0.0, -1000.0], [500.0, 501.0, 499.0]], dtype=torch.float32)
    p = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    res = nce(s, p)
    assert torch.isfinite(res.loss)
    assert res.per_anchor[0].item() == pytest.approx(1000.0, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(targets=torch.zeros(3, 3)), "targets must have shape"),
        (dict(valid=torch.ones(2, 2, dtype=torch.bool)), "valid must have shape"),
        (dict(weights=-torch.ones(2, 3)), "weights must be >= 0"),
        (dict(aggregation="mean"), "aggregation must be one of"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(scores=torch.randn(2, 3), targets=torch.eye(2, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nce(**args)
