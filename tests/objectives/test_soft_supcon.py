"""SPACE-2 soft SupCon against a row loop of the spec formula (methods-language §15)."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives import NTXent, SupCon
from pairlab.objectives.soft_supcon import SoftSupCon, frame_views, tree_score, tree_score_matrix


def _unit(z):
    return z / z.norm(dim=-1, keepdim=True)


def ref_soft(z, s, tau):
    b, k, d = z.shape
    f = _unit(z.reshape(b * k, d))
    s = s.clone()
    s.fill_diagonal_(1.0)
    total = 0.0
    for r in range(b * k):
        logits = [f[r] @ f[c] / tau for c in range(b * k) if c != r]
        logz = torch.logsumexp(torch.stack(logits), 0)
        cols = [c for c in range(b * k) if c != r]
        w = [s[r // k, c // k] for c in cols]
        total = total - sum(wi * (lg - logz) for wi, lg in zip(w, logits, strict=True)) / sum(w)
    return total / (b * k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_row_loop_value_and_grad(k):
    torch.manual_seed(k)
    b = 5
    z = torch.randn(b, k, 4, dtype=torch.float64)
    s = torch.rand(b, b, dtype=torch.float64)
    s = (s + s.T) / 2
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    loss = SoftSupCon(0.1)(z1, scores=s)
    ref = ref_soft(z2, s, 0.1)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(torch.autograd.grad(loss, z1)[0], torch.autograd.grad(ref, z2)[0])


def test_identity_is_ntxent_and_label_equality_is_supcon():
    torch.manual_seed(0)
    z = torch.randn(8, 2, 6, dtype=torch.float64)
    torch.testing.assert_close(SoftSupCon(0.07)(z), NTXent(0.07)(z))
    torch.testing.assert_close(SoftSupCon(0.07)(z, scores=torch.eye(8, dtype=torch.float64)), NTXent(0.07)(z))
    y = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    torch.testing.assert_close(SoftSupCon(0.07)(z, y), SupCon(0.07)(z, y))


def test_label_similarity_matrix_and_callable_and_subspaces():
    torch.manual_seed(1)
    z = torch.randn(6, 2, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    m = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]], dtype=torch.float64)
    s = m[y][:, y]
    torch.testing.assert_close(SoftSupCon(0.1, label_similarity=m)(z, y), ref_soft(z, s, 0.1))
    obj = SoftSupCon(0.1, label_similarity=lambda a, b: (a == b).double() + 0.1 * (a != b).double())
    s2 = (y[:, None] == y[None, :]).double() + 0.1 * (y[:, None] != y[None, :]).double()
    torch.testing.assert_close(obj(z, y), ref_soft(z, s2, 0.1))
    z4 = torch.randn(6, 2, 3, 5, dtype=torch.float64)
    sv = torch.rand(3, 6, 6, dtype=torch.float64)
    expected = sum(ref_soft(z4[:, :, i], sv[i], 0.1) for i in range(3)) / 3
    torch.testing.assert_close(SoftSupCon(0.1)(z4, scores=sv), expected)


FRAME_A = {"hotel": {"inform": {"area": ["north"], "name": [{"value": "The Good Shop "}]}}}
FRAME_B = {"hotel": {"inform": {"area": ["south"]}, "request": {"price": []}}}


def test_tree_scores():
    assert tree_score(FRAME_A, FRAME_A) == 1.0
    assert tree_score(FRAME_A, {"taxi": {"book": {"time": ["5"]}}}) == 0.0
    assert tree_score(FRAME_A, {}) == 0.0
    views = frame_views(FRAME_A)
    assert "the good shop" in views[3] and "hotel-inform-name-the good shop" in views[9]
    per = tree_score(FRAME_A, FRAME_B, per_view=True)
    # domain {hotel}/{hotel}=1; act {inform}/{inform,request}=1/2; slot {area,name}/{area,price}=1/3;
    # value {north, the good shop}/{south} = 0; domain-act 1/2; act-slot {inform-area, inform-name} vs
    # {inform-area, request-price} = 1/3; slot-value 0; d-a-s 1/3; a-s-v 0; d-a-s-v 0
    expected = [1, 1 / 2, 1 / 3, 0, 1 / 2, 1 / 3, 0, 1 / 3, 0, 0]
    assert per == pytest.approx(expected)
    assert tree_score(FRAME_A, FRAME_B) == pytest.approx(sum(expected) / 10)
    # default nodes are ignored: the frame reduces to its slot/value parts
    d = {"DEFAULT_DOMAIN": {"DEFAULT_INTENT": {"area": ["north"]}}}
    vd = frame_views(d)
    assert vd[0] == set() and vd[1] == set() and vd[2] == {"area"} and vd[6] == {"area-north"} and vd[9] == set()
    mat = tree_score_matrix([FRAME_A, FRAME_B, {}])
    assert mat.shape == (3, 3) and torch.equal(mat, mat.T) and torch.all(mat.diagonal() == 1)
    assert float(mat[0, 1]) == pytest.approx(sum(expected) / 10) and float(mat[0, 2]) == 0.0
    assert tree_score_matrix([FRAME_A, FRAME_B], per_view=True).shape == (10, 2, 2)


def test_graded_positive_pulls_in_proportion_to_score():
    """Spec §15(d).3: raising S[0,1] raises the loss when 0 and 1 are far apart; training free
    embeddings pulls pairs together in the order of their scores."""
    z = torch.tensor([[[1.0, 0.0]] * 2, [[-1.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [[0.0, -1.0]] * 2])
    s = torch.eye(4)
    low = SoftSupCon(0.07)(z, scores=s)
    s_hi = s.clone()
    s_hi[0, 1] = s_hi[1, 0] = 1.0
    assert float(SoftSupCon(0.07)(z, scores=s_hi)) > float(low) + 3.0
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.randn(5, 2, 8))
    s = torch.eye(5)
    s[0, 1] = s[1, 0] = 0.8
    s[0, 2] = s[2, 0] = 0.3
    opt = torch.optim.Adam([emb], lr=0.05)
    obj = SoftSupCon(0.1)
    for _ in range(100):
        loss = obj(emb + 0.05 * torch.randn_like(emb), scores=s)
        opt.zero_grad()
        loss.backward()
        opt.step()
    f = _unit(emb.detach().mean(1))
    assert float(f[0] @ f[1]) > float(f[0] @ f[2]) > float(f[0] @ f[3])


def test_bad_inputs_and_registry():
    obj = SoftSupCon()
    with pytest.raises(ValueError, match=r"scores must have shape \[4, 4\]"):
        obj(torch.randn(4, 2, 3), scores=torch.ones(3, 3))
    with pytest.raises(ValueError, match=">= 0"):
        obj(torch.randn(4, 2, 3), scores=-torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"\[V, B, B\]"):
        obj(torch.randn(4, 2, 3, 5), scores=torch.ones(4, 4))
    with pytest.raises(ValueError, match="label_similarity"):
        SoftSupCon(label_similarity=torch.ones(2, 3))
    with pytest.raises(ValueError, match="lie in"):
        SoftSupCon(label_similarity=torch.eye(2))(torch.randn(3, 2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="no anchor"):
        obj(torch.randn(4, 1, 3))  # one view, identity scores: nobody has a positive
    bad = torch.randn(3, 2, 2)
    bad[0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        obj(bad)
    with pytest.raises(TypeError, match="mapping"):
        frame_views(["hotel"])
    assert registry.get("objectives", "soft-supcon").meta["input"] == "views"
    assert isinstance(registry.build("objectives", "soft-supcon", temperature=0.1), SoftSupCon)


@pytest.mark.parametrize(("name", "views", "args"), [('soft-supcon', 2, {})])
def test_reachable_from_training_config(name, views, args):
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    cfg = make_config({"objective": name, "views": views, "objective_args": args, "temperature": 0.3})
    obj, kind = build_objective(cfg)
    z = torch.randn(16, views, cfg.model.proj_dim, requires_grad=True)
    loss = call_objective(obj, kind, z, torch.randint(0, 4, (16,)))
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()
