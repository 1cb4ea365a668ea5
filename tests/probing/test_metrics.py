import pytest
import torch

from pairlab.probing.metrics import contradiction_index, polar_consistency, polarity_report


def ref_pc(a1, a0, n1, n0):
    def sign(x):
        return (x > 0) - (x < 0)

    return 0.5 * ((a1 - n0) ** 2 + (a0 - n1) ** 2) * sign(a1 - n1) * sign(n0 - a0)


def test_hand_values():
    # ideal probe: A true (p(A+Yes)=0.95), ¬A false; spec: PC 0, CI 0.095
    t = torch.tensor
    pc = polar_consistency(t([0.95]), t([0.05]), t([0.05]), t([0.95]))
    ci = contradiction_index(t([0.95]), t([0.05]), t([0.05]), t([0.95]))
    assert pc.item() == pytest.approx(0.0, abs=1e-7)
    assert ci.item() == pytest.approx(0.095, abs=1e-6)
    # maximally contradictory: A and ¬A both answered "Yes"
    assert contradiction_index(t([1.0]), t([0.0]), t([1.0]), t([0.0])).item() == pytest.approx(1.0)
    # sign(0) = 0 zeroes PC even for identical (contradictory) answers
    assert polar_consistency(t([1.0]), t([0.0]), t([1.0]), t([0.0])).item() == 0.0


def test_matches_scalar_reference_loop():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 50, generator=g, dtype=torch.float64)
    pc = polar_consistency(*p)
    ci = contradiction_index(*p)
    for i in range(50):
        a1, a0, n1, n0 = (float(p[k, i]) for k in range(4))
        assert pc[i].item() == pytest.approx(ref_pc(a1, a0, n1, n0), abs=1e-12)
        assert ci[i].item() == pytest.approx(a1 * n1 + a0 * n0, abs=1e-12)


def test_aligned_vs_unaligned_models():
    """Spec §1(d) test 2: ¬A's truth flipped (aligned) vs copied (unaligned)."""
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(400, generator=g) > 0.5
    noise = lambda: 0.03 * torch.rand(400, generator=g)  # noqa: E731
    pA1 = torch.where(truth, 0.95, 0.05) + noise()
    pA0 = 1 - pA1
    aligned = polarity_report(pA1, pA0, 1 - pA1 + noise() - 0.015, pA1.clone())
    pN1 = torch.where(truth, 0.95, 0.05) + noise()  # ¬A answered like A: contradiction
    unaligned = polarity_report(pA1, pA0, pN1, 1 - pN1)
    assert aligned["mean_ci"] < 0.1 < 0.9 < unaligned["mean_ci"]
    assert aligned["median_abs_pc"] < 0.1 < 0.7 < unaligned["median_abs_pc"]
    # the mean PC of the unaligned model cancels out in sign: it looks fine on its own
    assert abs(unaligned["mean_pc"]) < unaligned["median_abs_pc"]


def test_errors():
    t = torch.tensor
    with pytest.raises(ValueError, match="pN0"):
        contradiction_index(t([0.1]), t([0.1]), t([0.1]), t([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        polar_consistency(t([1.5]), t([0.1]), t([0.1]), t([0.1]))
    with pytest.raises(TypeError, match="floating"):
        contradiction_index(t([1]), t([0]), t([1]), t([0]))
    with pytest.raises(ValueError, match="at least one"):
        polarity_report(t([]), t([]), t([]), t([]))
