"""SupReMix loss: brute-force float64 loop over anchors, real candidates and mixtures (spec §2(b))."""

import math

import pytest
import torch

from pairlab import registry
from pairlab.candidates.supremix import SupReMixCandidates
from pairlab.objectives.supremix import SupReMix


def _w(d, distance):
    d = abs(d)
    return {"L1_inv": d + 1, "L2_inv": d * d + 1, "L1": 1 / (d + 1), "L2": 1 / (d * d + 1), None: 1.0}[distance]


def _reference(z, y, mix, tau, distance, official_shift=False):
    b, k, d = z.shape
    f = torch.nn.functional.normalize(z.reshape(b * k, d), dim=1)
    t = y.repeat_interleave(k)
    m = b * k
    losses = []
    for i in range(m):
        real = [(j, (f[i] * f[j]).sum() / tau, _w(float(t[i] - t[j]), distance), bool(t[i] == t[j]))
                for j in range(m) if j != i]
        mixes = []
        for r in range(len(mix)):
            if int(mix.anchor[r]) == i:
                a, j_, k_ = float(mix.alpha[r]), int(mix.j[r]), int(mix.k[r])
                emb = a * f[j_].detach() + (1 - a) * f[k_].detach()
                lab = float(t[i]) if mix.positive[r] else a * float(t[i]) + (1 - a) * float(t[k_])
                mixes.append((r, (emb * f[i]).sum() / tau, _w(float(t[i]) - lab, distance), bool(mix.positive[r])))
        if official_shift:
            rmax = max([float((f[i] * f[j]).sum().detach() / tau) for j in range(m)])
            real = [(j, s - rmax, w, p) for j, s, w, p in real]
            if mixes:
                mmax = max(float(s.detach()) for _, s, _, _ in mixes)
                mixes = [(r, s - mmax, w, p) for r, s, w, p in mixes]
        cands = real + mixes
        pos = [s for _, s, _, p in cands if p]
        if not pos:
            continue
        log_z = torch.log(sum(w * torch.exp(s) for _, s, w, _ in cands))
        losses.append(-(sum(pos) / len(pos)) + log_z)
    return sum(losses) / len(losses)


def _data(seed=0, b=6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.5, 3.0, 3.0, 7.0][:b], dtype=torch.float64)
    return z, y


@pytest.mark.parametrize("distance", ["L1_inv", "L2_inv", "L1", "L2", None])
def test_matches_reference_value_and_grad(distance):
    torch.manual_seed(0)
    z, y = _data()
    f = torch.nn.functional.normalize(z.detach().reshape(12, 5), dim=1)
    mix = SupReMixCandidates(window=2.0)(f, y.repeat_interleave(2))
    obj = SupReMix(temperature=0.5, window=2.0, distance=distance)
    got = obj(z, y, mixtures=mix)
    want = _reference(z, y, mix, 0.5, distance)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])
    assert obj.last_stats["mixtures"] == len(mix)


def test_official_shift_reproduces_the_separate_max_quirk():
    torch.manual_seed(1)
    z, y = _data(seed=3)
    f = torch.nn.functional.normalize(z.detach().reshape(12, 5), dim=1)
    mix = SupReMixCandidates(window=2.0)(f, y.repeat_interleave(2))
    paper = SupReMix(temperature=0.1, window=2.0)(z, y, mixtures=mix)
    official = SupReMix(temperature=0.1, window=2.0, official_shift=True)(z, y, mixtures=mix)
    torch.testing.assert_close(official, _reference(z, y, mix, 0.1, "L1_inv", official_shift=True))
    assert abs(float(official) - float(paper)) > 1e-3  # the quirk changes the value


def test_sampled_mixtures_path_and_anchors_without_positive():
    torch.manual_seed(2)
    z = torch.randn(5, 2, 4, dtype=torch.float64)
    y = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0], dtype=torch.float64)  # gaps > window: no mix-positives
    obj = SupReMix(window=1.0)
    loss = obj(z, y)  # only the other view is a positive (exact label equality)
    assert math.isfinite(float(loss)) and obj.last_stats["mix_pos"] == 0
    assert obj.last_stats["anchors_used"] == 10


@pytest.mark.slow
def test_ordinality_improves_over_supcon_on_a_1d_manifold():
    """Spec §2(d)1 (directional, small): Spearman(dist, |dy|) higher with SupReMix than exact-label SupCon."""
    from scipy.stats import spearmanr

    from pairlab.objectives import SupCon

    def run(kind, seed):
        torch.manual_seed(seed)
        y = torch.rand(512) * 10
        x = torch.cat([torch.cos(y)[:, None], torch.sin(y)[:, None], y[:, None] / 10, torch.randn(512, 5) * 0.3], 1)
        enc = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
        opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
        obj = SupReMix(temperature=0.5, window=2.0, max_neg_mix=8, max_pos_mix=8) if kind == "mix" else SupCon(0.5)
        for _ in range(60):
            idx = torch.randint(0, 512, (32,))
            views = torch.stack([x[idx] + 0.05 * torch.randn(32, 8) for _ in range(2)], 1)
            out = enc(views)
            loss = obj(out, y[idx]) if kind == "mix" else obj(out, torch.round(y[idx]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            e = torch.nn.functional.normalize(enc(x[:200]), dim=1)
        iu = torch.triu_indices(200, 200, 1)
        dist = torch.cdist(e, e)[iu[0], iu[1]]
        dy = (y[:200, None] - y[None, :200]).abs()[iu[0], iu[1]]
        return spearmanr(dist.numpy(), dy.numpy()).statistic

    mix = sum(run("mix", s) for s in range(2)) / 2
    sup = sum(run("sup", s) for s in range(2)) / 2
    print(f"SupReMix Spearman {mix:.3f} vs SupCon {sup:.3f}")
    assert mix > sup


def test_registry_and_bad_input():
    obj = registry.build("objectives", "supremix", temperature=0.3)
    assert registry.get("objectives", "supremix").meta["input"] == "regression"
    with pytest.raises(ValueError, match="targets"):
        obj(torch.randn(4, 2, 3), torch.arange(4))
    with pytest.raises(ValueError, match="targets"):
        obj(torch.randn(4, 2, 3), torch.rand(3))
    with pytest.raises(ValueError, match="NaN"):
        obj(torch.full((4, 2, 3), float("nan")), torch.rand(4))
    with pytest.raises(ValueError, match="distance"):
        SupReMix(distance="L3")
    with pytest.raises(ValueError, match="no anchor"):
        SupReMix(window=0.1)(torch.randn(3, 1, 4), torch.tensor([0.0, 5.0, 9.0]))
