"""Tiled (memory-efficient) path of the one equation.

Interface used by the objectives (:mod:`pairlab.objectives.infonce`):

- ``applies(backend, n_anchors, n_candidates) -> bool``: whether the tiled path handles the call
  (``backend="tiled"`` forces it, ``"dense"`` never, ``"auto"`` when the score matrix has at least
  :data:`AUTO_MIN_PAIRS` entries, the measured crossover on a 2-core CPU, see ``benchmarks/``).
- ``views_nce(anchors, candidates, anchor_keys, cand_keys, self_offset, scale, *, aggregation,
  decoupled, on_no_positive) -> NCEResult`` (:mod:`pairlab.kernels.tiled`)
- ``clip_nce(a, b, a_all, b_all, offset, scale, *, on_no_positive) -> NCEResult``

The tile schedules and their autograd functions are in :mod:`pairlab.kernels.lse`.
"""

from __future__ import annotations

from pairlab._validate import check_choice
from pairlab.kernels.tiled import DEFAULT_BLOCK, clip_nce, views_nce

__all__ = ["AUTO_MIN_PAIRS", "DEFAULT_BLOCK", "applies", "clip_nce", "views_nce"]

# "auto" switches to the tiled kernel at this many scores (anchors x candidates). Measured (1 thread,
# d=128, fwd+bwd): tiled / dense time is 1.9-3.3 at 32x32 .. 128x128 scores, ~0.9 at 256x256 (SimCLR
# N=128), 0.41 at CLIP 256x256 and 0.05-0.17 from 1024x1024 up (the dense path builds several masks).
AUTO_MIN_PAIRS = 256 * 256


def applies(backend: str, n_anchors: int, n_candidates: int) -> bool:
    """Whether the tiled kernel handles a call with ``n_anchors x n_candidates`` scores."""
    check_choice("backend", backend, ("auto", "dense", "tiled"))
    if backend == "tiled":
        return True
    if backend == "dense":
        return False
    return n_anchors * n_candidates >= AUTO_MIN_PAIRS
