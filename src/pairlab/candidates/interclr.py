"""InterCLR: online pseudo-labels over a memory bank, semi-hard negatives, and a margin on the positive.

Paper: Xie, Zhan, Liu, Ong, Loy, "Delving into Inter-Image Invariance for Unsupervised Visual
Representations", IJCV 2022 (arXiv 2008.11702). Official code: OpenMMLab ``mmselfsup`` 0.x
(``interclr_moco.py``, ``interclr_memory.py``, ``interclr_hook.py``). Spec: methods-representation §12.

Memory bank ``M [N, D]`` (unit rows, one per dataset index), pseudo-labels ``c [N]`` and centroids:

- init (:meth:`InterCLR.init_memory`): k-means (``C`` clusters, spherical) of the whole dataset's features;
- every step (:meth:`InterCLR.update`, after the optimiser step): ``M[idx] <- normalize((1-mu) M[idx] +
  mu normalize(k))`` (``mu = 1``: replace), relabel ``idx`` to the nearest centroid, record ``change_ratio``;
- every ``centroid_every`` (10) steps: centroids = cluster means (empty clusters keep theirs), then clusters
  with fewer than ``min_cluster`` members are dissolved into the nearest other centroid and each emptied
  cluster re-seeds by splitting the largest cluster with 2-means. Deviation: the official hook runs the
  small-cluster step every iteration; here at the centroid refresh (same fixed point, less work).

Distributed (torch.distributed): the memory is replicated, one full copy per rank, and must stay identical.
:meth:`InterCLR.update` is a collective: it all-gathers every rank's keys and ids (global dataset indices) in
rank order and every rank applies the same write, relabel and centroid refresh (seeded k-means, same data);
the refreshed pseudo-labels and centroids are then broadcast from rank 0, so floating-point non-determinism of
a device (e.g. CUDA ``index_add_``) cannot make them drift either. :meth:`InterCLR.init_memory` keeps rank 0's
result (the whole dataset's features must have the same shape on every rank). Sampling (``forward``,
:meth:`InterCLR.sample`) stays local: each rank draws candidates for its own anchors from the shared memory.
An id present several times in one gathered batch (e.g. ``DistributedSampler`` padding) is written once, with
its last key in rank order (deterministic, unlike an indexed assignment with repeated indices).

Inter-image candidates for the anchor ``q`` (:meth:`InterCLR.sample`): the **positive** is one uniformly
random memory entry with the anchor's pseudo-label (it may be its own slot); **negatives** (``"semihard"``,
default) are ``neg_num`` draws without replacement from the ``pool`` most similar entries, resampled while
they share the anchor's label (at most ``max_resample`` rounds, then same-label entries are excluded from the
pool: the spec's guard for tiny datasets). Other modes: ``"hard"`` (top ``neg_num + max cluster size``, same
label dropped), ``"random"`` (uniform), ``"semieasy"`` (the ``pool`` least similar). Faithful inter loss
(:meth:`InterCLR.inter_loss`)::

    L_inter = CE([q.M_pos - m, q.M_negs] / T, 0),   m = -0.5 (less stringent), T = 0.2
    L = 0.75 L_intra + 0.25 L_inter                 (the intra branch is plain MoCo-v2)

As candidates (``forward``): the memory positive is appended as view ``K`` (a constant), the sample's
negatives are ``extra`` rows visible only to that sample's views (``mask``). The margin then applies through
:class:`pairlab.weights.margins.PositiveMarginWeights` (``W_neg = exp(m / T)``, exact), passed as the
objective's weights. Deviations of this path: all views of a sample are anchors (official: the query only)
and the intra and inter positives share one partition. Defaults are ImageNet's (C=10000, neg 16384, pool
128000); small data needs e.g. ``num_clusters=20, neg_num=256, pool=1024, min_cluster=5``.

In ``pairlab train`` (:mod:`pairlab.train.components`): :meth:`InterCLR.setup` initialises the memory from the
initial (random-init) encoder's features of the training set, as the official code extracts features before
training; the loop passes the batch's dataset indices as ``ids`` and the small-data defaults ``num_clusters=50,
neg_num=256, pool=1024, min_cluster=5`` (registry meta ``train_defaults``) unless ``candidates_args`` sets them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings, check_positive
from pairlab.candidates.base import CandidateGenerator, Candidates, check_ids, check_views
from pairlab.registry import register
from pairlab.scores import normalize
from pairlab.weights.meow import spherical_kmeans

SAMPLINGS = ("semihard", "hard", "random", "semieasy")


def _last_per_id(ids: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique ``ids`` with the row of each one's last occurrence (all of them when ``ids`` has no repeat)."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    if uniq.numel() == ids.numel():
        return ids, rows
    pos = torch.arange(ids.numel(), device=ids.device)
    last = torch.full((uniq.numel(),), -1, dtype=torch.long, device=ids.device).scatter_reduce_(0, inv, pos, "amax")
    return uniq, rows[last]


@register("candidates", "interclr", paper="Xie et al. 2022 (InterCLR, IJCV)", needs=["ids", "init_memory"],
          train_defaults={"num_clusters": 50, "neg_num": 256, "pool": 1024, "min_cluster": 5},
          summary="memory-bank pseudo-label positives and semi-hard negatives (online k-means labels)")
class InterCLR(CandidateGenerator):
    """InterCLR memory bank, online pseudo-labels and inter-image candidates.

    Args:
        num_clusters, neg_num, pool: ``C``, negatives per anchor, semi-hard pool size (capped by ``N``).
        sampling: ``"semihard"`` (default), ``"hard"``, ``"random"``, ``"semieasy"``.
        margin, temperature: of :meth:`inter_loss` (official ``m = -0.5``, ``T = 0.2``).
        momentum: ``mu`` of the memory update (official 1.0).
        centroid_every, min_cluster: centroid refresh period (steps) and smallest cluster kept.
        query_view, key_view: views used as anchor for sampling and as memory update.
        max_resample: same-label resampling rounds before excluding them.
        seed: seed of the k-means and of the draws.
    """

    bank: torch.Tensor
    labels: torch.Tensor
    centroids: torch.Tensor

    def __init__(
        self,
        num_clusters: int = 10000,
        neg_num: int = 16384,
        pool: int = 128000,
        sampling: str = "semihard",
        margin: float = -0.5,
        temperature: float = 0.2,
        momentum: float = 1.0,
        centroid_every: int = 10,
        min_cluster: int = 20,
        query_view: int = 0,
        key_view: int = 1,
        max_resample: int = 10,
        seed: int = 0,
    ):
        super().__init__()
        for name, v in (("num_clusters", num_clusters), ("neg_num", neg_num), ("pool", pool),
                        ("centroid_every", centroid_every)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.num_clusters, self.neg_num, self.pool = num_clusters, neg_num, pool
        self.sampling = check_choice("sampling", sampling, SAMPLINGS)
        self.margin = float(margin)
        self.temperature = check_positive("temperature", temperature)
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.centroid_every, self.min_cluster = centroid_every, int(min_cluster)
        self.query_view, self.key_view, self.max_resample = int(query_view), int(key_view), int(max_resample)
        self.seed = int(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.register_buffer("bank", torch.zeros(0, 1))
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0, 1))
        self.steps = 0
        self.last_stats: dict[str, float] = {}

    # ----- memory -----
    def setup(self, context: Any) -> None:
        """``pairlab train`` hook: :meth:`init_memory` with the initial encoder's features of the training set.

        As the official hook, before the first step the whole dataset is encoded (no augmentation, eval mode)
        by the encoder as it starts (random init) and clustered. A memory already filled is kept.
        ``pairlab train`` builds InterCLR with the spec's small-data values (registry meta ``train_defaults``:
        C=50, neg_num=256, pool=1024, min_cluster=5) unless ``candidates_args`` sets them.
        """
        if self.bank.shape[0] == 0:
            self.init_memory(context.encode_dataset().to(self.bank.device))

    @torch.no_grad()
    def init_memory(self, features: torch.Tensor) -> None:
        """Bank = unit ``features [N, D]`` of the whole dataset; labels/centroids from k-means."""
        check_embeddings("features", features, 2, "[N, D]")
        if distributed.is_active():  # one collective check, so that no rank waits alone in the broadcast below
            shapes = distributed.gather_no_grad(torch.tensor([list(features.shape)], device=features.device))
            if not bool((shapes == shapes[0]).all()):
                raise ValueError(f"features must have the same shape [N, D] on every rank (the whole dataset), got "
                                 f"{[tuple(r) for r in shapes.tolist()]} by rank")
        x = normalize(features.detach()).float()
        c, assign = spherical_kmeans(x, min(self.num_clusters, x.shape[0]), seed=self.seed)
        self.bank, self.labels, self.centroids = x.clone(), assign.clone(), c.clone()
        self._broadcast_from_rank0(features.device, "bank", "labels", "centroids")

    def _broadcast_from_rank0(self, device: torch.device, *names: str) -> None:
        """Overwrite the named buffers with rank 0's (collectives on ``device``); no-op on a single process."""
        if not distributed.is_active():
            return
        for name in names:
            buf = getattr(self, name)
            t = buf.to(device).contiguous()
            dist.broadcast(t, src=0)
            buf.copy_(t.to(buf.device))

    def _need_memory(self) -> None:
        if self.bank.shape[0] == 0:
            raise ValueError("InterCLR memory is empty: call init_memory(features) with the dataset's features first")

    @torch.no_grad()
    def _refresh_centroids(self) -> None:
        k = self.centroids.shape[0]
        sums = torch.zeros_like(self.centroids).index_add_(0, self.labels, self.bank)
        counts = torch.bincount(self.labels, minlength=k)
        self.centroids = torch.where((counts > 0)[:, None], normalize(sums), self.centroids)
        small = (counts < self.min_cluster) & (counts > 0)
        if bool(small.any()) and bool((~small & (counts > 0)).any()):
            keep = ~small & (counts > 0)
            members = small[self.labels]
            sim = self.bank[members] @ self.centroids.T
            sim[:, ~keep] = float("-inf")
            self.labels[members] = sim.argmax(dim=1)
            for c in torch.nonzero(small).flatten().tolist():  # re-seed: split the largest cluster
                counts = torch.bincount(self.labels, minlength=k)
                big = int(counts.argmax())
                idx = torch.nonzero(self.labels == big).flatten()
                if idx.numel() < 2:
                    break
                cent, part = spherical_kmeans(self.bank[idx], 2, niter=10, seed=self.seed + c)
                if bool((part == part[0]).all()):  # 2-means failed: random halves (a generator every rank shares)
                    g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.steps + c)
                    part = torch.randperm(idx.numel(), generator=g).to(idx.device) % 2
                self.labels[idx[part == 1]] = c
                for cc in (big, c):
                    rows = self.bank[self.labels == cc]
                    self.centroids[cc] = normalize(rows.sum(dim=0))

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> None:
        """Write the key view into the bank at ``ids``, relabel them, refresh centroids on schedule.

        ``ids [B]`` (context) are global dataset indices. On several ranks this is a collective (call it on
        every rank, after the step): the keys and ids of all ranks are gathered in rank order first, so every
        rank writes the same rows and the bank, pseudo-labels and centroids stay identical. ``labels`` (class
        labels) are not used: the pseudo-labels come from the memory itself.
        """
        self._need_memory()
        z, _ = check_views(z, None)
        ids = check_ids(context.get("ids"), z.shape[0], self.bank.shape[0])
        dev = z.device  # collectives run on the batch's device (NCCL needs CUDA tensors)
        k = normalize(z[:, self.key_view].detach()).to(self.bank.dtype)
        rows = distributed.sizes(z.shape[0], dev)
        k = distributed.gather_no_grad(k, rows).to(self.bank.device)
        ids = distributed.gather_no_grad(ids.to(dev), rows).to(self.bank.device)
        ids, k = _last_per_id(ids, k)
        self.bank[ids] = normalize((1 - self.momentum) * self.bank[ids] + self.momentum * k)
        new = (self.bank[ids] @ self.centroids.T).argmax(dim=1)
        self.last_stats = {"change_ratio": float((new != self.labels[ids]).float().mean())}
        self.labels[ids] = new
        self.steps += 1
        if self.steps % self.centroid_every == 0:
            self._refresh_centroids()
            self._broadcast_from_rank0(dev, "labels", "centroids")

    # ----- sampling -----
    @torch.no_grad()
    def sample(self, q: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory indices: positives ``[B]`` and negatives ``[B, neg_num']`` for unit anchors ``q [B, D]``."""
        self._need_memory()
        n = self.bank.shape[0]
        dev = self.bank.device
        ids = ids.to(dev)
        lab = self.labels[ids]
        same = self.labels[None, :] == lab[:, None]  # [B, N]
        # positive: uniform among same-label entries
        r = torch.rand(same.shape, generator=self.gen).to(dev).masked_fill(~same, -1.0)
        pos = r.argmax(dim=1)
        sim = normalize(q.detach()).to(self.bank) @ self.bank.T
        n_diff = int((~same).sum(dim=1).min())
        m = min(self.neg_num, n_diff)
        if m < 1:
            return pos, torch.zeros(q.shape[0], 0, dtype=torch.long, device=dev)
        if self.sampling == "random":
            cand = torch.ones_like(same)
        elif self.sampling == "hard":
            top = min(n, self.neg_num + int(torch.bincount(self.labels).max()))
            cand = torch.zeros_like(same).scatter_(1, sim.topk(top, dim=1).indices, True)
        else:
            p = min(n, max(self.pool, m))
            idx = sim.topk(p, dim=1, largest=self.sampling == "semihard").indices
            cand = torch.zeros_like(same).scatter_(1, idx, True)
        if self.sampling == "hard":
            cand = cand & ~same
        negs = self._draw(cand, same, m)
        return pos, negs

    def _draw(self, cand: torch.Tensor, same: torch.Tensor, m: int) -> torch.Tensor:
        """``m`` draws per row without replacement from ``cand``, resampling same-label draws."""
        b = cand.shape[0]
        out = torch.empty(b, m, dtype=torch.long, device=cand.device)
        for i in range(b):
            pool = torch.nonzero(cand[i]).flatten()
            if pool.numel() < m or int((~same[i, pool]).sum()) < m:
                pool = torch.nonzero(~same[i]).flatten()  # pool too small once same-label is removed
            pick = pool[torch.randperm(pool.numel(), generator=self.gen)[:m].to(pool.device)]
            for _ in range(self.max_resample):
                bad = same[i, pick]
                if not bool(bad.any()):
                    break
                rest = pool[~torch.isin(pool, pick)]
                if rest.numel() < int(bad.sum()):
                    break
                pick[bad] = rest[torch.randperm(rest.numel(), generator=self.gen)[: int(bad.sum())].to(rest.device)]
            if bool(same[i, pick].any()):  # fall back: exclude same-label entries
                ok = pool[~same[i, pool]]
                pick = ok[torch.randperm(ok.numel(), generator=self.gen)[:m].to(ok.device)]
            out[i] = pick
        return out

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        z, _ = check_views(z, None)
        b, k, d = z.shape
        ids = check_ids(context.get("ids"), b, self.bank.shape[0] if self.bank.shape[0] else None)
        pos, negs = self.sample(z[:, self.query_view], ids)
        views = torch.cat([z, self.bank[pos].to(z)[:, None, :]], dim=1)
        m = negs.shape[1]
        extra = self.bank[negs.reshape(-1)].to(z)
        owner = torch.arange(b, device=z.device).repeat_interleave(m)
        mask = torch.arange(b, device=z.device).repeat_interleave(k + 1)[:, None] == owner[None, :]
        return Candidates(extra=extra, views=views, mask=mask, oracle_labels=None,
                          stats={"inter_negatives": float(m)}).validate(z)

    def inter_loss(self, q: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The official inter-image loss ``CE([q.M_pos - m, q.M_negs] / T, 0)`` for queries ``q [B, D]``."""
        check_embeddings("q", q, 2, "[B, D]")
        ids = check_ids(ids, q.shape[0], self.bank.shape[0] if self.bank.shape[0] else None)
        pos, negs = self.sample(q, ids)
        qn = normalize(q)
        lp = (qn * self.bank[pos].to(qn)).sum(-1, keepdim=True) - self.margin
        ln = torch.einsum("bd,bmd->bm", qn, self.bank[negs].to(qn))
        logits = torch.cat([lp, ln], dim=1) / self.temperature
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()

    def extra_repr(self) -> str:
        return (f"num_clusters={self.num_clusters}, neg_num={self.neg_num}, pool={self.pool}, "
                f"sampling={self.sampling!r}, margin={self.margin}, memory={tuple(self.bank.shape)}")
