"""Properties of every registered objective / candidates / weights / miner component (via ``cases.py``).

For each component (a :class:`cases.Case`):

1. **finite**: value and gradient are finite over hypothesis-drawn shapes, temperatures (1e-3 .. 1e3, log-uniform),
   dtypes (float16, bfloat16, float32, float64) and adversarial embeddings (duplicate rows, antipodal rows, zero
   rows, rows with huge norms, and all of them at once);
2. **permutation**: permuting the batch (with its labels) leaves the loss unchanged and permutes the gradient;
3. **scale**: for cosine scores, ``z -> c z`` (c in 1e-3 .. 1e3) leaves loss and gradient direction unchanged;
4. **gradcheck**: ``torch.autograd.gradcheck`` in float64 on a small batch;
5. **half**: float16 / bfloat16 inputs give a loss within ``half_rtol * (1 + |L|)`` of float32 on the same values
   (``HALF_TOL`` below; the tolerance covers the rounding of the inputs to half precision).

A component whose case switches a property off says why (``case.why``); ``test_every_case_explains_its_skips``
keeps that honest. ``test_every_registered_component_has_a_case`` fails when a component is registered without a
case in ``cases.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import cases  # noqa: E402

CASES = list(cases.CASES.values())
IDS = [c.id for c in CASES]
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
ADVERSARIAL = ("random", "duplicates", "antipodes", "zero_rows", "huge_norms", "all")
HUGE = {torch.float16: 1e3, torch.bfloat16: 1e3, torch.float32: 1e15, torch.float64: 1e15}
MAX_EXAMPLES = 5

SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

temperatures = st.floats(min_value=-3.0, max_value=3.0).map(lambda e: 10.0**e)


def _module(case: cases.Case, temperature: float | None, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    m = case.build(temperature if case.temperature else None)
    return m.to(torch.float64 if dtype == torch.float64 else torch.float32)


def _adversarial(z: torch.Tensor, mode: str) -> torch.Tensor:
    """Apply an adversarial pattern to ``z [B, K, D]`` (computed in float64, then cast back)."""
    dtype = z.dtype
    x = z.double().clone()
    b = x.shape[0]
    if mode in ("duplicates", "all"):
        x[1] = x[0]  # sample 1 == sample 0 (every view)
        x[0, -1] = x[0, 0]  # two views of a sample identical
    if mode in ("antipodes", "all"):
        x[2 % b] = -x[0]
    if mode in ("zero_rows", "all"):
        x[3 % b, 0] = 0.0
    if mode in ("huge_norms", "all"):
        x[b - 1] = x[b - 1] * HUGE[dtype]
    return x.to(dtype)


def _loss_and_grad(case, m, z, labels):
    z = z.detach().clone().requires_grad_(True)
    loss = case.loss(m, z, labels)
    assert loss.ndim == 0, f"{case.id}: loss must be a scalar, got shape {tuple(loss.shape)}"
    if loss.requires_grad:
        (g,) = torch.autograd.grad(loss, z, allow_unused=True)
    else:
        g = None
    return loss.detach(), (torch.zeros_like(z) if g is None else g)


# ------------------------------------------------------------------------------------------------ coverage
def test_every_registered_component_has_a_case():
    missing = sorted(set(cases.registered()) - set(cases.ALL_CASES))
    assert not missing, f"registered without a case in tests/reliability/cases.py: {missing}"
    assert len(cases.CASES) >= 35  # the committed core components at least


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_case_explains_its_skips(case):
    off = {"permutation": not case.permutation, "gradcheck": not case.gradcheck, "half": case.half_rtol is None,
           "cosine": not case.cosine}
    for prop, is_off in off.items():
        if is_off and prop != "cosine":
            assert prop in case.why, f"{case.id} switches off {prop!r} without saying why"
    # cosine off is a statement about the scores; a case must say why unless it is a margin/miner (distances)
    if not case.cosine and case.kind == "objectives" and case.temperature:
        assert "cosine" in case.why, f"{case.id}: non-cosine scores need a reason"


# ------------------------------------------------------------------------------------------------ 1. finite
@pytest.mark.parametrize("case", CASES, ids=IDS)
@SETTINGS
@given(
    b=st.integers(4, 9),
    d=st.integers(2, 9),
    temperature=temperatures,
    dtype=st.sampled_from(DTYPES),
    mode=st.sampled_from(ADVERSARIAL),
    seed=st.integers(0, 2**16),
)
def test_finite_value_and_gradient(case, b, d, temperature, dtype, mode, seed):
    if not case.half_inputs and dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    m = _module(case, temperature, dtype)
    z, labels = cases.make_batch(case, b, d, dtype, seed)
    z = _adversarial(z, mode)
    loss, g = _loss_and_grad(case, m, z, labels)
    assert torch.isfinite(loss), f"{case.id}: loss {loss} ({dtype}, tau={temperature:.3g}, {mode})"
    bad = (~torch.isfinite(g)).nonzero()[:3].tolist()
    assert not bad, f"{case.id}: non-finite gradient at {bad} ({dtype}, tau={temperature:.3g}, {mode})"


def _zero_rows(z: torch.Tensor) -> torch.Tensor:
    return (z == 0).all(dim=-1)


@pytest.mark.parametrize("name", ["objectives/ntxent", "objectives/infonce", "objectives/triplet-margin"])
def test_zero_row_gradient_float16(name):
    case = cases.CASES[name]
    m = _module(case, 0.1, torch.float16)
    z, labels = cases.make_batch(case, 6, 8, torch.float16, 0)
    z = _adversarial(z, "zero_rows")
    loss, g = _loss_and_grad(case, m, z, labels)
    assert torch.isfinite(loss)
    assert torch.isfinite(g).all(), f"non-finite gradient rows {(~torch.isfinite(g)).nonzero()[:3].tolist()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pmrl_zero_view_gradient(dtype):
    case = cases.CASES["objectives/pmrl"]
    m = _module(case, 1.0, dtype)
    z, labels = cases.make_batch(case, 6, 4, dtype, 0)
    z = _adversarial(z, "zero_rows")
    loss, g = _loss_and_grad(case, m, z, labels)
    assert torch.isfinite(loss)
    assert torch.isfinite(g).all(), f"non-finite gradient rows {(~torch.isfinite(g)).any(-1).nonzero().tolist()}"


def test_claps_half_embeddings():
    case = cases.CASES["candidates/claps"]
    m = _module(case, 0.1, torch.float16)
    z, labels = cases.make_batch(case, 6, 8, torch.float16, 0)
    loss, g = _loss_and_grad(case, m, z, labels)
    assert torch.isfinite(loss) and torch.isfinite(g).all()


# ------------------------------------------------------------------------------------------------ 2. permutation
@pytest.mark.parametrize("case", [c for c in CASES if c.permutation], ids=[c.id for c in CASES if c.permutation])
@SETTINGS
@given(b=st.integers(4, 9), d=st.integers(2, 9), temperature=st.floats(-1.5, 1.0).map(lambda e: 10.0**e),
       seed=st.integers(0, 2**16), duplicates=st.booleans())
def test_batch_permutation_invariance(case, b, d, temperature, seed, duplicates):
    m = _module(case, temperature, torch.float64)
    z, labels = cases.make_batch(case, b, d, torch.float64, seed)
    if duplicates:
        z = _adversarial(z, "duplicates")
    perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    l1, g1 = _loss_and_grad(case, m, z, labels)
    m = _module(case, temperature, torch.float64)
    l2, g2 = _loss_and_grad(case, m, z[perm], labels[perm])
    torch.testing.assert_close(l2, l1, rtol=1e-9, atol=1e-9, msg=lambda s: f"{case.id} loss: {s}")
    if not duplicates:  # with duplicate rows a tie may move the gradient between the twins
        torch.testing.assert_close(g2, g1[perm], rtol=1e-7, atol=1e-9, msg=lambda s: f"{case.id} grad: {s}")


# ------------------------------------------------------------------------------------------------ 3. scale
@pytest.mark.parametrize("case", [c for c in CASES if c.cosine], ids=[c.id for c in CASES if c.cosine])
@SETTINGS
@given(b=st.integers(4, 9), d=st.integers(2, 9), scale=st.floats(-3.0, 3.0).map(lambda e: 10.0**e),
       seed=st.integers(0, 2**16))
def test_cosine_scale_invariance(case, b, d, scale, seed):
    m = _module(case, None, torch.float64)
    z, labels = cases.make_batch(case, b, d, torch.float64, seed)
    l1, g1 = _loss_and_grad(case, m, z, labels)
    m = _module(case, None, torch.float64)
    l2, g2 = _loss_and_grad(case, m, z * scale, labels)
    torch.testing.assert_close(l2, l1, rtol=1e-9, atol=1e-9, msg=lambda s: f"{case.id} loss at scale {scale}: {s}")
    # d L(c z)/dz' = (1/c) dL/dz: the gradient shrinks by the scale
    torch.testing.assert_close(g2 * scale, g1, rtol=1e-6, atol=1e-9, msg=lambda s: f"{case.id} grad: {s}")


# ------------------------------------------------------------------------------------------------ 4. gradcheck
@pytest.mark.parametrize("case", [c for c in CASES if c.gradcheck], ids=[c.id for c in CASES if c.gradcheck])
@pytest.mark.parametrize("seed", [0])
def test_gradcheck_float64(case, seed):
    torch.manual_seed(0)
    m = (case.exact or case.build)(None).to(torch.float64)
    z, labels = cases.make_batch(case, 4, 3, torch.float64, seed)
    z = z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: case.loss(m, x, labels), (z,), eps=1e-6, atol=1e-5, rtol=1e-4,
                                    fast_mode=True)


# ------------------------------------------------------------------------------------------------ 5. half
HALF_TOL = {torch.float16: 0.2, torch.bfloat16: 1.0}  # multiples of case.half_rtol (bf16 has 3 fewer mantissa bits)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", [c for c in CASES if c.half_rtol is not None],
                         ids=[c.id for c in CASES if c.half_rtol is not None])
@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(b=st.integers(4, 16), d=st.integers(4, 32), seed=st.integers(0, 2**16))
def test_half_precision_close_to_float32(case, dtype, b, d, seed):
    m = _module(case, None, torch.float32)
    z, labels = cases.make_batch(case, b, d, torch.float32, seed)
    ref, gref = _loss_and_grad(case, m, z, labels)
    m = _module(case, None, torch.float32)
    lh, gh = _loss_and_grad(case, m, z.to(dtype), labels)
    tol = case.half_rtol * HALF_TOL[dtype]
    err = abs(float(lh) - float(ref))
    assert err <= tol * (1 + abs(float(ref))), f"{case.id} {dtype}: |{float(lh)} - {float(ref)}| = {err:.3g}"
    gerr = float((gh.float() - gref).norm() / (gref.norm() + 1e-12))
    assert math.isfinite(gerr) and gerr <= max(10 * tol, 0.1), f"{case.id} {dtype}: relative grad error {gerr:.3g}"
