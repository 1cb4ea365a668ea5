import math

import pytest
import torch

from pairlab.decoding.fusion import LogitFusion, fuse_logits, js_divergence, plausibility_mask


def jsd_ref(zp, zq):
    """float64 brute force over the vocabulary."""
    p = torch.softmax(zp.double(), -1)
    q = torch.softmax(zq.double(), -1)
    out = []
    for r in range(p.shape[0]):
        tot = 0.0
        for v in range(p.shape[1]):
            m = 0.5 * (p[r, v] + q[r, v])
            if p[r, v] > 0:
                tot += 0.5 * p[r, v] * math.log(p[r, v] / m)
            if q[r, v] > 0:
                tot += 0.5 * q[r, v] * math.log(q[r, v] / m)
        out.append(float(tot))
    return torch.tensor(out, dtype=torch.float64)


def test_jsd_matches_bruteforce_and_bounds():
    g = torch.Generator().manual_seed(0)
    zp, zq = torch.randn(5, 50, generator=g) * 3, torch.randn(5, 50, generator=g) * 3
    assert torch.allclose(js_divergence(zp, zq).double(), jsd_ref(zp, zq), atol=1e-6)
    assert torch.all(js_divergence(zp, zp) <= 1e-7)
    # disjoint supports -> ln 2
    a = torch.tensor([[0.0, -math.inf]])
    b = torch.tensor([[-math.inf, 0.0]])
    assert js_divergence(a, b).item() == pytest.approx(math.log(2), abs=1e-6)


def test_adacad_behaviour_spec_values():
    """Spec §17(d): alpha ~0 for identical logits, monotone in the conflict, <= ln 2, argmax = context's token."""
    g = torch.Generator().manual_seed(1)
    z_nc = torch.randn(1, 50, generator=g)
    alphas = []
    for push in [0.0, 0.5, 2.0, 5.0, 10.0]:
        z_c = z_nc.clone()
        z_c[0, 7] += push
        r = fuse_logits(z_c, z_nc, "jsd")
        alphas.append(r.alpha.item())
        if push == 0:
            assert r.alpha.item() <= 1e-6
            assert torch.equal(r.logits, z_c)  # no over-correction when there is no conflict
        if push == 10.0:
            assert r.logits.argmax().item() == 7
    assert all(b > a for a, b in zip(alphas, alphas[1:], strict=False))
    assert alphas[-1] <= math.log(2)
    assert alphas[-1] > 0.4  # spec: ~0.56 for a +10 push


def test_contrast_rule_closed_form_and_product_of_experts():
    g = torch.Generator().manual_seed(2)
    z, za = torch.randn(3, 10, generator=g), torch.randn(3, 10, generator=g)
    a = torch.tensor([0.0, 0.5, 1.0])
    r = fuse_logits(z, za, a, mode="contrast")
    assert torch.allclose(r.logits, (1 + a[:, None]) * z - a[:, None] * za)
    # softmax(fused) ∝ p^(1+a) / p'^a (the per-branch log-partitions cancel)
    lp, lq = torch.log_softmax(z, -1), torch.log_softmax(za, -1)
    poe = torch.log_softmax((1 + a[:, None]) * lp - a[:, None] * lq, -1)
    assert torch.allclose(torch.log_softmax(r.logits, -1), poe, atol=1e-5)
    # AdaCAD weight = per-row JSD
    r = fuse_logits(z, za, "jsd")
    assert torch.allclose(r.alpha.double(), jsd_ref(z, za), atol=1e-6)


def test_row_vs_official_batch_jsd():
    z = torch.zeros(2, 6)
    za = torch.zeros(2, 6)
    za[1, 0] = 8.0  # only row 1 conflicts
    row = fuse_logits(z, za, "jsd").alpha
    batch = fuse_logits(z, za, "jsd", jsd_reduction="batch").alpha
    assert row[0].item() == pytest.approx(0.0, abs=1e-7) and row[1].item() > 0.1
    assert torch.allclose(batch, row.mean().expand(2))  # official code: one averaged weight


def test_floor():
    z = torch.randn(2, 8)
    r = fuse_logits(z, z.clone(), "jsd", floor=0.3)
    assert torch.allclose(r.alpha, torch.full((2,), 0.3))


def test_ritual_example_and_plausibility_mask():
    """Spec §7(c): z=[2,1.9,-3,-5], z'=[0.5,2.5,-2,4], alpha 3, beta 0.1 -> [3.5, 9.4, -inf, -inf]."""
    z = torch.tensor([[2.0, 1.9, -3.0, -5.0]])
    za = torch.tensor([[0.5, 2.5, -2.0, 4.0]])
    r = LogitFusion.ritual()(z, za)
    assert torch.allclose(r.logits[0, :2], torch.tensor([3.5, 9.4]))
    assert torch.isinf(r.logits[0, 2:]).all() and r.logits.argmax().item() == 1
    # the transformed view loves token 3, but the original finds it implausible: never sampled
    g = torch.Generator().manual_seed(3)
    draws = torch.multinomial(torch.softmax(r.logits, -1).expand(1000, 4), 1, generator=g)
    assert not bool((draws >= 2).any())


def test_plausibility_mask_definition():
    z = torch.log(torch.tensor([[0.5, 0.3, 0.06, 0.04, 0.1]]))
    keep = plausibility_mask(z, 0.1)  # p >= 0.1 * 0.5 = 0.05
    assert keep.tolist() == [[True, True, True, False, True]]
    with pytest.raises(ValueError, match="beta"):
        plausibility_mask(z, 0.0)


def test_vcd_and_cad_presets():
    z, za = torch.randn(2, 5), torch.randn(2, 5)
    assert torch.allclose(LogitFusion.cad(0.5)(z, za).logits, 1.5 * z - 0.5 * za)
    v = LogitFusion.vcd()(z, za)
    keep = plausibility_mask(z, 0.1)
    assert torch.allclose(v.logits[keep], (2 * z - za)[keep])
    assert torch.isinf(v.logits[~keep]).all()


def test_half_precision_inputs_upcast():
    z = torch.randn(2, 30).half()
    r = fuse_logits(z, z.clone(), "jsd")
    assert r.logits.dtype == torch.float32 and r.alpha.abs().max() < 1e-4


def test_errors():
    z = torch.randn(2, 5)
    with pytest.raises(ValueError, match="same shape|one shape"):
        fuse_logits(z, torch.randn(2, 6))
    with pytest.raises(ValueError, match="mode"):
        fuse_logits(z, z, 1.0, mode="mul")
    with pytest.raises(ValueError, match="alpha"):
        fuse_logits(z, z, "kl")
    with pytest.raises(ValueError, match=">= 0"):
        fuse_logits(z, z, -1.0)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        fuse_logits(z, z, torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        fuse_logits(torch.full((1, 3), math.nan), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"z_main must have shape \[B, V\]"):
        fuse_logits(torch.randn(5), torch.randn(5))
