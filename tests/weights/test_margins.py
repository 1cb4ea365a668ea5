"""Margins as weights == explicit margins in the logits (float64 loops); hinge and MCLRec regulariser values."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives import InfoNCE, NTXent, SupCon
from pairlab.weights.margins import (
    CalibratedMarginWeights,
    PositiveMarginWeights,
    calibrated_margin_hinge,
    margin_regularizer,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("aggregation", ["mean_log", "log_mean"])
def test_positive_margin_weights_equal_margin_on_positive_logits(aggregation: str) -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 2, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    tau, m = 0.2, -0.5
    loss = SupCon(temperature=tau, aggregation=aggregation)(z, labels, weights=PositiveMarginWeights(m, tau))
    flat = _unit(z.reshape(12, 4))
    lab = labels.repeat_interleave(2)
    ref = 0.0
    for r in range(12):
        pos = [(flat[r] @ flat[j] - m) / tau for j in range(12) if j != r and lab[j] == lab[r]]
        neg = [flat[r] @ flat[j] / tau for j in range(12) if lab[j] != lab[r]]
        lz = torch.logsumexp(torch.stack(pos + neg), 0)
        if aggregation == "mean_log":
            ref = ref + sum(lz - p for p in pos) / len(pos)
        else:
            ref = ref + lz - torch.logsumexp(torch.stack(pos), 0) + math.log(len(pos))
    ref = ref / 12
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    g1, = torch.autograd.grad(loss, z)
    g2, = torch.autograd.grad(ref, z)
    assert torch.allclose(g1, g2, atol=1e-12)


def test_interclr_margin_raises_positive_logit_by_half_over_tau() -> None:
    torch.manual_seed(1)
    q, k, neg = (torch.randn(n, 5, dtype=torch.float64) for n in (4, 4, 7))
    tau = 0.2
    w = PositiveMarginWeights(-0.5, tau)
    qn, kn, nn_ = _unit(q), _unit(k), _unit(neg)
    s = torch.cat([(qn * kn).sum(1, keepdim=True), qn @ nn_.T], 1) / tau
    t = torch.zeros_like(s, dtype=torch.bool)
    t[:, 0] = True
    from pairlab.nce import nce
    val = nce(s, t, weights=w(s, t, torch.ones_like(t))).loss
    shifted = s.clone()
    shifted[:, 0] += 0.5 / tau
    ce = torch.nn.functional.cross_entropy(shifted, torch.zeros(4, dtype=torch.long))
    assert val.item() == pytest.approx(ce.item())
    assert InfoNCE(temperature=tau)(q, k, neg).item() > val.item()


def test_calibrated_margin_weights_equal_per_negative_margins() -> None:
    torch.manual_seed(2)
    z = torch.randn(4, 2, 3, dtype=torch.float64)
    c = torch.rand(8, dtype=torch.float64)
    tau, m0, m1 = 0.5, 0.05, 0.3
    w = CalibratedMarginWeights(m0, m1, tau, calibration=c)
    loss = NTXent(temperature=tau)(z, weights=w)
    flat = _unit(z.reshape(8, 3))
    ref = 0.0
    for r in range(8):
        p = r ^ 1
        logits = [float(flat[r] @ flat[p]) / tau] + [(float(flat[r] @ flat[j]) + m0 + m1 * float(c[j])) / tau
                                                      for j in range(8) if j not in (r, p)]
        ref += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(ref / 8, rel=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        w.set_calibration(torch.tensor([1.5]))
    w.set_calibration(torch.rand(3))
    with pytest.raises(ValueError, match="calibration must have shape"):
        NTXent(temperature=tau)(z, weights=w)


def test_hinge_zero_gradient_beyond_margin_and_larger_margin_for_higher_calibration() -> None:
    pos = torch.tensor([0.9, 0.5], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([[0.1, 0.8], [0.4, 0.45]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    h = calibrated_margin_hinge(pos, neg, c, m0=0.1, m1=0.2)
    ref = sum(max(0.0, 0.1 + 0.2 * float(c[i, j]) - (float(pos[i].detach()) - float(neg[i, j].detach())))
              for i in range(2) for j in range(2)) / 4
    assert h.item() == pytest.approx(ref, rel=1e-12) and ref == pytest.approx(0.45 / 4)
    h.backward()
    assert neg.grad[0, 0] == 0  # separated by more than its margin: no gradient
    assert neg.grad[0, 1] > 0 and neg.grad[1, 0] > 0 and neg.grad[1, 1] > 0
    hi = calibrated_margin_hinge(pos.detach(), neg.detach(), torch.ones(2, 2, dtype=torch.float64))
    lo = calibrated_margin_hinge(pos.detach(), neg.detach(), torch.zeros(2, 2, dtype=torch.float64))
    assert hi > lo
    with pytest.raises(ValueError, match="valid selects no pair"):
        calibrated_margin_hinge(pos, neg, valid=torch.zeros(2, 2, dtype=torch.bool))


def test_mclrec_regularizer_worked_values() -> None:
    assert margin_regularizer(torch.tensor([5.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(8.5)
    assert margin_regularizer(torch.tensor([1.0]), torch.tensor([0.9, 1.0])).item() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="non-empty"):
        margin_regularizer(torch.tensor([]), torch.tensor([1.0]))


def test_registry_defaults_and_bad_arguments() -> None:
    assert registry.build("weights", "positive-margin").margin == -0.5
    assert isinstance(registry.build("weights", "calibrated-margin"), CalibratedMarginWeights)
    with pytest.raises(ValueError, match="temperature"):
        PositiveMarginWeights(0.1, temperature=0)
    with pytest.raises(ValueError, match="margin"):
        PositiveMarginWeights(float("nan"))
