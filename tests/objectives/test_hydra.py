"""Hydra / SimLAP: literal float64 reference with the [B, N, D] gated tensor (spec §1(b)), OpenGate reduction,
gate behaviour on a toy."""

import pytest
import torch

from pairlab import registry
from pairlab.objectives.hydra import SimLAP, gated_cosine, gated_multipos_loss


def _reference(q, keys, g, y, y2, yk, s, reduction="global"):
    """Official formula, literally: 3-D gated keys, row-mean shift, exp sums (spec §1(b))."""
    qt = torch.nn.functional.normalize(q * g, dim=-1)
    kt = torch.nn.functional.normalize(keys[None, :, :] * g[:, None, :], dim=-1)  # [B, N, D]
    l = s * torch.einsum("bd,bnd->bn", qt, kt)
    l = l - l.mean(dim=1, keepdim=True)
    c1 = (y[:, None] == yk[None, :]).double()
    c2 = (y2[:, None] == yk[None, :]).double()
    neg = (torch.exp(l) * (1 - torch.clamp(c1 + c2, max=1))).sum(1, keepdim=True)
    term = c2 * (torch.log(torch.exp(l) + neg) - l)
    if reduction == "global":
        return term.sum() / c2.sum()
    rows = c2.sum(1) > 0
    return (term.sum(1)[rows] / c2.sum(1)[rows]).mean()


def _data(b=8, n=10, d=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, dtype=torch.float64, generator=g, requires_grad=True)
    keys = torch.randn(n, d, dtype=torch.float64, generator=g, requires_grad=True)
    gates = torch.rand(b, d, dtype=torch.float64, generator=g).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g)
    y2 = torch.randint(0, c, (b,), generator=g)
    yk = torch.randint(0, c, (n,), generator=g)
    yk[:c] = torch.arange(c)  # every class has a key
    return q, keys, gates, y, y2, yk


@pytest.mark.parametrize("reduction", ["global", "per_anchor"])
def test_loss_matches_literal_reference_value_and_grad(reduction):
    q, keys, gates, y, y2, yk = _data()
    got, _ = gated_multipos_loss(q, keys, gates, y, y2, yk, 10.0, reduction)
    want = _reference(q, keys, gates, y, y2, yk, 10.0, reduction)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (q, keys, gates)), torch.autograd.grad(want, (q, keys, gates)),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_gated_cosine_equals_3d_form_and_no_negative_rows_give_zero():
    q, keys, gates, *_ = _data(seed=1)
    want = torch.einsum("bd,bnd->bn", torch.nn.functional.normalize(q * gates, dim=-1),
                        torch.nn.functional.normalize(keys[None] * gates[:, None], dim=-1))
    torch.testing.assert_close(gated_cosine(q, keys, gates), want)
    # every key is in the anchor's class or its partner's: no negative, the official term is 0
    y = torch.zeros(3, dtype=torch.long)
    loss, _ = gated_multipos_loss(q[:3], keys[:4], gates[:3], y, y, torch.zeros(4, dtype=torch.long), 10.0)
    assert float(loss.detach()) == 0.0


def test_open_gate_identical_pairs_is_per_positive_infonce_without_the_class_in_negatives():
    """Spec §1(d)4: hand-written per-positive InfoNCE reference."""
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 2, 5, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    obj = SimLAP(num_classes=3, dim=5, temperature=0.5, pair_type="identical", gate="open")
    got = obj(z, y)
    x = torch.nn.functional.normalize(z, dim=-1)
    total = 0.0
    for a, c in [(0, 1), (1, 0)]:
        num, cnt = 0.0, 0
        for i in range(6):
            negs = [torch.exp((x[i, a] * x[j, c]).sum() / 0.5) for j in range(6) if y[j] != y[i]]
            for j in range(6):
                if y[j] == y[i]:
                    s = (x[i, a] * x[j, c]).sum() / 0.5
                    num = num - torch.log(torch.exp(s) / (torch.exp(s) + sum(negs)))
                    cnt += 1
        total = total + num / cnt
    torch.testing.assert_close(got, total / 2)


def test_pair_types_and_warmup_detach():
    torch.manual_seed(0)
    obj = SimLAP(num_classes=5, dim=4, pair_type="distinct", gate_in_dim=8, gate_mlp_dim=8, warmup_epochs=2)
    y = torch.randint(0, 5, (50,))
    assert (obj.partners(y) != y).all()
    obj.pair_type = "arbitrary"
    assert sorted(obj.partners(y).tolist()) == sorted(y.tolist())
    z = torch.randn(8, 2, 4, requires_grad=True)
    obj.set_epoch(0)
    obj(z, torch.randint(0, 5, (8,))).backward()
    assert z.grad is None and obj.gate.embed.weight.grad is not None  # only the gate learns during warm-up
    obj.set_epoch(2)
    obj(z, torch.randint(0, 5, (8,))).backward()
    assert z.grad is not None


@pytest.mark.slow
def test_gates_separate_arbitrary_class_pairs():
    """Spec §1(d)3 and the paper's mechanism: trained on arbitrary class pairs, gates close some dims and the
    gated subspace of a pair (a, b) brings a and b closer than the full space does."""
    torch.manual_seed(0)
    c, d = 4, 16
    centers = torch.randn(c, 12) * 2
    enc = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, d),
                              torch.nn.LayerNorm(d))
    obj = SimLAP(num_classes=c, dim=d, temperature=0.1, gate_in_dim=32, gate_mlp_dim=32)
    opt = torch.optim.Adam(list(enc.parameters()) + list(obj.parameters()), lr=3e-3)
    for _ in range(80):
        y = torch.randint(0, c, (32,))
        base = centers[y]
        z = torch.stack([enc(base + 0.5 * torch.randn_like(base)) for _ in range(2)], 1)
        loss = obj(z, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    obj.eval()
    enc.eval()
    with torch.no_grad():
        means = enc(centers)
        act = obj.gate.activation()
        gains = []
        for a in range(c):
            for b in range(a + 1, c):
                gv = obj.gate(torch.tensor([a]), torch.tensor([b]))
                gated = gated_cosine(means[a:a + 1], means[b:b + 1], gv)
                full = torch.nn.functional.cosine_similarity(means[a], means[b], dim=0)
                gains.append(float(gated) - float(full))
    print(f"SimLAP toy: open dims {act:.2f}/{d}, mean gated-minus-full pair cosine {sum(gains) / len(gains):.3f}")
    assert act < 0.9 * d
    assert sum(gains) / len(gains) > 0.05


def test_registry_and_bad_input():
    obj = registry.build("objectives", "simlap", num_classes=3, dim=4, gate_in_dim=8, gate_mlp_dim=8)
    assert registry.get("objectives", "simlap").meta["input"] == "views"
    with pytest.raises(ValueError, match="labels"):
        obj(torch.randn(4, 2, 4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="embedding dim 4"):
        obj(torch.randn(4, 2, 5), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels is required"):
        obj(torch.randn(4, 2, 4), None)
    with pytest.raises(ValueError, match="NaN"):
        obj(torch.full((4, 2, 4), float("nan")), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="pair_type"):
        SimLAP(3, 4, pair_type="random")
    with pytest.raises(ValueError, match="partner class"):
        gated_multipos_loss(torch.randn(2, 3), torch.randn(2, 3), torch.ones(2, 3), torch.tensor([0, 0]),
                            torch.tensor([1, 1]), torch.tensor([0, 0]), 10.0)


@pytest.mark.slow  # ~10-20 s: a real CLI run (training, evaluation, checkpoint)
def test_pairlab_train_fills_num_classes_and_dim(tmp_path):
    """`pairlab train --objective simlap` needs no objective_args: num_classes from the data set (digits: 10),
    dim from model.proj_dim (16); a 3-step run ends with finite metrics."""
    import json
    import math

    from pairlab.cli import main
    from pairlab.train.checkpoint import load_checkpoint

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: digits\nepochs: 2\nbatch_size: 64\ntrain_subset: 128\nmax_steps: 3\n"
                   "model: {widths: [8, 16], hidden_dim: 32, proj_dim: 16}\n"
                   "objective_args: {gate_in_dim: 16, gate_mlp_dim: 16}\n"
                   "eval: {linear_max_iter: 30, geometry_samples: 64, plots: false}\n")
    rc = main(["train", "--config", str(cfg), "--objective", "simlap", "--runs-dir", str(tmp_path), "--name", "s",
               "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert m["steps"] == 3 and all(math.isfinite(m[k]) for k in ("linear_acc", "knn_acc", "alignment"))
    state = load_checkpoint(tmp_path / "s" / "checkpoint.pt")["objective"]
    assert state["gate.embed.weight"].shape == (10, 16)
    assert [v.shape[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 2][-1] == 16


def test_build_objective_fills_num_classes_and_dim():
    """Explicit objective_args win over the dataset context; without context num_classes is a clear error."""
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    obj, kind = build_objective(make_config({"objective": "simlap", "model": {"proj_dim": 8}}), {"num_classes": 5})
    assert (obj.num_classes, obj.dim) == (5, 8)
    loss = call_objective(obj, kind, torch.randn(6, 2, 8), torch.tensor([0, 1, 2, 3, 4, 0]), epoch=0)
    assert torch.isfinite(loss) and obj.epoch == 0
    obj, _ = build_objective(make_config({"objective": "simlap", "objective_args": {"num_classes": 3}}),
                             {"num_classes": 10})
    assert obj.num_classes == 3 and obj.dim == 64
    with pytest.raises(ValueError, match="num_classes"):
        build_objective(make_config({"objective": "simlap"}))
