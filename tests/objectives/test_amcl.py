"""AMCL against a per-anchor, per-head loop of the Table 2 formula (methods-representation §3)."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.amcl import AMCL


def _unit(z):
    return z / z.norm(dim=-1, keepdim=True)


def ref_amcl(obj: AMCL, z: torch.Tensor) -> torch.Tensor:
    b = z.shape[0]
    c_heads, dh = obj.heads, obj.head_dim
    u = _unit(z.reshape(b, 2, c_heads, dh))
    rows = [(i, v) for i in range(b) for v in range(2)]
    total = 0.0
    for i, v in rows:
        for c in range(c_heads):
            net = obj.temperature_nets[0 if obj.share_temperature_mlp else c]

            def tau(x, y, net=net):
                if obj.fixed_temperature is not None:
                    return torch.tensor(obj.fixed_temperature, dtype=x.dtype)
                h = torch.cat([x, y])
                return obj.lower + (obj.upper - obj.lower) * torch.sigmoid(net.phi(h)[0])

            def omega(t):
                return 1 / t + obj.omega_log_coef * torch.log(t)

            a = u[i, v, c]
            p = u[i, 1 - v, c]
            cands = [(j, w) for j, w in rows if (j, w) != (i, v) and (obj.variant == "infonce" or j != i)]
            sims = [float((a @ u[j, w, c]).detach()) for j, w in cands]
            j, w = cands[max(range(len(cands)), key=lambda t: sims[t])]
            n = u[j, w, c]
            tp, tn = tau(a, p), tau(a, n)
            total = total + (-(a @ p) / tp + (a @ n) / tn + obj.beta * omega(tp) - obj.beta * omega(tn))
    return total / len(rows)


@pytest.mark.parametrize(
    "kw",
    [
        {"dim": 6, "heads": 2},
        {"dim": 6, "heads": 3, "share_temperature_mlp": False, "beta": 0.5},
        {"dim": 4, "heads": 1, "variant": "infonce", "omega_log_coef": 1.5},
    ],
)
def test_matches_loop_value_and_grads(kw):
    torch.manual_seed(0)
    obj = AMCL(hidden=8, **kw).double()
    z = torch.randn(5, 2, kw["dim"], dtype=torch.float64)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    params = list(obj.parameters())
    loss = obj(z1)
    g1 = torch.autograd.grad(loss, [z1, *params])
    ref = ref_amcl(obj, z2)
    g2 = torch.autograd.grad(ref, [z2, *params])
    torch.testing.assert_close(loss, ref)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_four_dim_input_equals_split_input():
    torch.manual_seed(1)
    obj = AMCL(dim=8, heads=2, hidden=4).double()
    z = torch.randn(4, 2, 8, dtype=torch.float64)
    torch.testing.assert_close(obj(z), obj(z.reshape(4, 2, 2, 4)))


def test_fixed_temperature_single_head_is_max_negative_triplet():
    """Spec §3(d).1: C=1, fixed tau: -s+/tau + max s-/tau (the Omega terms cancel)."""
    torch.manual_seed(2)
    z = torch.randn(6, 2, 5, dtype=torch.float64)
    tau = 0.3
    u = _unit(z).reshape(12, 5)
    s = u @ u.T
    idx = torch.arange(12)
    pos = s[idx, idx ^ 1]
    excl = torch.eye(12, dtype=torch.bool)
    excl[idx, idx ^ 1] = True
    hardest = s.masked_fill(excl, -math.inf).max(1).values
    expected = ((-pos + hardest) / tau).mean()
    torch.testing.assert_close(AMCL(dim=5, heads=1, fixed_temperature=tau)(z), expected)


def test_temperatures_bounded_and_stats():
    torch.manual_seed(3)
    obj = AMCL(dim=8, heads=2, lower=0.05, upper=0.5)
    for p in obj.parameters():
        torch.nn.init.normal_(p, std=10.0)  # saturate the sigmoid both ways
    st = obj.pair_stats(torch.randn(16, 2, 8))
    for key in ("tau_pos", "tau_neg"):
        assert float(st[key].detach().min()) >= 0.05 and float(st[key].detach().max()) <= 0.5
    obj(torch.randn(16, 2, 8))
    assert set(obj.last_stats) == {"s_pos_mean", "s_neg_mean", "tau_pos_mean", "tau_neg_mean"}


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.flatten().argsort().argsort().double(), b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def _train_on_planted_heads(share: bool, steps: int = 150) -> dict[str, torch.Tensor]:
    """Three heads of the same planted samples with view noise 0.1 / 0.6 / 1.5 (easy -> hard positives); only the
    temperature network trains (features are data), so the learned tau is the network's answer to head difficulty."""
    b, c, d = 64, 3, 8
    noise = torch.tensor([0.1, 0.6, 1.5])[None, :, None]
    g = torch.Generator().manual_seed(0)

    def batch() -> torch.Tensor:
        base = torch.randn(b, c, d, generator=g)
        return torch.stack([base + noise * torch.randn(b, c, d, generator=g) for _ in range(2)], 1)  # [B, 2, C, d']

    torch.manual_seed(0)
    obj = AMCL(dim=c * d, heads=c, share_temperature_mlp=share)
    opt = torch.optim.Adam(obj.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss = obj(batch())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return obj.pair_stats(batch())
    finally:
        torch.set_num_threads(threads)


def test_learned_temperatures_follow_head_difficulty_and_stay_bounded():
    """Spec §3(d)2 on planted heads: per-head temperature networks (official code form) give the easy head a
    sharp tau+ (at the lower bound) and the hard heads a large one; per pair, tau+ rises with 1 - s+.

    Mechanism (measured): tau+ and tau- come from the same network, so for a head whose hardest negative is more
    similar than its positive (s- > s+) the loss (s- - s+)/tau is cut by a large tau; for the easy head
    (s+ > s-) by a small one. The medium and hard heads both saturate near the upper bound (no finer ordering).
    """
    st = _train_on_planted_heads(share=False)
    tau_pos, s_pos = st["tau_pos"].mean(0), st["s_pos"].mean(0)
    print(f"AMCL per-head: s+ {s_pos.tolist()} s- {st['s_neg'].mean(0).tolist()} tau+ {tau_pos.tolist()}")
    assert s_pos[0] > s_pos[1] > s_pos[2]  # the planted difficulty order
    assert tau_pos[0] < 0.05 and tau_pos[1] > 20 * tau_pos[0] and tau_pos[2] > 20 * tau_pos[0]
    assert _spearman(1 - st["s_pos"], st["tau_pos"]) > 0.3
    for key in ("tau_pos", "tau_neg"):
        assert float(st[key].min()) >= 1e-3 and float(st[key].max()) <= 2.0


def test_shared_temperature_network_stays_bounded_on_planted_heads():
    """The paper's shared network on the same planted heads: bounded, but (measured, reported) it does NOT order
    the heads at beta = 0.1: every tau saturates near the upper bound. Only the bounds are asserted."""
    st = _train_on_planted_heads(share=True)
    print(f"AMCL shared: tau+ by head {st['tau_pos'].mean(0).tolist()}, "
          f"spearman(1 - s+, tau+) {_spearman(1 - st['s_pos'], st['tau_pos']):.2f}")
    for key in ("tau_pos", "tau_neg"):
        assert float(st[key].min()) >= 1e-3 and float(st[key].max()) <= 2.0
    assert float(st["tau_pos"].mean()) > 1.0  # the saturation reported above (the upper bound is active)


def test_bad_inputs_and_registry():
    with pytest.raises(ValueError, match="multiple of heads"):
        AMCL(dim=10, heads=3)
    with pytest.raises(ValueError, match="lower must be < upper"):
        AMCL(lower=2.0, upper=1.0)
    with pytest.raises(ValueError, match="variant"):
        AMCL(variant="moco")
    obj = AMCL(dim=8, heads=2)
    with pytest.raises(ValueError, match="D = dim = 8"):
        obj(torch.randn(4, 2, 6))
    with pytest.raises(ValueError, match="exactly 2 views"):
        obj(torch.randn(4, 3, 8))
    with pytest.raises(ValueError, match=r"\[B, 2, 2, 4\]"):
        obj(torch.randn(4, 2, 4, 2))
    bad = torch.randn(4, 2, 8)
    bad[0, 1, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        obj(bad)
    assert registry.get("objectives", "amcl").meta["input"] == "views"
    assert registry.build("objectives", "amcl", dim=12, heads=3).head_dim == 4


@pytest.mark.parametrize(("name", "views", "args"), [('amcl', 2, {'heads': 4})])
def test_reachable_from_training_config(name, views, args):
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    cfg = make_config({"objective": name, "views": views, "objective_args": args, "temperature": 0.3})
    obj, kind = build_objective(cfg)
    z = torch.randn(16, views, cfg.model.proj_dim, requires_grad=True)
    loss = call_objective(obj, kind, z, torch.randint(0, 4, (16,)))
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()
