"""Weights: components that down- or up-weight pairs (DESIGN §1, the ``W`` of the one equation).

A weights component returns non-negative weights that compose by multiplication, so several components
can be stacked (``W = W_1 * W_2``). Two targets exist and each component says which in its registry meta
``target``:

- ``"partition"``: ``W [N, M]``, the weight of candidate ``j`` in anchor ``i``'s partition (inverse
  propensity, hardness, cluster consensus); pass it as ``weights=`` to :func:`pairlab.nce.nce`.
- ``"anchor"``: ``w [N]``, a per-anchor (per-pair) multiplier of the loss term (bad-pair memory, DBPM);
  apply as ``(w * per_anchor_loss).mean()`` or broadcast as ``w[:, None]`` when combining with others.
"""
