"""Weights: components that down- or up-weight pairs (DESIGN §1, the ``W`` of the one equation).

A weights component returns non-negative weights that compose by multiplication, so several components
can be stacked (``W = W_1 * W_2``). Two targets exist and each component says which in its registry meta
``applies_to``:

- ``"partition"``: ``W [N, M]``, the weight of candidate ``j`` in anchor ``i``'s partition (inverse
  propensity, hardness, cluster consensus); pass it as ``weights=`` to :func:`pairlab.nce.nce`.
- ``"anchor"``: ``w [N]``, a per-anchor (per-pair) multiplier of the loss term (bad-pair memory, DBPM);
  apply as ``(w * per_anchor_loss).mean()`` or broadcast as ``w[:, None]`` when combining with others.

Protocol of partition components (:mod:`pairlab.weights.base`): a callable (usually an ``nn.Module``)
``(scores [N, M] detached, targets [N, M] bool, valid [N, M] bool) -> W [N, M] >= 0``, exactly what
NT-Xent / SupCon / DCL accept as ``weights=``; ``scores`` are ``sim / tau`` as the objective computed them.
Components whose ``W`` depends on the embeddings (cluster consensus, learned weights) also define
``prepare(z, extra=None, labels=None)``; a loop calls it before the objective (``ComposeWeights`` forwards
it). Composition: ``ComposeWeights(*components)`` (product; ``None`` entries skipped). Anchor weights
compose through per-sample losses: ``l = per_sample_views_loss(z, weights=W)``,
``loss = (dbpm(index, l) * l).mean()``. Training loop::

    w = ComposeWeights(build("weights", "hardness"), ...)
    w.prepare(z, c.extra, labels)                        # only needed for embedding-dependent weights
    loss = obj(c.views_or(z), labels=labels, **c.objective_kwargs(w))

Components: ``hardness`` (HCL score tilting), ``meow`` (cluster consensus, with ProtoNCE), ``adameow``
(learned, guarded), ``inverse-propensity`` (+ a pair sampler), ``positive-margin`` and
``calibrated-margin`` (margins as weights; hinge and MCLRec regulariser functions), ``dbpm`` (anchor).
"""
