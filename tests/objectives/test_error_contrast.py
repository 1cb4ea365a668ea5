"""ErrorContrast (SoftREPA): float64 reference loops for value and gradient, the spec's saturation numbers,
bad-input rules (DESIGN §4) and registration."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.error_contrast import ErrorContrast, error_contrast_loss

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def reference_loss(err, temp=0.07, scale=4.0, form="exp", diag_weight=0.0, targets=None) -> float:
    """Brute-force float64 loop: cross-entropy per row with python math, plus the diagonal error term."""
    b, m = len(err), len(err[0])
    targets = list(range(b)) if targets is None else targets
    total = 0.0
    for i in range(b):
        logits = [scale * math.exp(-err[i][j] / temp) if form == "exp" else -err[i][j] / temp for j in range(m)]
        mx = max(logits)
        lse = mx + math.log(sum(math.exp(v - mx) for v in logits))
        total += lse - logits[targets[i]] + diag_weight * err[i][targets[i]]
    return total / b


def reference_grad(err, temp=0.07, scale=4.0, form="exp", diag_weight=0.0, targets=None):
    """Closed-form gradient: dL/derr_ij = (softmax_ij - [j = t_i]) * dlogit_ij/derr_ij / B + dw [j = t_i] / B."""
    b, m = len(err), len(err[0])
    targets = list(range(b)) if targets is None else targets
    g = [[0.0] * m for _ in range(b)]
    for i in range(b):
        logits = [scale * math.exp(-err[i][j] / temp) if form == "exp" else -err[i][j] / temp for j in range(m)]
        z = sum(math.exp(v) for v in logits)
        for j in range(m):
            dl = -logits[j] / temp if form == "exp" else -1.0 / temp
            hit = 1.0 if j == targets[i] else 0.0
            g[i][j] = ((math.exp(logits[j]) / z - hit) * dl + diag_weight * hit) / b
    return g


@pytest.mark.parametrize("form", ["exp", "log"])
@pytest.mark.parametrize("diag_weight", [0.0, 10.0])
@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (1, 2)])
def test_value_and_gradient_match_reference(form, diag_weight, shape):
    g = torch.Generator().manual_seed(hash((form, diag_weight, shape)) % 2**31)
    err = (torch.rand(shape, generator=g, dtype=torch.float64) * 0.4).requires_grad_(True)
    loss = error_contrast_loss(err, form=form, diag_weight=diag_weight)
    loss.backward()
    ref = reference_loss(err.tolist(), form=form, diag_weight=diag_weight)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(ref, rel=1e-12, abs=1e-12)
    ref_g = torch.tensor(reference_grad(err.tolist(), form=form, diag_weight=diag_weight), dtype=torch.float64)
    torch.testing.assert_close(err.grad, ref_g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("form", ["exp", "log"])
def test_explicit_targets_and_custom_temp_scale(form):
    g = torch.Generator().manual_seed(1)
    err = torch.rand(5, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    targets = torch.tensor([2, 0, 1, 1, 0])
    scale = 2.5 if form == "exp" else None
    loss = error_contrast_loss(err, temp=0.2, scale=scale, form=form, diag_weight=0.5, targets=targets)
    loss.backward()
    kw = dict(temp=0.2, scale=2.5 if form == "exp" else 1.0, form=form, diag_weight=0.5, targets=targets.tolist())
    assert loss.item() == pytest.approx(reference_loss(err.tolist(), **kw), rel=1e-12)
    torch.testing.assert_close(err.grad, torch.tensor(reference_grad(err.tolist(), **kw), dtype=torch.float64))


@pytest.mark.parametrize("form", ["exp", "log"])
def test_gradcheck(form):
    err = (torch.rand(3, 4, dtype=torch.float64) * 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: error_contrast_loss(e, form=form, diag_weight=2.0), (err,))


def test_reductions_and_row_permutation_invariance():
    g = torch.Generator().manual_seed(2)
    err = torch.rand(6, 6, generator=g, dtype=torch.float64) * 0.3
    per_row = error_contrast_loss(err, reduction="none", diag_weight=1.0)
    assert per_row.shape == (6,)
    assert error_contrast_loss(err, reduction="sum", diag_weight=1.0).item() == pytest.approx(per_row.sum().item())
    assert error_contrast_loss(err, diag_weight=1.0).item() == pytest.approx(per_row.mean().item())
    # relabelling samples and conditions together (same permutation) leaves the loss unchanged
    p = torch.randperm(6, generator=g)
    assert error_contrast_loss(err[p][:, p], diag_weight=1.0).item() == pytest.approx(per_row.mean().item(), rel=1e-12)


def test_saturation_numbers_of_the_spec():
    # spec §13(c): diagonal 0.3 vs off-diagonal 0.5, B = 4 -> 1.348 vs ln 4 = 1.386
    err = torch.full((4, 4), 0.5, dtype=torch.float64)
    err.fill_diagonal_(0.3)
    assert error_contrast_loss(err).item() == pytest.approx(1.348, abs=5e-4)
    assert math.log(4) == pytest.approx(1.386, abs=5e-4)
    logits_diag, logits_off = 4 * math.exp(-0.3 / 0.07), 4 * math.exp(-0.5 / 0.07)
    assert logits_diag == pytest.approx(0.0551, abs=1e-4) and logits_off == pytest.approx(0.0032, abs=1e-4)
    # the log form keeps a strong signal on the same matrix
    assert error_contrast_loss(err, form="log").item() == pytest.approx(0.159, abs=5e-4)
    # err = 1 everywhere but a slightly better diagonal: exp(-1/0.07) = 6.2e-7, loss = log B, gradient vanishes
    assert math.exp(-1 / 0.07) == pytest.approx(6.2e-7, rel=1e-2)
    err = torch.full((4, 4), 1.0, dtype=torch.float64)
    err.fill_diagonal_(0.8)
    err.requires_grad_(True)
    loss = error_contrast_loss(err)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(4), abs=1e-4)
    assert err.grad.abs().max().item() < 1e-3
    err_log = err.detach().clone().requires_grad_(True)
    error_contrast_loss(err_log, form="log").backward()
    assert err_log.grad.abs().max().item() > 1e3 * err.grad.abs().max().item()  # the log form keeps a gradient
    # floor of the faithful form: even a perfect diagonal cannot go below log(1 + (B - 1) e^-4)
    best = torch.full((4, 4), 100.0, dtype=torch.float64)
    best.fill_diagonal_(0.0)
    assert error_contrast_loss(best).item() == pytest.approx(math.log(1 + 3 * math.exp(-4)), rel=1e-9)
    assert error_contrast_loss(best).item() == pytest.approx(0.053, abs=5e-4)


def test_module_matches_function_stats_and_half_precision():
    g = torch.Generator().manual_seed(3)
    err = torch.rand(4, 4, generator=g) * 0.2
    obj = ErrorContrast(form="log", diag_weight=10.0)
    assert obj(err).item() == pytest.approx(error_contrast_loss(err, form="log", diag_weight=10.0).item())
    assert set(obj.last_stats) >= {"pos_err_mean", "neg_err_mean", "accuracy", "pos_logit_mean"}
    assert obj.last_stats["accuracy"] == pytest.approx(float((err.argmin(1) == torch.arange(4)).float().mean()))
    out = ErrorContrast()(err.half())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(error_contrast_loss(err.half().double()).item(), rel=1e-5)


def test_registered_with_errors_input():
    entry = registry.get("objectives", "error-contrast")
    assert entry.obj is ErrorContrast
    assert entry.meta["input"] == "errors"
    assert isinstance(registry.build("objectives", "error-contrast", form="log"), ErrorContrast)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(err=[[0.1, 0.2]]), TypeError, "err must be a torch.Tensor"),
        (dict(err=torch.ones(2, 2, dtype=torch.long)), TypeError, "err must be a floating tensor"),
        (dict(err=torch.ones(4)), ValueError, r"err must have shape \[B, M\]"),
        (dict(err=torch.tensor([[0.1, float("nan")], [0.1, 0.2]])), ValueError, "NaN or Inf in rows"),
        (dict(err=torch.tensor([[-0.1, 0.2], [0.1, 0.2]])), ValueError, "err must be >= 0 for form='exp'"),
        (dict(err=torch.rand(3, 2)), ValueError, r"M >= B"),
        (dict(err=torch.rand(1, 1)), ValueError, "at least 2 condition columns"),
        (dict(err=torch.rand(2, 2), temp=0.0), ValueError, "temp must be a finite number > 0"),
        (dict(err=torch.rand(2, 2), scale=-1.0), ValueError, "scale must be a finite number > 0"),
        (dict(err=torch.rand(2, 2), form="log", scale=4.0), ValueError, "scale applies to form='exp' only"),
        (dict(err=torch.rand(2, 2), form="sigmoid"), ValueError, r"form must be one of \['exp', 'log'\]"),
        (dict(err=torch.rand(2, 2), diag_weight=-1.0), ValueError, "diag_weight must be a finite number >= 0"),
        (dict(err=torch.rand(2, 2), reduction="max"), ValueError, "reduction must be one of"),
        (dict(err=torch.rand(3, 2), targets=torch.tensor([0, 1])), ValueError, r"targets must have shape \[3\]"),
        (dict(err=torch.rand(2, 2), targets=torch.tensor([0, 2])), ValueError, r"targets must lie in \[0, 2\)"),
        (dict(err=torch.rand(2, 2), targets=torch.tensor([0.0, 1.0])), TypeError, "targets must be an integer"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        error_contrast_loss(**kwargs)


def test_signed_errors_allowed_in_log_form():
    err = torch.tensor([[-0.5, 0.2], [0.3, -0.1]], dtype=torch.float64)
    assert error_contrast_loss(err, form="log").item() == pytest.approx(reference_loss(err.tolist(), form="log"))


def test_module_rejects_bad_options():
    with pytest.raises(ValueError, match="form must be one of"):
        ErrorContrast(form="lin")
    with pytest.raises(ValueError, match="scale applies to form='exp' only"):
        ErrorContrast(form="log", scale=2.0)
    with pytest.raises(ValueError, match="temp must be a finite number > 0"):
        ErrorContrast(temp=float("inf"))
