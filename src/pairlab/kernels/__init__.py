"""Tiled (memory-efficient) path of the one equation.

Interface used by the objectives (:mod:`pairlab.objectives.infonce`):

- ``applies(backend, n_anchors, n_candidates) -> bool``: whether the tiled path handles the call
  (``backend="tiled"`` forces it, ``"dense"`` never, ``"auto"`` decides by size).
- ``views_nce(anchors, candidates, anchor_keys, cand_keys, self_offset, scale, *, aggregation,
  decoupled, on_no_positive) -> NCEResult``
- ``clip_nce(a, b, a_all, b_all, offset, scale, *, on_no_positive) -> NCEResult``

Placeholder until the kernel lands: ``auto`` always picks the dense path.
"""

from __future__ import annotations


def applies(backend: str, n_anchors: int, n_candidates: int) -> bool:
    if backend == "tiled":
        raise NotImplementedError("the tiled kernel is not implemented yet; use backend='dense'")
    return False
