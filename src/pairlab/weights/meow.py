"""MEOW cluster-consensus negative weights, ProtoNCE, and AdaMEOW learned weights (guarded).

Papers: Yu & Li, "Heterogeneous Graph Contrastive Learning with Meta-path Contexts and Weighted Negative
Samples" (MEOW, SDM 2023); Yu et al., AdaMEOW (TKDE 2024). Official code ``jianxiangyu/MEOW``
(``code_meow/module/contrast.py``, ``cluster.py``; ``code_adameow/module/adameow.py``). The meta-path
encoders are out of scope; the weighting primitives work on any views batch.

**MEOW**: k-means (spherical, on detached embeddings) at ``R`` granularities ``K_1..K_R`` (ACM: 100, 300)::

    co_ij = sum_r 1[cluster_r(i) == cluster_r(j)],     W_ij = R - co_ij            (integers 0..R)

so a pair co-clustered at every granularity is removed as a negative (false-negative suppression), and the
positive (same node: ``co = R``) is not in the denominator: ``L = -mean_i log(S_ii / sum_j W_ij S_ij)``. Here
clustering is per *sample* (the mean of its unit views, ``cluster_on="mean"``, or one view), so all views of
a sample share assignments and the positive views get ``W = 0`` exactly like MEOW's node. Extra candidate
rows are assigned to the nearest centroid. Weights are integers, not normalised (as official).

**ProtoNCE** (PCL-style, MEOW's form): centroids ``c`` L2-normalised, concentration
``phi_c = mean_{i in c} ||z_i - c||_2 / log(n_c + 5)`` (official: ``sqrt`` of faiss' squared distances),
singletons get ``max phi``, clipped to ``[p10, p90]``, rescaled to ``tau * phi / mean(phi)``::

    L_r = -mean_i log softmax_c(z_i . c / phi_c)[k(i)]

Deviation: the official denominator is ``mean over prototypes x N`` (a constant ``log(N/K)`` offset of the
reported value); the plain sum is used here.

**AdaMEOW**: ``W_ij = MLP(a_i + c_j)`` with ``MLP = Linear(d, 16) - Tanh - Linear(16, 1) - Sigmoid``, learned
jointly with the loss it multiplies, the positive weighted too. Since ``-s_p + log sum_j W_ij e^{s_ij}`` falls
without bound as ``W -> 0``, the default ``guard="normalize"`` divides each row by its mean over the valid
columns (scale-free: a uniform shrink of ``W`` changes nothing, and the loss is bounded below by
``-s_p + log(n min_j e^{s_ij})``); ``guard="none"`` is the official, unguarded form. The first layer is
applied as ``A a_i + A c_j`` (linear), so no ``[N, M, d]`` tensor is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings, check_positive
from pairlab.registry import register
from pairlab.scores import normalize
from pairlab.weights.base import PairWeights


def spherical_kmeans(
    x: torch.Tensor, k: int, niter: int = 20, nredo: int = 1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine k-means on unit rows: ``(centroids [k, D] unit, assign [N])``; best of ``nredo`` by objective.

    Initialisation: ``k`` distinct random rows (seeded). Empty clusters keep their previous centroid.
    """
    check_embeddings("x", x, 2, "[N, D]")
    n = x.shape[0]
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, N={n}], got {k!r}")
    xn = normalize(x.detach())
    g = torch.Generator().manual_seed(seed)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(max(1, nredo)):
        c = xn[torch.randperm(n, generator=g)[:k].to(x.device)].clone()
        assign = torch.zeros(n, dtype=torch.long, device=x.device)
        for _ in range(max(1, niter)):
            assign = (xn @ c.T).argmax(dim=1)
            sums = torch.zeros_like(c).index_add_(0, assign, xn)
            counts = torch.bincount(assign, minlength=k)
            nonempty = counts > 0
            c = torch.where(nonempty[:, None], normalize(sums), c)
        assign = (xn @ c.T).argmax(dim=1)
        obj = float((xn * c[assign]).sum())
        if best is None or obj > best[0]:
            best = (obj, c, assign)
    assert best is not None
    return best[1], best[2]


def cluster_consensus_weights(assign_a: torch.Tensor, assign_c: torch.Tensor | None = None) -> torch.Tensor:
    """``W_ij = R - #{r : assign_a[r, i] == assign_c[r, j]}`` for assignments ``[R, N]`` and ``[R, M]``."""
    if assign_a.ndim != 2:
        raise ValueError(f"assign_a must have shape [R, N], got {tuple(assign_a.shape)}")
    assign_c = assign_a if assign_c is None else assign_c
    if assign_c.ndim != 2 or assign_c.shape[0] != assign_a.shape[0]:
        raise ValueError(f"assign_c must have shape [R={assign_a.shape[0]}, M], got {tuple(assign_c.shape)}")
    co = (assign_a[:, :, None] == assign_c[:, None, :]).sum(dim=0)
    return (assign_a.shape[0] - co).float()


def _granularities(num_clusters: Sequence[int] | int) -> tuple[int, ...]:
    ks = (num_clusters,) if isinstance(num_clusters, int) else tuple(num_clusters)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"num_clusters must be integers >= 1, got {num_clusters!r}")
    return ks


@register("weights", "meow", applies_to="partition", paper="Yu & Li 2023 (MEOW, SDM)",
          train_defaults={"num_clusters": [10, 30]},
          summary="cluster-consensus negative weights R - co-clustering count (needs prepare(z))")
class ClusterConsensusWeights(PairWeights):
    """MEOW's ``W = R - co`` from k-means at several granularities, recomputed by :meth:`prepare` each step.

    ``pairlab train`` clusters each batch at ``num_clusters=[10, 30]`` unless ``weights_args`` sets it (registry
    meta ``train_defaults``): the ACM granularities (100, 300) reach the batch size, where every sample is its
    own cluster and ``W`` is a constant 2.

    Args:
        num_clusters: the granularities (capped at the number of samples of the batch).
        cluster_on: ``"mean"`` of the unit views of a sample, or a view index as a string (``"0"``).
        niter, nredo, seed: k-means settings (official faiss: niter 20, nredo 5, seed = granularity index).
    """

    def __init__(self, num_clusters: Sequence[int] | int = (100, 300), cluster_on: str = "mean",
                 niter: int = 20, nredo: int = 1, seed: int = 0):
        super().__init__()
        self.num_clusters = _granularities(num_clusters)
        if cluster_on != "mean" and not cluster_on.lstrip("-").isdigit():
            raise ValueError(f"cluster_on must be 'mean' or a view index such as '0', got {cluster_on!r}")
        self.cluster_on, self.niter, self.nredo, self.seed = cluster_on, niter, nredo, seed
        self.assign_a: torch.Tensor | None = None
        self.assign_c: torch.Tensor | None = None

    def prepare(self, z: torch.Tensor, extra: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **context: object) -> None:
        """Cluster this step's samples; anchors = local views, candidates = gathered views then ``extra``."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, d = z.shape
        zs = normalize(z.detach())
        base = zs.mean(dim=1) if self.cluster_on == "mean" else zs[:, int(self.cluster_on)]
        all_base = distributed.gather_no_grad(base, distributed.sizes(b, z.device))
        rows_a, rows_c = [], []
        for r, kk in enumerate(self.num_clusters):
            kk = min(kk, all_base.shape[0])
            cent, assign = spherical_kmeans(all_base, kk, self.niter, self.nredo, self.seed + r)
            off = distributed.offset(b, distributed.sizes(b, z.device))
            local = assign[off : off + b].repeat_interleave(k)
            cand = assign.repeat_interleave(k)
            if extra is not None and extra.shape[0] > 0:
                check_embeddings("extra", extra, 2, "[M, D]")
                cand = torch.cat([cand, (normalize(extra.detach()) @ cent.T).argmax(dim=1)])
            rows_a.append(local)
            rows_c.append(cand)
        self.assign_a, self.assign_c = torch.stack(rows_a), torch.stack(rows_c)

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.assign_a is None or self.assign_c is None:
            raise ValueError("ClusterConsensusWeights needs prepare(z, extra) before the loss of each step")
        n, m = scores.shape
        if self.assign_a.shape[1] != n or self.assign_c.shape[1] != m:
            raise ValueError(f"prepared assignments cover a [{self.assign_a.shape[1]}, {self.assign_c.shape[1]}] "
                             f"score matrix, got scores of shape {(n, m)}: call prepare() with this step's z/extra")
        return cluster_consensus_weights(self.assign_a, self.assign_c).to(scores)

    def extra_repr(self) -> str:
        return f"num_clusters={self.num_clusters}, cluster_on={self.cluster_on!r}"


def concentration(z: torch.Tensor, centroids: torch.Tensor, assign: torch.Tensor, temperature: float) -> torch.Tensor:
    """MEOW/PCL concentration ``phi [C]`` (see the module docstring)."""
    k = centroids.shape[0]
    dist = (z - centroids[assign]).norm(dim=1)
    counts = torch.bincount(assign, minlength=k).to(z.dtype)
    sums = torch.zeros(k, dtype=z.dtype, device=z.device).index_add_(0, assign, dist)
    phi = sums / counts.clamp_min(1) / torch.log(counts + 5)
    multi = counts > 1
    if bool(multi.any()):
        phi = torch.where(multi, phi, phi[multi].max())
        lo, hi = torch.quantile(phi, 0.1), torch.quantile(phi, 0.9)
        phi = phi.clamp(lo, hi)
    else:
        phi = torch.ones_like(phi)
    phi = phi.clamp_min(1e-12)
    return temperature * phi / phi.mean()


def proto_nce(z: torch.Tensor, centroids: torch.Tensor, assign: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``-mean_i log softmax_c(z_i . c / phi_c)[assign_i]`` with unit ``z`` and centroids."""
    logits = normalize(z) @ normalize(centroids).T / phi[None, :]
    return -(logits.gather(1, assign[:, None]).squeeze(1) - torch.logsumexp(logits, dim=1)).mean()


class ProtoNCE(nn.Module):
    """ProtoNCE averaged over granularities; clusters ``cluster_on`` (detached; default ``z``).

    Args:
        num_clusters: granularities (capped at N); temperature: ``tau`` (ACM 0.4).
    """

    def __init__(self, num_clusters: Sequence[int] | int = (100, 300), temperature: float = 0.4,
                 niter: int = 20, seed: int = 0):
        super().__init__()
        self.num_clusters = _granularities(num_clusters)
        self.temperature = check_positive("temperature", temperature)
        self.niter, self.seed = niter, seed

    def forward(self, z: torch.Tensor, cluster_on: torch.Tensor | None = None) -> torch.Tensor:
        check_embeddings("z", z, 2, "[N, D]")
        src = z if cluster_on is None else check_embeddings("cluster_on", cluster_on, 2, "[N, D]")
        if src.shape[0] != z.shape[0]:
            raise ValueError(f"cluster_on must have {z.shape[0]} rows like z, got {tuple(src.shape)}")
        zn = normalize(z)
        losses = []
        for r, k in enumerate(self.num_clusters):
            cent, assign = spherical_kmeans(src, min(k, z.shape[0]), self.niter, 1, self.seed + r)
            phi = concentration(zn.detach(), cent.to(zn), assign, self.temperature)
            losses.append(proto_nce(zn, cent.to(zn), assign, phi))
        return torch.stack(losses).mean()


GUARDS = ("normalize", "none")


@register("weights", "adameow", applies_to="partition", paper="Yu et al. 2024 (AdaMEOW, TKDE)",
          summary="learned pair weights MLP(a_i + c_j) with a row-mean guard (needs prepare(z))")
class LearnedPairWeights(PairWeights):
    """AdaMEOW: ``W_ij = sigmoid(w2 . tanh(A a_i + A c_j + b1) + b2)``, guarded by row-mean normalisation.

    Args:
        dim: embedding dim ``d``; hidden: MLP width (official 16).
        guard: ``"normalize"`` (default; rows divided by their mean over valid columns) or ``"none"``
            (official; the loss is unbounded below as ``W -> 0``).
    """

    def __init__(self, dim: int = 128, hidden: int = 16, guard: str = "normalize"):
        super().__init__()
        if not isinstance(dim, int) or dim < 1 or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"dim and hidden must be integers >= 1, got {dim!r}, {hidden!r}")
        self.guard = check_choice("guard", guard, GUARDS)
        self.first = nn.Linear(dim, hidden)
        self.second = nn.Linear(hidden, 1)
        self._a: torch.Tensor | None = None
        self._c: torch.Tensor | None = None

    def prepare(self, z: torch.Tensor, extra: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **context: object) -> None:
        """Keep this step's anchors (local views) and candidates (gathered views, then ``extra``), with grad."""
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, d = z.shape
        a = normalize(z.reshape(b * k, d))
        c = distributed.gather_with_grad(a, distributed.sizes(b * k, z.device))
        if extra is not None and extra.shape[0] > 0:
            check_embeddings("extra", extra, 2, "[M, D]")
            c = torch.cat([c, normalize(extra).to(c.dtype)])
        self._a, self._c = a, c

    def pair_weights(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Unguarded ``W [N, M]`` for anchors ``a [N, d]`` and candidates ``c [M, d]``."""
        wa = a.to(self.first.weight.dtype) @ self.first.weight.T
        wc = c.to(self.first.weight.dtype) @ self.first.weight.T
        h = torch.tanh(wa[:, None, :] + wc[None, :, :] + self.first.bias)
        return torch.sigmoid(h @ self.second.weight[0] + self.second.bias[0])

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self._a is None or self._c is None:
            raise ValueError("LearnedPairWeights needs prepare(z, extra) before the loss of each step")
        if (self._a.shape[0], self._c.shape[0]) != tuple(scores.shape):
            raise ValueError(f"prepared embeddings give a [{self._a.shape[0]}, {self._c.shape[0]}] matrix, got "
                             f"scores of shape {tuple(scores.shape)}: call prepare() with this step's z/extra")
        w = self.pair_weights(self._a, self._c).to(scores.dtype)
        if self.guard == "normalize":
            v = valid.to(w.dtype)
            mean = (w * v).sum(dim=1, keepdim=True) / v.sum(dim=1, keepdim=True).clamp_min(1)
            w = w / mean
        return w

    def extra_repr(self) -> str:
        return f"guard={self.guard!r}"
