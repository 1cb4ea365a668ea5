"""NT-Xent, SupCon, CLIP, InfoNCE against brute-force per-pair loops (float64), equivalences,
half precision, bad input, and parity with pytorch-metric-learning, open_clip and info-nce-pytorch."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from pairlab import CLIPLoss, InfoNCE, NTXent, SupCon


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def brute_multi_positive(zf, keys, tau, aggregation):
    """loop over anchors i and candidates j != i; positives share the key."""
    zf = _unit(zf)
    n = zf.shape[0]
    total, used = 0.0, 0
    for i in range(n):
        cands = [j for j in range(n) if j != i]
        s = {j: (zf[i] @ zf[j]) / tau for j in cands}
        pos = [j for j in cands if keys[i] == keys[j]]
        if not pos:
            continue
        used += 1
        log_z = torch.logsumexp(torch.stack([s[j] for j in cands]), 0)
        if aggregation == "mean_log":
            total = total + sum(log_z - s[j] for j in pos) / len(pos)
        else:
            total = total + log_z - (torch.logsumexp(torch.stack([s[j] for j in pos]), 0) - math.log(len(pos)))
    return total / used


def brute_clip(a, b, tau):
    a, b = _unit(a), _unit(b)
    n = a.shape[0]
    loss = 0.0
    for i in range(n):
        row = torch.stack([a[i] @ b[j] / tau for j in range(n)])
        col = torch.stack([b[i] @ a[j] / tau for j in range(n)])
        loss = loss + (torch.logsumexp(row, 0) - row[i]) + (torch.logsumexp(col, 0) - col[i])
    return loss / (2 * n)


def _z(b=6, k=2, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, d, generator=g, dtype=dtype).requires_grad_(True)


def _check_value_and_grad(fn, ref_fn, *inputs):
    out = fn(*inputs)
    (g,) = torch.autograd.grad(out, inputs[0])
    ref = ref_fn(*inputs)
    (gr,) = torch.autograd.grad(ref, inputs[0])
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(g, gr, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_ntxent_brute_force(k, tau):
    z = _z(k=k)
    ids = torch.arange(6).repeat_interleave(k)
    _check_value_and_grad(
        lambda z: NTXent(tau, backend="dense")(z),
        lambda z: brute_multi_positive(z.reshape(-1, 5), ids, tau, "mean_log"),
        z,
    )


@pytest.mark.parametrize("aggregation", ["mean_log", "log_mean"])
def test_supcon_brute_force(aggregation):
    z = _z(b=8, k=2)
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 3, 0])
    lab = labels.repeat_interleave(2)
    _check_value_and_grad(
        lambda z: SupCon(0.1, aggregation=aggregation, backend="dense")(z, labels),
        lambda z: brute_multi_positive(z.reshape(-1, 5), lab, 0.1, aggregation),
        z,
    )


def test_supcon_single_view_excludes_and_counts_anchor_without_positive():
    z = _z(b=5, k=1)
    labels = torch.tensor([0, 0, 1, 1, 2])  # sample 4 has no positive
    loss_fn = SupCon(0.1, backend="dense")
    loss = loss_fn(z, labels)
    assert loss_fn.last_stats["anchors_without_positive"] == 1
    assert loss_fn.last_stats["anchors_used"] == 4
    ref = brute_multi_positive(z.reshape(-1, 5), labels, 0.1, "mean_log")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)


def test_ntxent_equals_supcon_on_instance_labels():
    z = _z(b=7)
    a = NTXent(0.2, backend="dense")(z)
    b = SupCon(0.2, backend="dense")(z, torch.arange(7))
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_clip_brute_force_and_infonce_both_ways():
    z = _z(b=6)
    a, b = z[:, 0], z[:, 1]
    _check_value_and_grad(
        lambda z: CLIPLoss(0.1, backend="dense")(z[:, 0], z[:, 1]), lambda z: brute_clip(z[:, 0], z[:, 1], 0.1), z
    )
    nce_ = InfoNCE(0.1)
    both = (nce_(a, b) + nce_(b, a)) / 2
    assert CLIPLoss(0.1)(a, b).item() == pytest.approx(both.item(), rel=1e-12)


def test_infonce_explicit_negatives_brute_force():
    g = torch.Generator().manual_seed(3)
    q, p = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    neg = torch.randn(5, 6, generator=g, dtype=torch.float64)
    paired = torch.randn(4, 3, 6, generator=g, dtype=torch.float64)
    qn, pn, nn_, pdn = _unit(q), _unit(p), _unit(neg), _unit(paired)
    ref_u = (
        sum(
            torch.logsumexp(torch.cat([(qn[i] @ pn[i]).view(1), nn_ @ qn[i]]) / 0.1, 0) - qn[i] @ pn[i] / 0.1
            for i in range(4)
        )
        / 4
    )
    ref_p = (
        sum(
            torch.logsumexp(torch.cat([(qn[i] @ pn[i]).view(1), pdn[i] @ qn[i]]) / 0.1, 0) - qn[i] @ pn[i] / 0.1
            for i in range(4)
        )
        / 4
    )
    assert InfoNCE(0.1)(q, p, neg).item() == pytest.approx(ref_u.item(), rel=1e-12)
    assert InfoNCE(0.1, negative_mode="paired")(q, p, paired).item() == pytest.approx(ref_p.item(), rel=1e-12)


def test_extra_columns_are_negatives():
    z = _z(b=4)
    extra = torch.randn(3, 5, dtype=torch.float64)
    zf = _unit(z.reshape(-1, 5))
    en = _unit(extra)
    total = 0.0
    for i in range(8):
        cands = torch.cat([zf[[j for j in range(8) if j != i]] @ zf[i], en @ zf[i]]) / 0.1
        total = total + torch.logsumexp(cands, 0) - zf[i] @ zf[i ^ 1] / 0.1
    assert NTXent(0.1, backend="dense")(z, extra=extra).item() == pytest.approx((total / 8).item(), rel=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_matches_float32(dtype, tol):
    torch.manual_seed(0)
    z = torch.randn(64, 2, 32)
    ref = NTXent(0.05)(z)
    half = NTXent(0.05)(z.to(dtype))
    assert half.dtype == torch.float32  # scores and reductions never in half precision
    # the difference comes only from rounding the inputs to half precision
    assert half.item() == pytest.approx(NTXent(0.05)(z.to(dtype).float()).item(), rel=1e-6)
    assert half.item() == pytest.approx(ref.item(), rel=tol)


def test_half_precision_no_cap_at_tiny_temperature():
    """PML caps each pair at -log(tiny) = 9.70 in fp16; pairlab's fp16 loss follows the fp64 value."""
    torch.manual_seed(1)
    z = torch.randn(128, 2, 16)
    ref = NTXent(0.01)(z.double()).item()
    assert ref > 9.70 * 1.5
    assert NTXent(0.01)(z.half()).item() == pytest.approx(ref, rel=5e-3)


def test_permutation_invariance():
    z = _z(b=9, k=2)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    perm = torch.randperm(9)
    for fn in (lambda z, l: NTXent(0.1)(z), lambda z, l: SupCon(0.1)(z, l)):
        assert fn(z, labels).item() == pytest.approx(fn(z[perm], labels[perm]).item(), rel=1e-12)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: CLIPLoss()(torch.randn(8, 16), torch.randn(6, 16)), "batch sizes must match"),
        (lambda: CLIPLoss()(torch.randn(8, 16), torch.randn(8, 12)), "embedding dims must match"),
        (lambda: NTXent()(torch.randn(8, 16)), r"z must have shape \[B, K, D\]"),
        (lambda: CLIPLoss()(torch.randn(8, 2, 16), torch.randn(8, 16)), r"a must have shape \[B, D\]"),
        (lambda: NTXent()(torch.randn(8, 1, 16)), "K >= 2"),
        (lambda: NTXent(temperature=0.0), "temperature must be a finite number > 0"),
        (lambda: NTXent(temperature=-1), "temperature must be"),
        (lambda: SupCon()(torch.randn(4, 1, 8), torch.arange(4)), "no anchor"),
        (lambda: SupCon()(torch.randn(4, 2, 8), torch.arange(3)), r"labels must have shape \[4\]"),
        (lambda: SupCon()(torch.randn(4, 2, 8), None), "labels is required"),
        (lambda: InfoNCE()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8, 3)), "negative_keys"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_nan_row_is_reported():
    z = torch.randn(6, 2, 8)
    z[3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"z contains NaN or Inf in rows \[3\]"):
        NTXent()(z)
    a = torch.randn(4, 8)
    a[1] = float("inf")
    with pytest.raises(ValueError, match=r"a contains NaN or Inf in rows \[1\]"):
        CLIPLoss()(a, torch.randn(4, 8))


def test_labels_dtype_error():
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        SupCon()(torch.randn(4, 2, 8), torch.zeros(4))


def test_learnable_temperature_gets_gradient_and_is_clamped():
    loss_fn = CLIPLoss(0.07, learnable_temperature=True)
    loss_fn(torch.randn(8, 4), torch.randn(8, 4)).backward()
    assert loss_fn.temperature.log_scale.grad is not None
    with torch.no_grad():
        loss_fn.temperature.log_scale.fill_(10.0)
    assert loss_fn.temperature.scale().item() == pytest.approx(100.0)


# ---------------------------------------------------------------- peer parity


def test_parity_pml_supcon():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    torch.manual_seed(0)
    z = torch.randn(16, 2, 32, dtype=torch.float64)
    labels = torch.randint(0, 4, (16,))
    ours = SupCon(0.1)(z, labels)
    theirs = pml.SupConLoss(temperature=0.1)(z.reshape(-1, 32), labels.repeat_interleave(2))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)


def _open_clip_loss_module():
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open-clip-torch not installed")
    # open_clip's package __init__ imports torchvision; its loss.py does not: load that file alone
    path = Path(spec.submodule_search_locations[0]) / "loss.py"
    mspec = importlib.util.spec_from_file_location("open_clip_loss_only", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def test_parity_open_clip():
    mod = _open_clip_loss_module()
    torch.manual_seed(0)
    a, b = torch.randn(32, 16, dtype=torch.float64), torch.randn(32, 16, dtype=torch.float64)
    theirs = mod.ClipLoss()(_unit(a), _unit(b), logit_scale=torch.tensor(1 / 0.07, dtype=torch.float64))
    assert CLIPLoss(0.07)(a, b).item() == pytest.approx(theirs.item(), rel=1e-9)


def test_parity_info_nce_pytorch():
    info_nce = pytest.importorskip("info_nce")
    torch.manual_seed(0)
    q, p, n = torch.randn(8, 16), torch.randn(8, 16), torch.randn(20, 16)
    assert InfoNCE(0.1)(q, p, n).item() == pytest.approx(info_nce.info_nce(q, p, n, 0.1).item(), rel=1e-5)
    assert InfoNCE(0.1)(q, p).item() == pytest.approx(info_nce.info_nce(q, p, None, 0.1).item(), rel=1e-5)


def test_weights_callable_gets_scores_and_masks():
    """A weights component is called with (detached scores, targets, valid) and its W is used."""
    z = _z(b=5)
    seen = {}

    def hard(scores, targets, valid):
        seen["shapes"] = (scores.shape, targets.shape, valid.shape, scores.requires_grad)
        return torch.where(targets, torch.ones_like(scores), torch.exp(scores))  # harder negatives weigh more

    zf = _unit(z.reshape(-1, 5))
    s = zf @ zf.T / 0.1
    w = torch.where(torch.eye(10, dtype=torch.bool), torch.zeros_like(s), torch.exp(s.detach()))
    ids = torch.arange(5).repeat_interleave(2)
    pos = (ids[:, None] == ids[None, :]) & ~torch.eye(10, dtype=torch.bool)
    w = torch.where(pos, torch.ones_like(w), w)
    ref = (torch.logsumexp(s + torch.log(w), 1) - s[pos].view(10)).mean()
    out = NTXent(0.1)(z, weights=hard)
    assert seen["shapes"] == ((10, 10), (10, 10), (10, 10), False)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)


def test_weights_with_forced_tiled_backend_raise():
    with pytest.raises(ValueError, match="weights need the dense path"):
        NTXent(0.1, backend="tiled")(torch.randn(4, 2, 8), weights=torch.ones(8, 8))


def test_clip_dense_and_tiled_agree_with_two_direction_reference():
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    dense, tiled = CLIPLoss(0.1, backend="dense"), CLIPLoss(0.1, backend="tiled")
    dense(a, b), tiled(a, b)
    sa, sb = _unit(a) @ _unit(b).T / 0.1, _unit(b) @ _unit(a).T / 0.1
    ref = (torch.logsumexp(sa, 1) - sa.diagonal() + torch.logsumexp(sb, 1) - sb.diagonal()) / 2
    assert ref.mean().item() == pytest.approx(dense(a, b).item(), rel=1e-12)
    assert tiled(a, b).item() == pytest.approx(dense(a, b).item(), rel=1e-10)
