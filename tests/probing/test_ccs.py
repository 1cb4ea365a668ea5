import math

import pytest
import torch

from pairlab.probing.ccs import CCSProbe, ccs_loss, ccs_normalize, set_stats


def planted(n=200, d=16, seed=0, truth_scale=3.0, suffix_scale=5.0, noise=0.5):
    """H+ = B + 3 s d_T + 5 d_Y + e, H- = B - 3 s d_T - 5 d_Y + e (spec §1(d) test 1)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    dt = torch.randn(d, generator=g)
    dt = dt / dt.norm()
    dy = torch.randn(d, generator=g)
    dy = dy - (dy @ dt) * dt
    dy = dy / dy.norm()
    base = torch.randn(n, d, generator=g)
    hp = base + truth_scale * s[:, None] * dt + suffix_scale * dy + noise * torch.randn(n, d, generator=g)
    hn = base - truth_scale * s[:, None] * dt - suffix_scale * dy + noise * torch.randn(n, d, generator=g)
    return hp, hn, (s > 0).long(), dt


def test_ccs_loss_closed_form():
    pp = torch.tensor([0.9, 0.2, 0.5])
    pn = torch.tensor([0.1, 0.7, 0.5])
    ref = sum(min(a, b) ** 2 for a, b in zip(pp.tolist(), pn.tolist(), strict=True)) / 3
    ref += sum((a - (1 - b)) ** 2 for a, b in zip(pp.tolist(), pn.tolist(), strict=True)) / 3
    assert ccs_loss(pp, pn).item() == pytest.approx(ref, abs=1e-7)
    # trivial local minimum p = 0.5 everywhere has loss 0.25; a perfect consistent, confident probe has 0
    assert ccs_loss(torch.full((4,), 0.5), torch.full((4,), 0.5)).item() == pytest.approx(0.25)
    assert ccs_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == 0.0
    # batched restarts: one loss per leading row
    assert ccs_loss(torch.stack([pp, pp]), torch.stack([pn, pn])).shape == (2,)


def test_normalisation_is_per_set():
    hp = torch.randn(10, 4, dtype=torch.float64) + 7.0
    hn = torch.randn(10, 4, dtype=torch.float64) - 3.0
    xp, xn = ccs_normalize(hp, hn, set_stats(hp, hn))
    assert torch.allclose(xp.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(xn.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    xp, xn = ccs_normalize(hp, hn, set_stats(hp, hn, var_normalize=True))
    assert torch.allclose(xp.std(0), torch.ones(4, dtype=torch.float64), atol=1e-5)


def test_planted_direction_found_and_centring_is_essential():
    hp, hn, y, dt = planted()
    probe = CCSProbe(nepochs=150, ntries=2, lr=1e-2, seed=0).fit(hp, hn)
    score = probe.evaluate(hp, hn, y)
    assert score.sign_free_accuracy >= 0.95
    assert abs(torch.nn.functional.cosine_similarity(probe.direction, dt, dim=0)) >= 0.7
    assert score.accuracy is None and not score.sign_resolved  # sign left ambiguous, reported as such

    # ablation: pooled instead of per-set centring -> the probe latches onto the +-5 d_Y suffix direction,
    # is confident and consistent (low loss) and predicts "x+ is true" for everything: chance accuracy
    bad = CCSProbe(nepochs=150, ntries=2, lr=1e-2, seed=0, per_set=False).fit(hp, hn)
    assert bad.evaluate(hp, hn, y).sign_free_accuracy < 0.65
    assert bad.loss_ < 0.05


def test_orientation_resolves_sign_and_matches_oriented_accuracy():
    hp, hn, y, _ = planted(seed=2)
    probe = CCSProbe(nepochs=150, ntries=2, lr=1e-2).fit(hp[:120], hn[:120])
    probe.orient(hp[:8], hn[:8], y[:8])
    assert probe.sign_resolved and probe.orientation_agreement in (0.0, 1.0) or probe.orientation_agreement >= 0.75
    score = probe.evaluate(hp[120:], hn[120:], y[120:])
    assert score.accuracy is not None
    assert score.accuracy == pytest.approx(score.sign_free_accuracy)  # a good probe oriented right
    pred = (probe.predict_proba(hp[120:], hn[120:]) > 0.5).long()
    assert float((pred == y[120:]).double().mean()) == pytest.approx(score.accuracy)


def test_orientation_tie_leaves_sign_unresolved():
    hp, hn, y, _ = planted(seed=3)
    probe = CCSProbe(nepochs=100, ntries=2, lr=1e-2).fit(hp, hn)
    c = probe.predict_proba(hp[:40], hn[:40])
    correct = (c > 0.5).long()
    # two labelled pairs: one agrees with the raw probe, one disagrees -> exact tie
    labels = torch.stack([correct[0], 1 - correct[1]])
    probe.orient(hp[:2], hn[:2], labels)
    assert probe.sign == 0 and probe.orientation_agreement == 0.5
    assert probe.evaluate(hp, hn, y).accuracy is None


def test_restarts_keep_lowest_loss_and_batched_equals_single():
    hp, hn, _, _ = planted(n=80, d=8, seed=4)
    many = CCSProbe(nepochs=50, ntries=4, lr=1e-2, seed=7).fit(hp, hn)
    assert many.loss_ == pytest.approx(float(many.losses_.min()))
    # restart t of a batched fit == a single-restart fit started from the same initial weights
    init = many._init(hp.shape[1], torch.float32)
    single = CCSProbe(nepochs=50, ntries=1, lr=1e-2, seed=7)
    t = int(torch.argmin(many.losses_))
    single._init = lambda d, dtype: {k: v[t : t + 1].clone() for k, v in init.items()}  # type: ignore[method-assign]
    single.fit(hp, hn)
    assert single.loss_ == pytest.approx(many.loss_, rel=1e-4, abs=1e-6)


def test_mlp_probe_learns_planted_direction():
    hp, hn, y, _ = planted(n=120, d=16, seed=5)
    probe = CCSProbe(probe="mlp", hidden=16, nepochs=150, ntries=2, lr=1e-2).fit(hp, hn)
    assert probe.evaluate(hp, hn, y).sign_free_accuracy >= 0.9
    with pytest.raises(ValueError, match="linear"):
        _ = probe.direction


def test_center_self_vs_train_on_shifted_test_set():
    hp, hn, y, _ = planted(seed=6)
    probe = CCSProbe(nepochs=150, ntries=2, lr=1e-2).fit(hp[:120], hn[:120])
    shift = 50.0 * torch.ones(hp.shape[1])
    te_p, te_n = hp[120:] + shift, hn[120:] + shift  # a domain shift only the transductive centring removes
    train_c = probe.evaluate(te_p, te_n, y[120:]).sign_free_accuracy
    probe.center = "self"
    self_c = probe.evaluate(te_p, te_n, y[120:]).sign_free_accuracy
    assert self_c >= 0.95 and self_c >= train_c


def test_supervised_term_orients_probe():
    hp, hn, y, _ = planted(seed=8)
    probe = CCSProbe(nepochs=150, ntries=2, lr=1e-2, lambda_cls=1.0).fit(hp, hn, labels=y)
    pred = (probe.predict_proba(hp, hn) > 0.5).long()
    assert float((pred == y).double().mean()) >= 0.95  # the BCE term fixes the sign without orient()
    with pytest.raises(ValueError, match="labels"):
        CCSProbe(lambda_cls=1.0).fit(hp, hn)


def test_boundary_errors():
    with pytest.raises(ValueError, match="probe"):
        CCSProbe(probe="deep")
    with pytest.raises(ValueError, match="center"):
        CCSProbe(center="test")
    p = CCSProbe(nepochs=1, ntries=1)
    with pytest.raises(ValueError, match="h_pos and h_neg"):
        p.fit(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"h_pos must have shape \[N, D\]"):
        p.fit(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        p.fit(torch.full((4, 2), math.nan), torch.zeros(4, 2))
    with pytest.raises(RuntimeError, match="not fitted"):
        CCSProbe().predict_proba(torch.randn(3, 2), torch.randn(3, 2))
