"""SupReMix mixtures against a brute-force triple enumeration of the spec (§2(b))."""

import pytest
import torch

from pairlab import registry
from pairlab.candidates.supremix import SupReMixCandidates


def _brute_triples(t, n):
    m = len(t)
    neg, pos = set(), set()
    for i in range(m):
        for j in range(m):
            for k in range(m):
                if j == i and k != i and t[j] != t[k]:
                    neg.add((i, j, k))
                if t[j] < t[i] < t[k] and t[k] - t[i] < n and t[i] - t[j] < n:
                    pos.add((i, j, k))
    return neg, pos


def _data(m=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.functional.normalize(torch.randn(m, 6, dtype=torch.float64, generator=g), dim=1)
    t = torch.tensor([0.0, 1, 1, 2.5, 3, 4, 6, 6, 9, 2][:m], dtype=torch.float64)
    return f, t


def test_triples_alpha_labels_and_embeddings_match_spec():
    torch.manual_seed(0)
    f, t = _data()
    mix = SupReMixCandidates(window=3.0)(f, t)
    neg, pos = _brute_triples(t.tolist(), 3.0)
    got = {(int(a), int(b), int(c)) for a, b, c in zip(mix.anchor, mix.j, mix.k, strict=True)}
    trip = list(zip(mix.anchor.tolist(), mix.j.tolist(), mix.k.tolist(), strict=True))
    got_pos = {x for x, p in zip(trip, mix.positive.tolist(), strict=True) if p}
    assert got_pos == pos and got - got_pos == neg and len(mix) == len(pos) + len(neg)
    for r in range(len(mix)):
        i, j, k, a = int(mix.anchor[r]), int(mix.j[r]), int(mix.k[r]), float(mix.alpha[r])
        if mix.positive[r]:
            assert a == pytest.approx((t[k] - t[i]) / (t[k] - t[j]))
            assert float(mix.label[r]) == float(t[i])  # exactly the anchor's target
            assert float(a * t[j] + (1 - a) * t[k]) == pytest.approx(float(t[i]), abs=1e-12)
        else:
            assert 0 < a < 1 and float(mix.label[r]) == pytest.approx(a * float(t[i]) + (1 - a) * float(t[k]))
        torch.testing.assert_close(mix.emb[r], a * f[j] + (1 - a) * f[k])
    assert not mix.emb.requires_grad
    assert bool((mix.anchor[1:] >= mix.anchor[:-1]).all())


def test_beta_draws_have_the_configured_mean():
    torch.manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(40, 4), dim=1)
    mix = SupReMixCandidates(beta=(2.0, 8.0), mix_pos=False)(f, torch.arange(40.0))
    assert float(mix.alpha.mean()) == pytest.approx(0.2, abs=0.01)


def test_caps_and_padding():
    torch.manual_seed(2)
    f, t = _data()
    mix = SupReMixCandidates(window=5.0, max_neg_mix=3, max_pos_mix=2)(f, t)
    for i in range(len(t)):
        sel = mix.anchor == i
        assert int((sel & ~mix.positive).sum()) <= 3 and int((sel & mix.positive).sum()) <= 2
    emb, label, positive, valid = mix.padded(len(t))
    assert int(valid.sum()) == len(mix)
    assert valid.sum(1).tolist() == torch.bincount(mix.anchor, minlength=len(t)).tolist()
    assert int(positive.sum()) == int(mix.positive.sum())


def test_mix_negatives_are_harder_than_pure_negatives_at_init():
    # spec §2(d)3: mean anchor.mixture over mix-negatives exceeds mean anchor.negative
    torch.manual_seed(3)
    f = torch.nn.functional.normalize(torch.randn(64, 32), dim=1)
    t = torch.rand(64) * 10
    mix = SupReMixCandidates(mix_pos=False)(f, t)
    s_mix = (mix.emb * f[mix.anchor]).sum(1).mean()
    s_pure = (f[mix.k] * f[mix.anchor]).sum(1).mean()
    assert float(s_mix) > float(s_pure) + 0.1


def test_registry_and_bad_input():
    mixer = registry.build("candidates", "supremix", window=2.0)
    assert isinstance(mixer, SupReMixCandidates)
    f, t = _data()
    with pytest.raises(ValueError, match="t must be a float"):
        mixer(f, t.long())
    with pytest.raises(ValueError, match="t must be a float"):
        mixer(f, t[:3])
    with pytest.raises(ValueError, match="NaN"):
        mixer(f, t.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match=r"\[M, d\]"):
        mixer(f[None], t)
    with pytest.raises(ValueError, match="window"):
        SupReMixCandidates(window=0)
    with pytest.raises(ValueError, match="max_neg_mix"):
        SupReMixCandidates(max_neg_mix=0)
