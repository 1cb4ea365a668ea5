"""Cross-batch memory, XBM (Wang, Zhang, Huang & Scott, "Cross-Batch Memory for Embedding Learning",
CVPR 2020).

Embeddings drift slowly once training has warmed up, so the (detached) embeddings of the last
``memory_size`` samples are kept in a FIFO memory and used as extra candidates::

    L = L(batch, batch) + weight * L(batch, memory)        (official code, ``mode="official"``)

The memory is enqueued *before* the memory term, so it contains the current batch too (detached);
the anchors' own rows are excluded through ``ref_self_offset``. ``mode="memory_only"`` returns only
``L(batch, memory)``: the behaviour of pytorch-metric-learning's ``CrossBatchMemory``.
``start_step`` delays the memory term (the official ``XBM.START_ITERATION``); the memory is filled
from the first step either way.

Supported losses:

- the margin losses (:mod:`pairlab.objectives.margin`: contrastive, triplet, multi-similarity, circle,
  lifted), called ``xbm(embeddings [B, D], labels [B], indices_tuple=None)``; an optional ``miner``
  mines the memory comparisons (PML's ``miner`` argument);
- :class:`~pairlab.objectives.siglip.SigLIPLoss` (or any ``input="pair"`` loss accepting ``extra``),
  called ``xbm(a [B, D], b [B, D])``: the memory holds past rows of ``b`` and enters as negative-only
  ``extra`` columns (the current ``b`` is already in the batch, so only *previous* batches are used).
  SigLIP is a sum over pairs, so this is exactly "batch loss + memory loss" (``weight`` must stay 1).

In ``mode="memory_only"`` a given ``indices_tuple`` indexes the memory rows as candidates; in
``mode="official"`` it applies to the batch term.

- the InfoNCE views objectives (NT-Xent, SupCon, DCL: registry ``input="views"``): then XBM is a candidates
  generator (``pairlab train --candidates xbm`` passes the run's objective as ``loss``):
  ``c = xbm(z [B, K, D], labels)`` returns the memory as ``extra`` columns (with ``extra_labels`` for a
  supervised objective), the loop calls ``obj(z, labels, **c.objective_kwargs())`` and
  ``xbm.update(z, labels)`` enqueues all ``B*K`` views after the step. As for pair losses the current batch
  is already in the partition, so only previous batches enter as memory (``weight`` 1, ``mode="official"``).
The memory is a :class:`~pairlab.candidates.queue.Queue` (``init="empty"``), so on several ranks every
rank enqueues the whole gathered batch in rank order and all memories stay identical.
"""

from __future__ import annotations

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings
from pairlab.candidates.queue import Queue
from pairlab.miners.base import Miner
from pairlab.objectives.margin import MarginObjective, build_miner
from pairlab.registry import register

MODES = ("official", "memory_only")


@register("candidates", "xbm", paper="Wang et al. 2020 (XBM)")
class CrossBatchMemory(nn.Module):
    """Wrap a margin loss or SigLIP with a FIFO memory of past embeddings.

    Args:
        loss: the wrapped loss (instance) or a registered objective name (then ``loss_kwargs`` build it).
        dim: embedding dimension ``D``.
        memory_size: number of embeddings kept (official: 55000 on SOP, 8000 on CUB/Cars).
        weight: ``lambda`` of the memory term in ``mode="official"`` (official default 1.0).
        mode: ``"official"`` (batch loss + weight * memory loss) or ``"memory_only"`` (PML).
        start_step: calls before the memory term is used (the memory is filled from the first call).
        miner: optional miner (name or instance) for the memory comparisons of a margin loss.
        dtype: storage dtype of the memory (float32, also under AMP).

    Examples:
        >>> embeddings, labels = torch.randn(32, 128), torch.randint(0, 4, (32,))
        >>> xbm = CrossBatchMemory(ContrastiveLoss(neg_margin=0.5), dim=128, memory_size=8192)
        >>> loss = xbm(embeddings, labels)                 # embeddings [B, 128], labels [B]
    """

    def __init__(
        self,
        loss: nn.Module | str,
        dim: int,
        memory_size: int = 8192,
        weight: float = 1.0,
        mode: str = "official",
        start_step: int = 0,
        miner: str | Miner | None = None,
        loss_kwargs: dict | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if isinstance(loss, str):
            from pairlab import registry

            loss = registry.build("objectives", loss, **(loss_kwargs or {}))
        elif loss_kwargs:
            raise ValueError("loss_kwargs needs loss given by name")
        if not isinstance(loss, nn.Module):
            raise TypeError(f"loss must be an nn.Module or a registered objective name, got {type(loss).__name__}")
        self.kind = "labels" if isinstance(loss, MarginObjective) else self._pair_kind(loss)
        self.supervised = self.kind == "views" and self._supervised(loss)
        self.loss = loss
        self.mode = check_choice("mode", mode, MODES)
        self.weight = float(weight)
        if not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"start_step must be an int >= 0, got {start_step!r}")
        self.start_step = start_step
        self.miner = build_miner(miner)
        if self.kind == "pair" and (self.miner is not None or self.weight != 1.0 or mode != "official"):
            raise ValueError("for a pair loss the memory rows are extra negative columns of the same sum: "
                             "miner, weight != 1 and mode='memory_only' apply to margin losses only")
        if self.kind == "views" and (self.miner is not None or self.weight != 1.0 or mode != "official"):
            raise ValueError("for a views objective the memory rows are extra columns of the same partition: "
                             "miner, weight != 1 and mode='memory_only' apply to margin losses only")
        self.memory = Queue(memory_size, dim, with_labels=self.kind == "labels" or self.supervised, init="empty",
                            dtype=dtype)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.last_stats: dict[str, float] = {}

    @staticmethod
    def _registered_input(loss: nn.Module) -> str | None:
        from pairlab import registry

        try:
            return registry.input_kind(loss)
        except ValueError:
            return None

    @staticmethod
    def _supervised(loss: nn.Module) -> bool:
        from pairlab import registry

        for name in registry.available("objectives"):
            entry = registry.get("objectives", name)
            if type(loss) is entry.obj:
                return bool(entry.meta.get("supervised", False))
        return False

    @classmethod
    def _pair_kind(cls, loss: nn.Module) -> str:
        import inspect

        params = inspect.signature(loss.forward).parameters
        if cls._registered_input(loss) == "views" and "extra" in params:
            return "views"
        if "extra" in params and len(params) >= 3:
            return "pair"
        raise TypeError(
            "CrossBatchMemory supports the margin losses, pair losses with an `extra` argument (SigLIP) and the "
            f"InfoNCE views objectives with `extra` (NT-Xent, SupCon, DCL); got {type(loss).__name__}"
        )

    def _active(self) -> bool:
        return int(self.step) >= self.start_step

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, indices_tuple: object = None,
                **context: object):
        """Margin loss: ``(embeddings [B, D], labels [B], indices_tuple=None)``; pair loss: ``(a, b)``;
        views objective: ``(z [B, K, D], labels [B] | None, **context) -> Candidates`` (memory as ``extra``)."""
        if self.kind == "views":
            return self._views(x, y)
        out = self._labels(x, y, indices_tuple) if self.kind == "labels" else self._pair(x, y, indices_tuple)
        self.step += 1
        return out

    def _labels(self, emb: torch.Tensor, labels: torch.Tensor, indices_tuple: object) -> torch.Tensor:
        check_embeddings("embeddings", emb, 2, "[B, D]")
        if emb.shape[1] != self.memory.dim:
            raise ValueError(f"embeddings must have shape [B, {self.memory.dim}] (the memory's dim), "
                             f"got {tuple(emb.shape)}")
        n = emb.shape[0]
        all_sizes = distributed.sizes(n, emb.device)
        total = sum(all_sizes)
        if total > self.memory.size:
            raise ValueError(f"memory_size ({self.memory.size}) must hold at least one global batch ({total})")
        batch_loss = None
        if self.mode == "official":
            batch_loss = self.loss(emb, labels, indices_tuple)
            batch_stats = dict(self.loss.last_stats)
        self.memory.enqueue(emb.detach(), labels)
        if not self._active():
            self.last_stats = {"memory": float(len(self.memory)), "memory_used": 0.0}
            return batch_loss if batch_loss is not None else emb.sum() * 0.0
        mem = self.memory.negatives(ordered=True).to(emb.device)
        mem_labels = self.memory.negative_labels(ordered=True).to(emb.device)
        offset = mem.shape[0] - total + distributed.offset(n, all_sizes)
        mined = None
        if self.miner is not None:
            mined = self.miner(emb, labels, mem, mem_labels, offset)
        elif self.mode == "memory_only":
            mined = indices_tuple  # PML: a given tuple restricts the memory comparisons (indices into the memory)
        mem_loss = self.loss(emb, labels, mined, ref_emb=mem, ref_labels=mem_labels, ref_self_offset=offset)
        self.last_stats = {"memory": float(mem.shape[0]), "memory_used": 1.0,
                           **{f"memory_{k}": v for k, v in self.loss.last_stats.items()}}
        if batch_loss is None:
            return mem_loss
        self.last_stats.update(batch_stats)
        return batch_loss + self.weight * mem_loss

    def _pair(self, a: torch.Tensor, b: torch.Tensor, indices_tuple: object) -> torch.Tensor:
        if indices_tuple is not None:
            raise ValueError("indices_tuple applies to margin losses only")
        check_embeddings("b", b, 2, "[B, D]")
        if b.shape[1] != self.memory.dim:
            raise ValueError(f"b must have shape [B, {self.memory.dim}] (the memory's dim), got {tuple(b.shape)}")
        extra = None
        if self._active() and len(self.memory):
            extra = self.memory.negatives(ordered=True).to(b.device)
        loss = self.loss(a, b, extra=extra)
        self.memory.enqueue(b.detach())
        self.last_stats = {"memory": float(0 if extra is None else extra.shape[0]), **self.loss.last_stats}
        return loss

    def _views(self, z: torch.Tensor, labels: torch.Tensor | None):
        from pairlab.candidates.base import Candidates, check_views

        z, labels = check_views(z, labels)
        if z.shape[2] != self.memory.dim:
            raise ValueError(f"z must have shape [B, K, {self.memory.dim}] (the memory's dim), got {tuple(z.shape)}")
        if self.supervised and labels is None:
            raise ValueError("XBM with a supervised objective needs labels [B]")
        use = self._active() and len(self.memory) > 0
        extra = self.memory.negatives(ordered=True).to(z.device, z.dtype) if use else None
        lab = self.memory.negative_labels(ordered=True).to(z.device) if use and self.supervised else None
        self.last_stats = {"memory": float(0 if extra is None else extra.shape[0])}
        return Candidates(extra=extra, extra_labels=lab, stats=dict(self.last_stats))

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: object) -> None:
        """Views objective: enqueue the step's ``B*K`` (detached) views (and their labels when supervised)."""
        if self.kind != "views":
            raise ValueError("update() is the candidates hook of a views objective; margin and pair losses "
                             "enqueue inside forward")
        b, k, d = z.shape
        lab = labels.repeat_interleave(k) if self.supervised and labels is not None else None
        self.memory.enqueue(z.detach().reshape(b * k, d), lab)
        self.step += 1

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, weight={self.weight}, start_step={self.start_step}"
