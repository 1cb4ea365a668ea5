"""SepCLR: brute-force float64 loops of every term (spec §13(b)); background salient collapse on a toy."""

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.sepclr import SepCLR


def _n(x):
    return x / x.norm()


def _reference(c, s, tgt, tau, bs, br, lj):
    b = c.shape[0]
    sp = [torch.stack([s[i, v] if tgt[i] else torch.zeros_like(s[i, v]) for i in range(b)]) for v in range(2)]
    cn = [torch.stack([_n(c[i, v]) for i in range(b)]) for v in range(2)]

    def al(x, y):
        return sum(((x[i] - y[i]) ** 2).sum() for i in range(len(x))) / len(x) / (2 * tau)

    def un(x):
        vals = [torch.exp(-((x[i] - x[j]) ** 2).sum() / (2 * tau)) for i in range(b) for j in range(i + 1, b)]
        return torch.log(sum(vals) / len(vals))

    ti = [i for i in range(b) if tgt[i]]
    bi = [i for i in range(b) if not tgt[i]]
    common = al(cn[0], cn[1]) + 2 * 0.5 * (un(cn[0]) + un(cn[1]))
    salient = al(s[ti, 0], s[ti, 1]) + 2 * 0.5 * (un(sp[0]) + un(sp[1]))
    infoless = 0.5 * (al(sp[0][bi], s[bi, 0]) + al(sp[1][bi], s[bi, 1]))
    jem = 0.0
    for v in range(2):
        rows = []
        for i in range(b):
            k = [torch.exp(-((cn[v][i] - cn[v][j]) ** 2).sum() / (2 * tau)) *
                 torch.exp(-((sp[v][i] - sp[v][j]) ** 2).sum() / (2 * tau)) for j in range(b)]
            rows.append(torch.log(sum(k) / b))
        jem = jem + 0.5 * sum(rows) / b
    return common + bs * salient + br * infoless + lj * jem


def test_matches_reference_value_and_grad():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(7, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    s = torch.randn(7, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    tgt = torch.tensor([1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    obj = SepCLR(temperature=0.5, beta_s=2.0, beta_reg=3.0, lambda_jem=1.5)
    got = obj(c, s, tgt)
    want = _reference(c, s, tgt, 0.5, 2.0, 3.0, 1.5)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (c, s)), torch.autograd.grad(want, (c, s)), strict=True):
        torch.testing.assert_close(a, b)
    # the information-less term is the background salient squared norm / (2 tau)
    bg = ~tgt
    assert obj.last_stats["infoless"] == pytest.approx(float((s.detach()[bg] ** 2).sum(-1).mean() / (2 * 0.5)))


@pytest.mark.slow
def test_toy_background_salient_collapses_and_salient_space_carries_the_pattern():
    """Spec §13(d)3 and (d)1 on a tiny synthetic contrastive-analysis task (directional)."""
    torch.manual_seed(0)
    n, dc = 256, 8
    common_cls = torch.randint(0, 4, (n,))
    tgt = torch.arange(n) % 2 == 1
    pattern = torch.randint(0, 4, (n,))
    centers, pats = torch.randn(4, dc) * 2, torch.randn(4, 6) * 2
    x = torch.cat([centers[common_cls], torch.where(tgt[:, None], pats[pattern], torch.zeros(n, 6))], 1)
    enc_c = torch.nn.Sequential(torch.nn.Linear(14, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    enc_s = torch.nn.Sequential(torch.nn.Linear(14, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    obj = SepCLR(beta_s=1.0, beta_reg=10.0, lambda_jem=10.0)
    opt = torch.optim.Adam(list(enc_c.parameters()) + list(enc_s.parameters()), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, n, (64,))
        v = [x[idx] + 0.3 * torch.randn(64, 14) for _ in range(2)]
        loss = obj(torch.stack([enc_c(a) for a in v], 1), torch.stack([enc_s(a) for a in v], 1), tgt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        s = enc_s(x)
        c = torch.nn.functional.normalize(enc_c(x), dim=1)

    def probe(feat, lab):  # nearest class mean on the target samples, fit on half, test on the other half
        f, y = feat[tgt], lab[tgt]
        tr, te = torch.arange(len(y)) % 2 == 0, torch.arange(len(y)) % 2 == 1
        means = torch.stack([f[tr & (y == k)].mean(0) for k in range(4)])
        return float((torch.cdist(f[te], means).argmin(1) == y[te]).float().mean())

    bg_norm, tg_norm = float(s[~tgt].norm(dim=1).mean()), float(s[tgt].norm(dim=1).mean())
    acc_s, acc_c = probe(s, pattern), probe(c, pattern)
    print(f"SepCLR toy: |s| bg {bg_norm:.3f} tgt {tg_norm:.3f}; pattern acc salient {acc_s:.2f} common {acc_c:.2f}")
    assert bg_norm < 0.2 * tg_norm
    assert acc_s > acc_c
    assert math.isfinite(float(loss))


def test_registry_and_bad_input():
    obj = registry.build("objectives", "sepclr")
    assert registry.get("objectives", "sepclr").meta["input"] == "background_target"
    c, s = torch.randn(4, 2, 3), torch.randn(4, 2, 5)
    with pytest.raises(ValueError, match="background and target"):
        obj(c, s, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="target must"):
        obj(c, s, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="0 \\(background\\)"):
        obj(c, s, torch.tensor([0, 2, 0, 1]))
    with pytest.raises(ValueError, match="2 views"):
        obj(torch.randn(4, 3, 3), torch.randn(4, 3, 5), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="batch sizes"):
        obj(c, s[:3], torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        obj(c.fill_(float("nan")), s, torch.tensor([0, 1, 0, 1]))
