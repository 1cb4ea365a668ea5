"""ComposeWeights (product, None skipped, prepare forwarded) and per-sample losses composed with DBPM."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab.candidates.base import Candidates
from pairlab.objectives import NTXent
from pairlab.weights.base import ComposeWeights, per_sample_views_loss
from pairlab.weights.dbpm import BadPairMemory
from pairlab.weights.hardness import HardnessWeights
from pairlab.weights.margins import PositiveMarginWeights


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_compose_is_the_product_and_skips_none() -> None:
    torch.manual_seed(0)
    s = torch.randn(4, 6)
    t = torch.zeros(4, 6, dtype=torch.bool)
    t[:, 0] = True
    v = torch.ones(4, 6, dtype=torch.bool)
    dense = torch.rand(4, 6)
    h, m = HardnessWeights(beta=0.7), PositiveMarginWeights(margin=0.1, temperature=0.5)
    w = ComposeWeights(h, None, dense, m)(s, t, v)
    assert torch.allclose(w, h(s, t, v) * dense * m(s, t, v))
    with pytest.raises(ValueError, match=r"components\[0\]"):
        ComposeWeights(torch.ones(3, 3))(s, t, v)
    with pytest.raises(TypeError, match="components"):
        ComposeWeights("hard")


def test_prepare_is_forwarded() -> None:
    seen = []

    class W(torch.nn.Module):
        def prepare(self, z, extra=None, labels=None):
            seen.append(z.shape)

        def forward(self, s, t, v):
            return torch.ones_like(s)

    ComposeWeights(W(), HardnessWeights()).prepare(torch.zeros(2, 2, 3))
    assert seen == [torch.Size([2, 2, 3])]


def test_mask_weights_compose_with_a_component_in_objective_kwargs() -> None:
    torch.manual_seed(1)
    z = torch.randn(3, 2, 4, dtype=torch.float64)
    extra = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 0]] * 3 + [[0, 1]] * 3, dtype=torch.bool)
    c = Candidates(extra=extra, mask=mask)
    h = HardnessWeights(beta=0.5)
    tau = 0.3
    loss = NTXent(temperature=tau)(z, **c.objective_kwargs(h))
    flat, e = _unit(z.reshape(6, 4)), _unit(extra)
    ref = 0.0
    for r in range(6):
        cols = [(float(flat[r] @ flat[j]) / tau, j // 2 == r // 2) for j in range(6) if j != r]
        cols += [(float(flat[r] @ e[m]) / tau, False) for m in range(2) if mask[r, m]]
        negs = [s for s, p in cols if not p]
        mean_imp = sum(math.exp(0.5 * s) for s in negs) / len(negs)
        z_ = sum(math.exp(s) * (1 if p else math.exp(0.5 * s) / mean_imp) for s, p in cols)
        ref += -[s for s, p in cols if p][0] + math.log(z_)
    assert loss.item() == pytest.approx(ref / 6, rel=1e-10)


def test_dbpm_composes_with_partition_weights() -> None:
    torch.manual_seed(2)
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    w = ComposeWeights(HardnessWeights(beta=1.0), PositiveMarginWeights(-0.5, 0.2))
    per = per_sample_views_loss(z, weights=w, temperature=0.2)
    mem = BadPairMemory(num_samples=5, max_epochs=3, warm_epochs=1, beta_np=0.5, beta_fp=0.5)
    idx = torch.arange(5)
    mem.record(idx, torch.tensor([0.1, 1.0, 1.0, 1.0, 3.0], dtype=torch.float64))
    mem.set_epoch(1)
    a = mem(idx, per)
    assert bool((a[[0, 4]] < 1).all()) and bool((a[1:4] == 1).all())
    loss = (a * per).mean()
    # brute force: per-sample = mean over its two views of the weighted NT-Xent term
    flat = _unit(z.reshape(10, 3))
    ref = []
    for i in range(5):
        terms = []
        for r in (2 * i, 2 * i + 1):
            cols = [(float(flat[r] @ flat[j]) / 0.2, j // 2 == i) for j in range(10) if j != r]
            negs = [s for s, p in cols if not p]
            mi = sum(math.exp(s) for s in negs) / len(negs)
            zz = sum(math.exp(s) * (1 if p else math.exp(s) / mi * math.exp(-0.5 / 0.2)) for s, p in cols)
            terms.append(-[s for s, p in cols if p][0] + math.log(zz))
        ref.append(sum(terms) / 2)
    assert torch.allclose(per, torch.tensor(ref, dtype=torch.float64), rtol=1e-10)
    assert loss.item() == pytest.approx(float((a * torch.tensor(ref, dtype=torch.float64)).mean()), rel=1e-10)
