"""CACR against per-pair loops of the spec formulas (methods-representation §6)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.cacr import CACR, attraction, repulsion


def _unit(z):
    return z / z.norm(dim=-1, keepdim=True)


def _softmax_list(logits, detach):
    vals = [lg.detach() if detach else lg for lg in logits]
    m = max(float(v.detach()) for v in vals)
    ex = [torch.exp(v - m) for v in vals]
    s = sum(ex)
    return [e / s for e in ex]


def ref_small(z, alpha=1.0, beta=1.0, tp=1.0, tn=1.0, choice="full", detach=False, debiased=False, tplus=0.1):
    u = _unit(z)
    b, k, _ = u.shape
    ca = 0.0
    for x in range(k):
        acc = 0.0
        for i in range(b):
            d2 = [((u[i, x] - u[i, v]) ** 2).sum() for v in range(k) if v != x]
            w = ([1.0 / len(d2)] * len(d2) if choice in ("none", "without_w1")
                 else _softmax_list([tp * d for d in d2], detach))
            acc = acc + sum(wi * alpha * d for wi, d in zip(w, d2, strict=True))
        ca = ca + acc / b
    ca = ca / k
    cr, npairs = 0.0, 0
    for x, y in itertools.combinations(range(k), 2):
        acc = 0.0
        for i in range(b):
            d2 = [((u[i, x] - u[j, y]) ** 2).sum() for j in range(b) if j != i]
            w = ([1.0 / len(d2)] * len(d2) if choice in ("none", "without_w2")
                 else _softmax_list([-tn * d for d in d2], detach))
            t = sum(wi * (-beta) * d for wi, d in zip(w, d2, strict=True))
            if debiased:
                t = (-tplus * ((u[i, x] - u[i, y]) ** 2).sum() + t) / (1 - tplus)
            acc = acc + t
        cr = cr + acc / b
        npairs += 1
    return ca + cr / npairs


def ref_queue(z, queue, keys=None, alpha=1.0, beta=1.0, tp=1.0, tn=1.0, cache=False, det_a=True, det_q=True,
              det_i=False, intra=True):
    u = _unit(z)
    kn = u.detach() if keys is None else _unit(keys)
    qn = _unit(queue)
    b, k, _ = u.shape
    ca, cr = 0.0, 0.0
    for x in range(k):
        a1, a2 = 0.0, 0.0
        for i in range(b):
            d2 = [((u[i, x] - kn[i, v]) ** 2).sum() for v in range(k) if v != x]
            w = _softmax_list([tp * d for d in d2], det_a)
            a1 = a1 + sum(wi * d for wi, d in zip(w, d2, strict=True))
            qx = u[i, 0] if cache else u[i, x]
            dq = [2 - 2 * (qx * qn[m]).sum() for m in range(qn.shape[0])]
            di = [((u[i, x] - u[j, x]) ** 2).sum() for j in range(b) if j != i] if intra else []
            lq = [(-tn * d).detach() if det_q else -tn * d for d in dq]
            li = [(-tn * d).detach() if det_i else -tn * d for d in di]
            w = _softmax_list(lq + li, False)
            a2 = a2 + sum(wi * (-d) for wi, d in zip(w, dq + di, strict=True))
        ca = ca + alpha * a1 / b
        cr = cr + beta * a2 / b
    return (ca + cr) / k


def _check(loss_fn, ref_fn, z, *more):
    z1 = z.clone().requires_grad_(True)
    loss = loss_fn(z1, *more)
    g = torch.autograd.grad(loss, z1)[0]
    z2 = z.clone().requires_grad_(True)
    ref = ref_fn(z2, *more)
    g2 = torch.autograd.grad(ref, z2)[0]
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(g, g2)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"detach": True},
        {"choice": "none"},
        {"choice": "without_w1", "tp": 2.0},
        {"choice": "without_w2", "tn": 0.9},
        {"alpha": 2.0, "beta": 0.5, "tp": 0.3, "tn": 2.0},
        {"debiased": True, "tplus": 0.2},
    ],
)
@pytest.mark.parametrize("k", [2, 4])
def test_small_scale_matches_bruteforce(kw, k):
    torch.manual_seed(k)
    z = torch.randn(5, k, 4, dtype=torch.float64)
    obj = CACR(
        alpha=kw.get("alpha", 1.0), beta=kw.get("beta", 1.0), tau_pos=kw.get("tp", 1.0), tau_neg=kw.get("tn", 1.0),
        choice=kw.get("choice", "full"), detach_weights=kw.get("detach", None), debiased=kw.get("debiased", False),
        tau_plus=kw.get("tplus", 0.1),
    )
    _check(obj, lambda x: ref_small(x, **kw), z)


@pytest.mark.parametrize("detach", [None, True, False])
@pytest.mark.parametrize("cache", [False, True])
def test_queue_form_matches_bruteforce(detach, cache):
    torch.manual_seed(5)
    z = torch.randn(4, 3, 4, dtype=torch.float64)
    queue = torch.randn(6, 4, dtype=torch.float64)
    obj = CACR(alpha=1.5, beta=0.7, tau_pos=0.5, tau_neg=2.0, detach_weights=detach, official_queue_cache=cache)
    flags = {"det_a": True, "det_q": True, "det_i": False} if detach is None else dict.fromkeys(
        ("det_a", "det_q", "det_i"), detach)
    _check(lambda x: obj(x, extra=queue),
           lambda x: ref_queue(x, queue, alpha=1.5, beta=0.7, tp=0.5, tn=2.0, cache=cache, **flags), z)


def test_queue_form_with_momentum_keys_and_without_intra_batch():
    torch.manual_seed(6)
    z = torch.randn(4, 2, 3, dtype=torch.float64)
    keys = torch.randn(4, 2, 3, dtype=torch.float64)
    queue = torch.randn(5, 3, dtype=torch.float64)
    obj = CACR(intra_batch=False)
    _check(lambda x: obj(x, extra=queue, keys=keys), lambda x: ref_queue(x, queue, keys=keys, intra=False), z)


def test_official_queue_cache_differs_on_hand_made_case():
    """View 0 sits on the queue entry, view 1 opposite: the cache makes view 1 see view 0's distances."""
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    z = torch.stack([torch.stack([e1, -e1]), torch.stack([e1, -e1])])  # [2, 2, 2]
    queue = e1[None]
    own = CACR(intra_batch=False)(z, extra=queue)
    cached = CACR(intra_batch=False, official_queue_cache=True)(z, extra=queue)
    # own: view0 d2q = 0, view1 d2q = 4; CA: both views at distance 4 from the other key
    ca = 4.0
    torch.testing.assert_close(own, torch.tensor(ca + (0.0 - 4.0) / 2, dtype=torch.float64))
    torch.testing.assert_close(cached, torch.tensor(ca + (0.0 + 0.0) / 2, dtype=torch.float64))


def test_weight_properties():
    torch.manual_seed(7)
    u = _unit(torch.randn(6, 4, 5, dtype=torch.float64))
    _, wp = attraction(u, tau_pos=1.0)
    _, wn = repulsion(u, tau_neg=1.0)
    torch.testing.assert_close(wp.sum(1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(wn.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.all(wn.diagonal() == 0)
    # farther positive -> larger weight; closer negative -> larger weight (last query / last pair)
    d_pos = (u[:, 3:4] - u[:, :3]).pow(2).sum(-1)
    assert torch.equal(d_pos.argsort(1), wp.argsort(1))
    d_neg = (u[:, 2, None] - u[None, :, 3]).pow(2).sum(-1)
    off = ~torch.eye(6, dtype=torch.bool)
    for i in range(6):
        assert torch.equal(d_neg[i][off[i]].argsort(), wn[i][off[i]].argsort(descending=True))
    # tau -> 0 gives uniform weights = choice "none"
    z = torch.randn(6, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(CACR(tau_pos=0.0, tau_neg=0.0)(z), CACR(choice="none")(z))


def _imbalanced_views(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One majority class (28 of 40 samples) and two minority classes (6 each): class centre + noise, K=2 views."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * 28 + [1] * 6 + [2] * 6)
    centres = torch.eye(8, dtype=torch.float64)[:3]  # orthogonal class centres (squared distance 2)
    base = centres[labels] + 0.2 * torch.randn(40, 8, dtype=torch.float64, generator=g)
    z = torch.stack([base + 0.1 * torch.randn(40, 8, dtype=torch.float64, generator=g) for _ in range(2)], 1)
    return _unit(z), labels


def test_repulsion_weights_on_an_imbalanced_batch():
    """Spec §6(b)/(d) on a class-imbalanced toy: the hardest negative of every anchor gets the most repulsion
    weight; a minority anchor puts far less weight on the majority class than its batch share (which is what
    uniform weights, choice="none", give), and a majority anchor puts most of its weight on its own class."""
    u, labels = _imbalanced_views()
    _, w = repulsion(u, tau_neg=2.0)  # the only pair (0, 1): w[i, j] over j != i
    d2 = (u[:, 0, None] - u[None, :, 1]).pow(2).sum(-1).masked_fill(torch.eye(40, dtype=torch.bool), math.inf)
    assert torch.equal(w.argmax(1), d2.argmin(1))
    majority = (labels == 0).double()
    minority_rows = labels != 0
    share = (majority.sum() / 39).item()  # majority share among a minority anchor's 39 negatives
    mass = (w[minority_rows] * majority).sum(1)
    _, w_uniform = repulsion(u, uniform=True)
    torch.testing.assert_close((w_uniform[minority_rows] * majority).sum(1), torch.full_like(mass, share))
    print(f"CACR imbalanced: majority share {share:.2f}, minority anchors' repulsion mass on it "
          f"mean {float(mass.mean()):.3f} max {float(mass.max()):.3f}")
    assert float(mass.max()) < share and float(mass.mean()) < 0.5 * share
    same = (w[~minority_rows] * majority).sum(1)
    assert float(same.min()) > 27 / 39  # above its own share of same-class negatives
    sharper = (repulsion(u, tau_neg=8.0)[1][minority_rows] * majority).sum(1)
    # a larger tau_neg concentrates further on each anchor's nearest rows: on average its own class
    assert float(sharper.mean()) < 0.25 * float(mass.mean())


def test_attraction_weights_favour_the_hard_positive_and_queue_form_equals_small_scale_attraction():
    """Farthest (hardest) positive view gets the most attraction weight; the queue form with the batch's own views
    as keys (the default) has the small-scale attraction value."""
    u, _ = _imbalanced_views(1)
    z = torch.cat([u, u[:, :1] + 0.05, -u[:, 1:2]], dim=1)  # K = 4: view 3 is a planted hard positive
    obj = CACR(tau_pos=2.0)
    obj(z)
    _, wp = attraction(_unit(z), tau_pos=2.0)  # query = last view: its farthest positive is view 0 or 1
    obj_q = CACR(tau_pos=2.0)
    obj_q(z, extra=torch.randn(16, 8, dtype=torch.float64))
    assert obj_q.last_stats["attraction"] == pytest.approx(obj.last_stats["attraction"], rel=1e-12)
    d2 = (_unit(z)[:, 3:4] - _unit(z)[:, :3]).pow(2).sum(-1)
    assert torch.equal(wp.argmax(1), d2.argmax(1)) and float(wp.max(1).values.min()) > 1 / 3


def test_bad_inputs_and_registry():
    with pytest.raises(ValueError, match="K >= 2"):
        CACR()(torch.randn(4, 1, 3))
    with pytest.raises(ValueError, match="extra"):
        CACR()(torch.randn(4, 2, 3), extra=torch.randn(5, 4))
    with pytest.raises(ValueError, match="keys"):
        CACR()(torch.randn(4, 2, 3), keys=torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="tau_neg"):
        CACR(tau_neg=-1.0)
    with pytest.raises(ValueError, match="choice"):
        CACR(choice="w1")
    with pytest.raises(ValueError, match="tau_plus"):
        CACR(tau_plus=1.0)
    bad = torch.randn(4, 2, 3)
    bad[0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        CACR()(bad)
    assert registry.get("objectives", "cacr").meta["input"] == "views"
    obj = registry.build("objectives", "cacr", tau_neg=0.9)
    assert obj.tau_neg == 0.9
    loss = obj(torch.randn(8, 3, 4))
    assert obj.last_stats["w_neg_entropy"] > 0 and torch.isfinite(loss)


@pytest.mark.parametrize(("name", "views", "args"), [('cacr', 3, {'tau_neg': 0.9})])
def test_reachable_from_training_config(name, views, args):
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    cfg = make_config({"objective": name, "views": views, "objective_args": args, "temperature": 0.3})
    obj, kind = build_objective(cfg)
    z = torch.randn(16, views, cfg.model.proj_dim, requires_grad=True)
    loss = call_objective(obj, kind, z, torch.randint(0, 4, (16,)))
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()
