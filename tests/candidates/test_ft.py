"""FT: closed forms of the extrapolated positives, convex negatives, gradient paths, official logits."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.candidates.ft import FeatureTransformation
from pairlab.candidates.queue import Queue
from pairlab.objectives import InfoNCE, NTXent


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_extrapolation_closed_forms_float64() -> None:
    torch.manual_seed(0)
    z = _unit(torch.randn(16, 2, 8, dtype=torch.float64))
    gen = FeatureTransformation(interpolate=False, seed=3)
    c = gen(z)
    lam = float(gen.last_lambda["pos"])
    assert 1.0 <= lam <= 2.0
    cos = (z[:, 0] * z[:, 1]).sum(-1)
    qh, kh = c.views[:, 0], c.views[:, 1]
    assert torch.allclose((qh * kh).sum(-1), cos + 2 * lam * (lam - 1) * (cos - 1), atol=1e-12)
    assert torch.allclose((qh * qh).sum(-1), 1 + 2 * lam * (lam - 1) * (1 - cos), atol=1e-12)
    assert bool(((qh * kh).sum(-1) <= cos + 1e-12).all())  # a harder positive
    assert c.extra is None


def test_dim_mask_pos_draws_per_element_and_uniform_range() -> None:
    z = torch.randn(4, 2, 5)
    gen = FeatureTransformation(dim_mask="pos", distribution="uniform", interpolate=False, seed=0)
    gen(z)
    lam = gen.last_lambda["pos"]
    assert lam.shape == (4, 5) and bool(((lam >= 1) & (lam <= 2)).all()) and lam.unique().numel() == 20


def test_queue_interpolation_is_convex_with_one_lambda_and_queue_gets_original_keys() -> None:
    torch.manual_seed(1)
    q = Queue(10, 6, init="random", seed=0, dtype=torch.float64)
    gen = FeatureTransformation(queue=q, seed=0)
    z = torch.randn(5, 2, 6, dtype=torch.float64)
    c = gen(z)
    lam = float(gen.last_lambda["neg"])
    n = _unit(q.negatives())
    assert c.extra.shape == (10, 6) and c.mask is None
    assert bool((c.extra.norm(dim=1) <= 1 + 1e-12).all())
    for row in c.extra:  # row = lam n_i + (1 - lam) n_j for some i, j
        found = any(torch.allclose(row, lam * n[i] + (1 - lam) * n[j], atol=1e-12)
                    for i in range(10) for j in range(10))
        assert found
    gen.update(z)
    assert torch.equal(q.negatives(ordered=True)[-5:], z[:, 1])  # un-mixed key view


def test_in_batch_interpolation_masks_mixes_of_the_anchors_own_sample() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 2, 4, dtype=torch.float64)
    gen = FeatureTransformation(extrapolate=False, seed=2)
    c = gen(z)
    flat = _unit(z.reshape(12, 4))
    lam = float(gen.last_lambda["neg"])
    for m in range(12):
        srcs = [(i, j) for i in range(12) for j in range(12)
                if torch.allclose(c.extra[m], lam * flat[i] + (1 - lam) * flat[j], atol=1e-12)]
        assert srcs
        i, j = srcs[0]
        for r in range(12):
            assert bool(c.mask[r, m]) == (r // 2 != i // 2 and r // 2 != j // 2)


def test_gradient_through_key_and_detach_ablation() -> None:
    z = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)

    def views(x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        return FeatureTransformation(interpolate=False, normalize_inputs=False, detach_q_in_key=detach, seed=5)(x).views

    assert torch.autograd.gradcheck(views, (z,))
    lam = float(FeatureTransformation(interpolate=False, seed=5)._sample(2.0, (1, 1), z) + 1)
    (g,) = torch.autograd.grad(views(z)[:, 1].sum(), z)  # d k^ / d q = 1 - lambda
    assert torch.allclose(g[:, 0], torch.full_like(g[:, 0], 1 - lam))
    (g,) = torch.autograd.grad(views(z, detach=True)[:, 1].sum(), z)
    assert torch.equal(g[:, 0], torch.zeros_like(g[:, 0]))


def test_official_moco_logits_with_dot_similarity() -> None:
    torch.manual_seed(2)
    q = Queue(7, 5, init="random", seed=1, dtype=torch.float64)
    gen = FeatureTransformation(queue=q, seed=4)
    z = torch.randn(4, 2, 5, dtype=torch.float64)
    c = gen(z)
    tau = 0.2
    loss = InfoNCE(temperature=tau, similarity="dot")(c.views[:, 0], c.views[:, 1], negative_keys=c.extra)
    lp, ln = float(gen.last_lambda["pos"]), float(gen.last_lambda["neg"])
    qn, kn = _unit(z[:, 0]), _unit(z[:, 1])
    ref = 0.0
    for i in range(4):
        qh, kh = lp * qn[i] + (1 - lp) * kn[i], lp * kn[i] + (1 - lp) * qn[i]
        logits = [float(qh @ kh) / tau] + [float(qh @ c.extra[j]) / tau for j in range(7)]
        ref += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(ref / 4, rel=1e-12)
    assert 0 < ln < 1


def test_ft_plugs_into_ntxent_and_lowers_pos_mean() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 2, 6)
    obj = NTXent(temperature=0.5)
    obj(z)
    base = obj.last_stats["pos_score_mean"]
    c = FeatureTransformation(seed=0)(z)
    loss = obj(c.views_or(z), **c.objective_kwargs())
    assert torch.isfinite(loss) and obj.last_stats["pos_score_mean"] < base


def test_registry_defaults_and_bad_inputs() -> None:
    gen = registry.build("candidates", "ft")
    assert (gen.pos_alpha, gen.neg_alpha, gen.dim_mask) == (2.0, 1.6, "none")
    with pytest.raises(ValueError, match="K = 2"):
        gen(torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="pos_alpha"):
        FeatureTransformation(pos_alpha=0)
    with pytest.raises(ValueError, match="dim_mask"):
        FeatureTransformation(dim_mask="all")
    with pytest.raises(ValueError, match="dim"):
        FeatureTransformation(queue_size=5)
