"""Wang & Liu (2021) losses against per-anchor loops and the paper's limits (methods-representation §8)."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives import InfoNCE
from pairlab.objectives.hardness_aware import (
    HardContrastiveLoss,
    SimpleLoss,
    penalty_entropy,
    relative_penalty,
)


def _unit(z):
    return z / z.norm(dim=-1, keepdim=True)


def _cands(b, extra):
    return _unit(b) if extra is None else torch.cat([_unit(b), _unit(extra)])


def ref_hard(a, b, tau, k=None, extra=None):
    f, g = _unit(a), _cands(b, extra)
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        negs = sorted((float((f[i] @ g[j]).detach()), j) for j in range(g.shape[0]) if j != i)
        kept = [j for _, j in negs[::-1][: (len(negs) if k is None else k)]]
        terms = [f[i] @ g[i] / tau] + [f[i] @ g[j] / tau for j in kept]
        total = total - (terms[0] - torch.logsumexp(torch.stack(terms), 0))
    return total / n


def ref_simple(a, b, lam, k=None, extra=None):
    f, g = _unit(a), _cands(b, extra)
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        negs = sorted((float((f[i] @ g[j]).detach()), j) for j in range(g.shape[0]) if j != i)
        kept = [j for _, j in negs[::-1][: (len(negs) if k is None else k)]]
        total = total + (-(f[i] @ g[i]) + lam * sum(f[i] @ g[j] for j in kept))
    return total / n


def _check(fn, ref, *tensors):
    xs = [t.clone().requires_grad_(True) for t in tensors]
    ys = [t.clone().requires_grad_(True) for t in tensors]
    v1, v2 = fn(*xs), ref(*ys)
    torch.testing.assert_close(v1, v2)
    for g1, g2 in zip(torch.autograd.grad(v1, xs), torch.autograd.grad(v2, ys), strict=True):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("with_extra", [False, True])
def test_hard_contrastive_matches_loop(k, with_extra):
    torch.manual_seed(0)
    a, b = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    extra = torch.randn(4, 5, dtype=torch.float64) if with_extra else None
    obj = HardContrastiveLoss(0.3, hard_k=k)
    _check(lambda x, y: obj(x, y, extra=extra), lambda x, y: ref_hard(x, y, 0.3, k, extra), a, b)


@pytest.mark.parametrize("k", [None, 2])
def test_simple_loss_matches_loop(k):
    torch.manual_seed(1)
    a, b = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    extra = torch.randn(3, 5, dtype=torch.float64)
    obj = SimpleLoss(lam=0.25, hard_k=k)
    _check(lambda x, y: obj(x, y, extra=extra), lambda x, y: ref_simple(x, y, 0.25, k, extra), a, b)


def test_hard_with_all_negatives_equals_plain_loss_and_alpha_maps_to_k():
    torch.manual_seed(2)
    a, b = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    plain = InfoNCE(0.2)(a, b)
    torch.testing.assert_close(HardContrastiveLoss(0.2)(a, b), plain)
    torch.testing.assert_close(HardContrastiveLoss(0.2, hard_k=9)(a, b), plain)
    torch.testing.assert_close(HardContrastiveLoss(0.2, hard_alpha=1.0)(a, b), plain)
    # alpha = 0.3 of 9 negatives -> ceil(2.7) = 3
    torch.testing.assert_close(HardContrastiveLoss(0.2, hard_alpha=0.3)(a, b), HardContrastiveLoss(0.2, hard_k=3)(a, b))
    assert float(HardContrastiveLoss(0.2, hard_k=3)(a, b)) < float(plain)


def test_small_temperature_limit_is_triplet_with_zero_margin():
    torch.manual_seed(3)
    a, b = torch.randn(12, 6, dtype=torch.float64), torch.randn(12, 6, dtype=torch.float64)
    tau = 1e-3
    s = _unit(a) @ _unit(b).T
    smax = s.masked_fill(torch.eye(12, dtype=torch.bool), -math.inf).max(1).values
    expected = (smax - s.diagonal()).clamp_min(0).mean()
    torch.testing.assert_close(tau * HardContrastiveLoss(tau)(a, b), expected, atol=tau * math.log(12), rtol=0)


def test_relative_penalty_and_entropy_grow_with_temperature():
    torch.manual_seed(4)
    a, b = torch.randn(32, 8), torch.randn(32, 8)
    r = relative_penalty(a, b, 0.2)
    torch.testing.assert_close(r.sum(1), torch.ones(32))
    assert torch.all(r.diagonal() == 0)
    # r equals |dL/ds_ij| / |dL/ds_ii| from autograd (paper's definition)
    s = (_unit(a) @ _unit(b).T).double().requires_grad_(True)
    loss = -(torch.log_softmax(s / 0.2, 1).diagonal()).sum()
    g = torch.autograd.grad(loss, s)[0]
    ratio = g / (-g.diagonal())[:, None]
    torch.testing.assert_close(ratio.masked_fill(torch.eye(32, dtype=torch.bool), 0).float(), r, atol=1e-5, rtol=1e-4)
    ents = [float(penalty_entropy(a, b, t).mean()) for t in (0.05, 0.1, 0.2, 0.5, 1.0)]
    assert all(x < y for x, y in zip(ents, ents[1:], strict=False))
    assert ents[-1] <= math.log(31) + 1e-6


def test_bad_inputs_and_registry():
    with pytest.raises(ValueError, match="not both"):
        HardContrastiveLoss(hard_k=3, hard_alpha=0.1)
    with pytest.raises(ValueError, match="hard_k"):
        HardContrastiveLoss(hard_k=0)
    with pytest.raises(ValueError, match="hard_alpha"):
        SimpleLoss(hard_alpha=1.5)
    with pytest.raises(ValueError, match="batch sizes"):
        HardContrastiveLoss()(torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="at least one negative"):
        HardContrastiveLoss()(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        SimpleLoss()(torch.tensor([[math.nan, 1.0]]), torch.ones(1, 2), extra=torch.ones(2, 2))
    assert registry.get("objectives", "hard-contrastive").meta["input"] == "pair"
    assert registry.build("objectives", "hard-simple", lam=0.5, hard_k=4).hard_k == 4


@pytest.mark.parametrize(
    ("name", "views", "args"), [("hard-contrastive", 2, {"hard_k": 8}), ("hard-simple", 2, {"lam": 0.1})]
)
def test_reachable_from_training_config(name, views, args):
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    cfg = make_config({"objective": name, "views": views, "objective_args": args, "temperature": 0.3})
    obj, kind = build_objective(cfg)
    z = torch.randn(16, views, cfg.model.proj_dim, requires_grad=True)
    loss = call_objective(obj, kind, z, torch.randint(0, 4, (16,)))
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()
