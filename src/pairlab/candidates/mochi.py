"""MoCHi: hard negative mixing (synthetic negatives from each anchor's hardest negatives).

Paper: Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus, "Hard Negative Mixing for Contrastive Learning",
NeurIPS 2020 (arXiv 2010.01028). No official code (unofficial re-implementations have indexing bugs; none
was copied). For every anchor ``q`` (unit norm) with negatives ``n`` (a queue, or the in-batch views of the
other samples), ``H_q`` = its ``N`` most similar negatives, and::

    h  = normalize(alpha n_a + (1 - alpha) n_b),     a, b ~ U(H_q) (with replacement), alpha ~ U(0, 1)   (s of them)
    h' = normalize(beta sg(q) + (1 - beta) n_a),     a ~ U(H_q),                       beta ~ U(0, 0.5)  (s' of them)

``h, h'`` are detached constants, never enqueued, discarded after the step. Notation MoCHi(N, s, s');
paper configs e.g. (1024, 512, 256) on ImageNet-1K with MoCo-v2 (tau 0.2, queue 65536).

As candidates: ``extra`` = (the queue, when there is one) + the ``B*K*(s + s')`` synthetic rows; ``mask``
lets each anchor see only *its own* synthetic rows (the paper's per-query logits ``[q.k, q.N, q.h, q.h']``);
``share=True`` lets every anchor see all of them (cheaper to reason about, more negatives; a deviation).
The mask costs a ``[B*K, B*K*(s+s')]`` score block: keep ``s + s'`` moderate for large batches.

Negative pool: ``queue`` (a :class:`~pairlab.candidates.queue.Queue`, given or built with ``queue_size`` and
``dim``), filled by :meth:`MoCHi.update` with the ``key_view`` of each sample (MoCo: the momentum key);
without a queue the pool is the in-batch views of the *other* samples (SimCLR setting). ``N`` is capped by
the pool size. Mixing starts at ``start_epoch`` (pass ``epoch=`` in the context; the paper warms up).
``oracle_labels`` (diagnostics) is the label of the dominant source negative (``n_a`` if ``alpha >= 0.5``
else ``n_b``; ``n_a`` for ``h'``) when pool labels exist.
"""

from __future__ import annotations

from typing import Any

import torch

from pairlab.candidates.base import CandidateGenerator, Candidates, check_views
from pairlab.candidates.queue import Queue
from pairlab.registry import register
from pairlab.scores import normalize


def _nonneg_int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    return v


@register("candidates", "mochi", paper="Kalantidis et al. 2020 (MoCHi)",
          summary="hard negative mixing: mixes of each anchor's hardest negatives (and with the anchor)")
class MoCHi(CandidateGenerator):
    """MoCHi(N, s, s') synthetic hard negatives.

    Args:
        num_hard: ``N``, size of each anchor's hardest-negative set (>= 1; capped by the pool size).
        num_mix: ``s``, mixes of two hard negatives per anchor.
        num_query_mix: ``s'``, mixes of the anchor with one hard negative per anchor.
        queue: an existing queue to draw negatives from (its rows are also returned as extra columns).
        queue_size, dim: build an own queue (``init="empty"``) when ``queue`` is None and ``queue_size > 0``.
        with_labels: the own queue stores labels (for ``oracle_labels``).
        key_view: the view enqueued by :meth:`update` (MoCo: the key view).
        share: every anchor sees every synthetic row (default: only its own, as in the paper).
        max_query_beta: upper bound of ``beta`` (paper 0.5: the query contributes less than half).
        start_epoch: no mixing before this epoch (``epoch=`` context).
        seed: seed of an own generator for the random draws (None: torch's global RNG).
    """

    def __init__(
        self,
        num_hard: int = 1024,
        num_mix: int = 512,
        num_query_mix: int = 256,
        queue: Queue | None = None,
        queue_size: int = 0,
        dim: int | None = None,
        with_labels: bool = False,
        key_view: int = -1,
        share: bool = False,
        max_query_beta: float = 0.5,
        start_epoch: int = 0,
        seed: int | None = None,
    ):
        super().__init__()
        self.num_hard = _nonneg_int("num_hard", num_hard)
        if self.num_hard < 1:
            raise ValueError(f"num_hard must be >= 1, got {num_hard}")
        self.num_mix = _nonneg_int("num_mix", num_mix)
        self.num_query_mix = _nonneg_int("num_query_mix", num_query_mix)
        if not 0.0 < float(max_query_beta) <= 0.5:
            raise ValueError(f"max_query_beta must lie in (0, 0.5], got {max_query_beta}")
        self.max_query_beta = float(max_query_beta)
        if queue is None and _nonneg_int("queue_size", queue_size) > 0:
            if dim is None:
                raise ValueError("dim is required to build a queue (queue_size > 0): the embedding dim D")
            queue = Queue(queue_size, dim, with_labels=with_labels, init="empty")
        self.queue = queue
        self.key_view, self.share = int(key_view), bool(share)
        self.start_epoch = _nonneg_int("start_epoch", start_epoch)
        self.seed = seed
        self._gen: torch.Generator | None = torch.Generator().manual_seed(seed) if seed is not None else None

    def _rand(self, *shape: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.rand(*shape, generator=self._gen, dtype=dtype).to(device) if self._gen is not None else \
            torch.rand(*shape, device=device, dtype=dtype)

    def _randint(self, high: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randint(high, shape, generator=self._gen).to(device) if self._gen is not None else \
            torch.randint(high, shape, device=device)

    def _pool(self, z: torch.Tensor, labels: torch.Tensor | None):
        """Negative pool ``[P, D]`` (unit), its labels or None, and a ``[B*K, P]`` bool of allowed entries."""
        b, k, d = z.shape
        if self.queue is not None:
            pool = self.queue.negatives().to(z.device)
            plab = None
            if self.queue.with_labels:
                plab = self.queue.negative_labels().to(z.device)
            allowed = torch.ones(b * k, pool.shape[0], dtype=torch.bool, device=z.device)
            return pool, plab, allowed
        pool = z.detach().reshape(b * k, d)
        sample = torch.arange(b, device=z.device).repeat_interleave(k)
        plab = labels.repeat_interleave(k) if labels is not None else None
        return pool, plab, sample[:, None] != sample[None, :]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        z, labels = check_views(z, labels)
        b, k, d = z.shape
        n = b * k
        pool, plab, allowed = self._pool(z, labels)
        q = normalize(z.detach().reshape(n, d))
        pool_n = normalize(pool).to(q.dtype)
        queue_rows = self.queue is not None
        extras, owners, olabs = [], [], []
        if queue_rows:
            extras.append(pool_n)
        epoch = int(context.get("epoch", self.start_epoch))
        stats: dict[str, float] = {}
        avail = int(allowed.sum(dim=1).min()) if allowed.numel() else 0
        n_hard = min(self.num_hard, avail)
        if epoch >= self.start_epoch and n_hard >= 1 and (self.num_mix + self.num_query_mix) > 0:
            sim = (q @ pool_n.T).masked_fill(~allowed, float("-inf"))
            hard = sim.topk(n_hard, dim=1).indices  # [n, N]
            rows = torch.arange(n, device=z.device)
            s, s2 = self.num_mix, self.num_query_mix
            if s > 0:
                ab = hard.gather(1, self._randint(n_hard, (n, 2 * s), z.device)).view(n, s, 2)
                alpha = self._rand(n, s, 1, device=z.device, dtype=q.dtype)
                h = normalize(alpha * pool_n[ab[..., 0]] + (1 - alpha) * pool_n[ab[..., 1]])
                extras.append(h.reshape(n * s, d))
                owners.append(rows.repeat_interleave(s))
                if plab is not None:
                    olabs.append(torch.where(alpha[..., 0] >= 0.5, plab[ab[..., 0]], plab[ab[..., 1]]).reshape(-1))
            if s2 > 0:
                a = hard.gather(1, self._randint(n_hard, (n, s2), z.device))
                beta = self._rand(n, s2, 1, device=z.device, dtype=q.dtype) * self.max_query_beta
                h2 = normalize(beta * q[:, None, :] + (1 - beta) * pool_n[a])
                extras.append(h2.reshape(n * s2, d))
                owners.append(rows.repeat_interleave(s2))
                if plab is not None:
                    olabs.append(plab[a].reshape(-1))
            stats = {"mochi_hard_set": float(n_hard)}
        extra = torch.cat(extras) if extras else z.new_zeros(0, d)
        n_queue = pool_n.shape[0] if queue_rows else 0
        mask = None
        if owners and not self.share:
            own = torch.cat(owners)
            mask = torch.ones(n, extra.shape[0], dtype=torch.bool, device=z.device)
            mask[:, n_queue:] = own[None, :] == torch.arange(n, device=z.device)[:, None]
        oracle = None
        if plab is not None and (olabs or queue_rows):
            parts = ([plab] if queue_rows else []) + olabs
            oracle = torch.cat(parts) if parts else None
        return Candidates(extra=extra, mask=mask, oracle_labels=oracle, stats=stats).validate(z)

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> None:
        """Enqueue ``z[:, key_view]`` (and labels) when MoCHi draws from a queue."""
        if self.queue is None:
            return
        z, labels = check_views(z, labels)
        self.queue.enqueue(z[:, self.key_view].detach(), labels if self.queue.with_labels else None)

    def extra_repr(self) -> str:
        return (f"num_hard={self.num_hard}, num_mix={self.num_mix}, num_query_mix={self.num_query_mix}, "
                f"share={self.share}, start_epoch={self.start_epoch}")
