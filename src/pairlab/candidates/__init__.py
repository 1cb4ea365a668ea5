"""Candidates beyond the in-batch ones: queues, synthesised negatives; each module registers under ``candidates``.

Protocol (details and field semantics in :mod:`pairlab.candidates.base`):

- A candidates component is an ``nn.Module`` (:class:`pairlab.candidates.base.CandidateGenerator`) with
  ``forward(z: [B, K, D], labels: [B] | None, **context) -> Candidates`` and an optional
  ``update(z, labels, **context)`` hook called after the optimiser step (enqueue keys, refresh a memory
  bank). ``context`` carries what a loop knows: ``ids`` (dataset indices ``[B]``, required by per-sample
  memories such as InterCLR), ``epoch``, ``step``.
- ``Candidates(extra [M, D], extra_labels [M] | None, positives [B*K, M] bool | None, views [B, K', D] | None,
  mask [B*K, M] bool | None, oracle_labels [M] | None)``. ``extra`` are extra score-matrix columns
  (negatives unless ``extra_labels`` match); per-anchor synthetic columns are restricted with ``mask``
  (turned into weights by ``Candidates.weights()``); synthesised *positives* are handed over as ``views``
  (FT's extrapolated pair replaces the two views; neighbour/memory positives are appended as view ``K``),
  because the InfoNCE-family objectives take positives only by key equality. ``positives`` is for
  ``nce``-level code and the hardness report; ``oracle_labels`` only for diagnostics.
- Training loop::

      c = gen(z, labels, ids=ids, epoch=epoch)
      loss = obj(c.views_or(z), labels=labels, **c.objective_kwargs(weights_component))
      loss.backward(); opt.step()
      gen.update(z.detach(), labels, ids=ids, epoch=epoch)

Generators: ``queue`` (MoCo), ``xbm``, ``supremix`` (regression mixtures, own interface), ``mochi``, ``ft``,
``interclr``, ``claps`` (latent adversarial pairs), ``neighbours`` (frozen-index positives) and ``grouped``
(a batch sampler: generated/mined hard negatives land in the same batch). ``pairlab hardness NAME`` reports
how hard a generator's candidates are (:mod:`pairlab.hardness`).
"""
