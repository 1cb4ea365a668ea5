"""MoCo-style memory queue of keys and momentum (EMA) encoder.

Paper: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
(MoCo v1, Algorithm 1; MoCo v2: Chen et al. 2020). The queue holds the keys of the last ``size``
samples as extra negative candidate columns (DESIGN §1); the key encoder is an exponential moving
average of the query encoder::

    theta_k <- m * theta_k + (1 - m) * theta_q            (Eq. 2, m = 0.999)
    logits   = [q . k_+, q . queue^T] / tau,  loss = CE(logits, 0)   (tau = 0.07 v1, 0.2 v2; size 65536)

Usage (MoCo)::

    key_enc = MomentumEncoder(model, momentum=0.999)
    queue = Queue(65536, 128)
    q = model(x_q); k = key_enc(x_k)                   # k has no gradient
    loss = InfoNCE(temperature=0.2)(q, k, negative_keys=queue.negatives())
    queue.enqueue(k)                                   # after the loss, before or after backward
    loss.backward(); opt.step(); key_enc.update(model)

Also ``NTXent(z, extra=queue.negatives())`` and, with ``with_labels=True``,
``SupCon(z, labels, extra=queue.negatives(), extra_labels=queue.negative_labels())`` (queue entries
with the anchor's label are positives).

Distributed: :meth:`Queue.enqueue` all-gathers the keys (and labels) of every rank, in rank order,
before writing, so the queue is identical on every rank (PML #639: a local-rank-first gather order
made queues drift apart). The random initial contents come from a seeded generator, identical on
every rank too. Each rank keeps the full queue; nothing in the queue carries gradient.

Deviations from the official code (``facebookresearch/moco``, ``moco/builder.py``):
    - ``enqueue`` accepts any number of keys (the official code asserts ``size % batch == 0``); when
      more keys than ``size`` arrive at once, only the newest ``size`` are kept.
    - ``init="random"`` (default) reproduces the official random unit-norm initial keys;
      ``init="empty"`` starts empty and :meth:`Queue.negatives` returns only the rows filled so far
      (``[0, D]`` before the first enqueue).
    - Keys are stored as given (the official code stores normalised keys; cosine objectives normalise
      anyway) in ``dtype`` (float32 by default, also under AMP).
    - Shuffling BN (MoCo v1/v2's cross-GPU batch shuffle for the key encoder) is not implemented.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings, check_labels
from pairlab.objectives.infonce import UNMATCHED_KEY
from pairlab.registry import register


def _unwrap(module: nn.Module) -> nn.Module:
    """The wrapped module of DDP / DataParallel, else the module itself."""
    return module.module if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else module


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float, copy_buffers: bool = False) -> None:
    """In place ``theta_target <- m * theta_target + (1 - m) * theta_source`` over all parameters.

    ``copy_buffers=True`` also copies the buffers (e.g. BN running statistics); MoCo leaves them to
    the key encoder's own forward passes (default ``False``).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target, source = _unwrap(target), _unwrap(source)
    tp, sp = list(target.parameters()), list(source.parameters())
    if len(tp) != len(sp) or any(a.shape != b.shape for a, b in zip(tp, sp, strict=False)):
        raise ValueError(
            f"target and source must have the same parameters, got {len(tp)} vs {len(sp)} tensors "
            "(pass the same architecture; unwrap DDP with .module if needed)"
        )
    for pt, ps in zip(tp, sp, strict=True):
        pt.mul_(momentum).add_(ps.detach().to(pt.dtype), alpha=1.0 - momentum)
    if copy_buffers:
        for bt, bs in zip(target.buffers(), source.buffers(), strict=True):
            bt.copy_(bs)


class MomentumEncoder(nn.Module):
    """A frozen copy of ``online`` updated by EMA (MoCo's key encoder, BYOL's target network).

    Args:
        online: the query encoder (or its DDP wrapper); deep-copied at construction.
        momentum: ``m`` in ``theta_k <- m theta_k + (1 - m) theta_q`` (MoCo: 0.999).
        copy_buffers: copy buffers at every update instead of leaving them to the copy's forwards.

    Calling it runs the copy under ``torch.no_grad()``. :meth:`update` applies one EMA step
    (``momentum=`` overrides ``m`` for that call, e.g. for BYOL's cosine schedule). On several ranks
    the online parameters are identical after DDP's synchronised step, so the copies stay identical.
    """

    def __init__(self, online: nn.Module, momentum: float = 0.999, copy_buffers: bool = False):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.copy_buffers = copy_buffers
        self.module = copy.deepcopy(_unwrap(online))
        self.module.requires_grad_(False)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def update(self, online: nn.Module, momentum: float | None = None) -> None:
        momentum_update(self.module, online, self.momentum if momentum is None else momentum, self.copy_buffers)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"


@register("candidates", "queue", paper="He et al. 2020 (MoCo)")
class Queue(nn.Module):
    """FIFO queue of ``size`` keys of dim ``dim`` (optionally with labels), synchronised across ranks.

    Args:
        size: number of keys kept (MoCo: 65536 on ImageNet-1K, 16384 on IN-100).
        dim: key dimension ``D``.
        with_labels: also store an integer label per key (:meth:`negative_labels`, for SupCon's
            ``extra_labels``).
        init: ``"random"`` (MoCo's official initialisation: ``size`` random unit vectors, labelled
            as matching nothing) or ``"empty"``.
        seed: seed of the random initial keys (the same on every rank).
        dtype: storage dtype (float32; the official code stores fp32 keys under AMP too).

    State (buffers, saved in ``state_dict`` for resuming): ``keys [size, D]``, ``key_labels [size]``,
    ``ptr`` (next write position) and ``count`` (rows filled, at most ``size``).
    """

    keys: torch.Tensor
    key_labels: torch.Tensor
    ptr: torch.Tensor
    count: torch.Tensor

    def __init__(
        self,
        size: int = 65536,
        dim: int = 128,
        with_labels: bool = False,
        init: str = "random",
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        check_choice("init", init, ("random", "empty"))
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.size, self.dim, self.with_labels, self.init = size, dim, with_labels, init
        if init == "random":
            g = torch.Generator().manual_seed(seed)
            keys = torch.randn(size, dim, generator=g, dtype=torch.float64)
            keys = (keys / keys.norm(dim=1, keepdim=True)).to(dtype)
        else:
            keys = torch.zeros(size, dim, dtype=dtype)
        self.register_buffer("keys", keys)
        self.register_buffer("key_labels", torch.full((size,), UNMATCHED_KEY, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.tensor(size if init == "random" else 0, dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    def _rows(self, ordered: bool) -> torch.Tensor:
        n, p = int(self.count), int(self.ptr)
        if not ordered or n < self.size or p == 0:
            return torch.arange(n, device=self.keys.device)
        return torch.cat([torch.arange(p, n, device=self.keys.device), torch.arange(0, p, device=self.keys.device)])

    def negatives(self, ordered: bool = False) -> torch.Tensor:
        """The filled rows ``[M, D]`` (a copy, so a later :meth:`enqueue` cannot break a pending backward).

        ``ordered=False``: storage order (free of any permutation; the loss does not care);
        ``ordered=True``: oldest first.
        """
        if not ordered or int(self.count) < self.size:
            return self.keys[: int(self.count)].clone()
        return self.keys[self._rows(True)]

    def negative_labels(self, ordered: bool = False) -> torch.Tensor:
        """Labels ``[M]`` of the rows of :meth:`negatives` (random initial rows match no label)."""
        if not self.with_labels:
            raise ValueError("this Queue stores no labels: construct it with with_labels=True")
        return self.key_labels[self._rows(ordered)].clone()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Append ``keys [N, D]`` (and ``labels [N]``) of this rank after gathering every rank's, oldest out.

        Call it on every rank (it is a collective on several ranks), after the loss that used the
        current contents. Keys are detached and cast to the queue's dtype and device.
        """
        check_embeddings("keys", keys, 2, "[N, D]", min_rows=0)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [N, {self.dim}] (the queue's dim), got {tuple(keys.shape)}")
        if self.with_labels:
            if labels is None:
                raise ValueError("labels is required: this Queue was built with with_labels=True")
            labels = check_labels("labels", labels, keys.shape[0])
        elif labels is not None:
            raise ValueError("labels given but this Queue stores none: construct it with with_labels=True")
        keys = keys.detach()
        dev = keys.device  # collectives run on the keys' device (NCCL needs CUDA tensors)
        rows = distributed.sizes(keys.shape[0], dev)
        keys = distributed.gather_no_grad(keys, rows).to(self.keys.device, self.keys.dtype)
        if labels is not None:
            labels = distributed.gather_no_grad(labels.long().to(dev), rows).to(self.key_labels.device)
        n = keys.shape[0]
        if n == 0:
            return
        p = int(self.ptr)
        if n > self.size:  # only the newest `size` keys survive; the rest would be overwritten anyway
            p = (p + n - self.size) % self.size
            keys = keys[-self.size :]
            labels = labels[-self.size :] if labels is not None else None
        m = keys.shape[0]
        idx = (p + torch.arange(m, device=self.keys.device)) % self.size
        self.keys.index_copy_(0, idx, keys)
        if labels is not None:
            self.key_labels.index_copy_(0, idx, labels)
        self.ptr.fill_((p + m) % self.size)
        self.count.fill_(min(int(self.count) + n, self.size))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, with_labels={self.with_labels}, init={self.init!r}"
