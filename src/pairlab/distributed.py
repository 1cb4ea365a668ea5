"""torch.distributed helpers: gather with gradient, rank-aware ids (DESIGN §4).

Anchors stay local; candidates are gathered from every rank *with* gradient. The backward of the
gather sums the gradients that every rank's loss sends to this rank's rows, so with DDP's gradient
averaging the parameters get exactly the gradient of the single-process big batch (no factor of the
world size, the peers' most common bug).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order), differentiable; identity on 1 rank.

    All ranks must pass the same shape.
    """
    if not is_active():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 without gradient (e.g. queue keys)."""
    if not is_active():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)
