"""Tolerance against a pair loop (Wang & Liu 2021; spec §0.1-3)."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.metrics.tolerance import tolerance


def ref_tolerance(x, y):
    f = x / x.norm(dim=1, keepdim=True)
    vals = [float(f[i] @ f[j]) for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] == y[j]]
    return sum(vals) / len(vals)


def test_matches_pair_loop():
    torch.manual_seed(0)
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(3, 8, (40,))
    assert tolerance(x, y) == pytest.approx(ref_tolerance(x, y), abs=1e-12)


def test_closed_cases_and_invariance():
    e = torch.eye(3)
    # two classes, each collapsed to one direction: tolerance 1; orthogonal within class: 0
    assert tolerance(torch.stack([e[0], e[0], 2 * e[1], e[1]]), torch.tensor([0, 0, 1, 1])) == pytest.approx(1.0)
    assert tolerance(torch.stack([e[0], e[1], e[2]]), torch.tensor([5, 5, 5])) == pytest.approx(0.0, abs=1e-7)
    # exact zero dot products are kept (the MV-CL quirk would drop them and return 1.0 here)
    x = torch.stack([e[0], e[0], e[1]])
    assert tolerance(x, torch.tensor([0, 0, 0])) == pytest.approx(1 / 3)
    torch.manual_seed(1)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    p = torch.randperm(20)
    assert tolerance(x[p], y[p]) == pytest.approx(tolerance(x, y), abs=1e-6)


def test_bad_inputs_and_registry():
    with pytest.raises(ValueError, match="same label"):
        tolerance(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        tolerance(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        tolerance(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        tolerance(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]), torch.tensor([0, 0]))
    assert registry.get("metrics", "tolerance").obj is tolerance
