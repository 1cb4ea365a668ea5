from __future__ import annotations

import pytest
import torch

from pairlab import _validate as v


def test_check_embeddings_messages():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        v.check_embeddings("x", [1.0], 2, "[B, D]")
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        v.check_embeddings("x", torch.ones(2, 2, dtype=torch.long), 2, "[B, D]")
    with pytest.raises(ValueError, match=r"x must have shape \[B, D\] \(2 dims\), got shape \(2,\)"):
        v.check_embeddings("x", torch.ones(2), 2, "[B, D]")
    with pytest.raises(ValueError, match="at least 1 rows"):
        v.check_embeddings("x", torch.ones(0, 3), 2, "[B, D]")


def test_nan_rows_found_in_half():
    x = torch.zeros(5, 3, dtype=torch.bfloat16)
    x[2, 1] = float("nan")
    x[4, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"rows \[2, 4\]"):
        v.check_all_finite("x", x)


def test_labels_range():
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        v.check_labels("labels", torch.tensor([0, 3]), 2, num_classes=3)
