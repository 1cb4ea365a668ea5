"""Tiled (memory-efficient) path of the one equation. Placeholder dispatch: dense until the kernel lands."""

from __future__ import annotations

import torch


def applies(backend: str, z: torch.Tensor) -> bool:
    """Whether the tiled kernel handles this call (``backend="tiled"`` forces it)."""
    if backend == "tiled":
        raise NotImplementedError("the tiled kernel is not implemented yet; use backend='dense'")
    return False
