"""Neighbour positives from a frozen embedding index (SRA-CL style), and semantic neighbour substitution.

Paper: Cui et al., "Semantic Retrieval Augmented Contrastive Learning for Sequential Recommendation" (SRA-CL,
NeurIPS 2025). Official code ``ziqiangcui/SRA-CL`` (``utils.py::recall_similar_seqs``, ``replace_input_ids``).
A frozen semantic index ``E [N, D]`` (e.g. sentence embeddings of LLM-written descriptions) gives neighbours::

    nbrs[i] = top-k_j cos(E_i, E_j), j != i          (self masked explicitly; the official code drops rank 0,
                                                     which breaks on duplicate texts)

- :func:`neighbour_table` builds the id -> ``k`` neighbour-id table (exact torch top-k, chunked; faiss
  ``IndexFlatIP`` when installed and ``backend="faiss"``/``"auto"``).
- :func:`substitute_with_neighbours` is SRA-CL's intra-sequence view: each non-pad item is replaced, with
  probability ``p`` (0.2), by a uniform choice among its neighbours.
- :class:`NeighbourPositives` (candidates): each sample's ``k`` nearest index entries become positives,
  appended as views ``K .. K+k-1`` (constants). The query is the mean of the sample's unit views
  (``query="mean"``) or one view; with ``ids`` in the context the sample's own index row is excluded. The
  attention-pooled learnable positive of SRA-CL (neighbour sequences re-encoded with gradient) needs the
  model and is out of scope here.

In ``pairlab train`` (:meth:`NeighbourPositives.setup`) the frozen index is built once before training from the
encoder as it starts (random init), since images come with no semantic embedding: ``frozen="random_init"``
(default) indexes the initial encoder's embeddings of the training set and each step's query is the mean of the
sample's current views; ``frozen="pixels"`` fixes each sample's ``k`` neighbours by raw-pixel cosine (an
offline id -> neighbour table, SRA-CL's ``user_nbrs``) and appends their initial-encoder embeddings. The sample
itself is excluded through the batch's ``ids``. The index does not follow training (SRA-CL's is frozen too).
"""

from __future__ import annotations

from typing import Any

import torch

from pairlab._validate import check_choice, check_embeddings
from pairlab.candidates.base import CandidateGenerator, Candidates, check_views
from pairlab.registry import register
from pairlab.scores import normalize

BACKENDS = ("auto", "torch", "faiss")
FROZEN = ("random_init", "pixels")


def _faiss():
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        return None
    return faiss


def search(index: torch.Tensor, queries: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
           backend: str = "auto", chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine top-``k`` of ``queries [B, D]`` in ``index [N, D]``: ``(scores [B, k], ids [B, k])``, descending.

    ``exclude [B]``: an index row to skip per query (``-1``: none). ``backend="faiss"`` requires faiss.
    """
    check_choice("backend", backend, BACKENDS)
    n = index.shape[0]
    kk = k + (1 if exclude is not None else 0)
    top = n - (1 if exclude is not None else 0)
    if not 1 <= k <= top:
        raise ValueError(f"k must lie in [1, {top}] for an index of {n} rows, got {k}")
    fa = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and fa is None:
        raise ValueError("backend='faiss' but faiss is not installed (pip install faiss-cpu), use 'torch'")
    xi, xq = normalize(index.detach()).float(), normalize(queries.detach()).float()
    if fa is not None:
        ix = fa.IndexFlatIP(xi.shape[1])
        ix.add(xi.cpu().numpy())
        s, i = ix.search(xq.cpu().numpy(), kk)
        s, i = torch.from_numpy(s).to(queries.device), torch.from_numpy(i).long().to(queries.device)
    else:
        parts_s, parts_i = [], []
        for a in range(0, xq.shape[0], chunk):
            sim = xq[a : a + chunk] @ xi.T
            if exclude is not None:
                ex = exclude[a : a + chunk].to(sim.device)
                rows = torch.nonzero(ex >= 0).flatten()
                sim[rows, ex[rows]] = float("-inf")
            top = sim.topk(k, dim=1)
            parts_s.append(top.values)
            parts_i.append(top.indices)
        return torch.cat(parts_s), torch.cat(parts_i)
    if exclude is not None:  # faiss returned k+1: drop the excluded row (or the last one)
        keep = i != exclude.to(i.device)[:, None]
        keep[keep.sum(1) > k, -1] = False
        s, i = s[keep].view(-1, k), i[keep].view(-1, k)
    return s, i


def neighbour_table(embeddings: torch.Tensor, k: int = 10, backend: str = "auto") -> torch.Tensor:
    """``[N, k]`` ids of each row's ``k`` most similar other rows (self excluded explicitly)."""
    check_embeddings("embeddings", embeddings, 2, "[N, D]")
    n = embeddings.shape[0]
    return search(embeddings, embeddings, k, exclude=torch.arange(n, device=embeddings.device), backend=backend)[1]


def substitute_with_neighbours(seq: torch.Tensor, table: torch.Tensor, p: float = 0.2, pad: int = 0,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """SRA-CL view: each non-``pad`` id of ``seq [..., L]`` is replaced w.p. ``p`` by a random neighbour."""
    if seq.dtype.is_floating_point or table.ndim != 2:
        raise ValueError(f"seq must be an integer tensor and table [N, k], got {seq.dtype} and {tuple(table.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    real = seq != pad
    if bool(real.any()) and int(seq[real].max()) >= table.shape[0]:
        raise ValueError(f"seq holds ids >= {table.shape[0]} (the table's rows)")
    r = torch.rand(seq.shape, generator=generator).to(seq.device)
    pick = torch.randint(table.shape[1], seq.shape, generator=generator).to(seq.device)
    nb = table.to(seq.device)[seq.clamp_min(0).clamp_max(table.shape[0] - 1), pick]
    return torch.where(real & (r < p), nb, seq)


@register("candidates", "neighbours", paper="Cui et al. 2025 (SRA-CL, NeurIPS)", needs=["set_index"],
          summary="positives retrieved from a frozen embedding index, appended as views")
class NeighbourPositives(CandidateGenerator):
    """``k`` nearest entries of a frozen index appended to each sample's views as positives.

    Args:
        index: ``[N, D]`` frozen embeddings (same space as ``z``), or later via :meth:`set_index`.
        k: neighbours per sample; query: ``"mean"`` of the unit views or a view index as a string.
        backend: ``"auto"`` (faiss when installed), ``"torch"`` (exact top-k) or ``"faiss"``.
        frozen: what :meth:`setup` indexes in ``pairlab train``: ``"random_init"`` or ``"pixels"`` (module doc).
    """

    index: torch.Tensor
    table: torch.Tensor

    def __init__(self, index: torch.Tensor | None = None, k: int = 1, query: str = "mean", backend: str = "auto",
                 frozen: str = "random_init"):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if query != "mean" and not query.lstrip("-").isdigit():
            raise ValueError(f"query must be 'mean' or a view index such as '0', got {query!r}")
        self.k, self.query, self.backend = k, query, check_choice("backend", backend, BACKENDS)
        self.frozen = check_choice("frozen", frozen, FROZEN)
        self.register_buffer("index", torch.zeros(0, 1))
        self.register_buffer("table", torch.zeros(0, k, dtype=torch.long))
        if index is not None:
            self.set_index(index)

    def set_index(self, index: torch.Tensor, table: torch.Tensor | None = None) -> None:
        """Frozen ``index [N, D]``; optional ``table [N, >= k]`` of neighbour ids per index row (then a sample
        with ``ids`` takes its neighbours from the table instead of a search)."""
        check_embeddings("index", index, 2, "[N, D]")
        self.index = index.detach().clone()
        if table is None:
            self.table = torch.zeros(0, self.k, dtype=torch.long, device=self.index.device)
            return
        if table.ndim != 2 or table.shape[0] != index.shape[0] or table.shape[1] < self.k or table.is_floating_point():
            raise ValueError(f"table must be an integer tensor [N={index.shape[0]}, >= k={self.k}], "
                             f"got {tuple(table.shape)} {table.dtype}")
        self.table = table[:, : self.k].long().to(self.index.device).clone()

    def setup(self, context: Any) -> None:
        """``pairlab train`` hook: the frozen index of ``frozen`` (module docstring); a set index is kept."""
        if self.index.shape[0]:
            return
        z = context.encode_dataset()
        table = neighbour_table(context.raw_features(), self.k, self.backend) if self.frozen == "pixels" else None
        self.set_index(z, table)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        z, _ = check_views(z, None)
        if self.index.shape[0] == 0:
            raise ValueError("NeighbourPositives has no index: pass index= or call set_index(embeddings)")
        if self.index.shape[1] != z.shape[2]:
            raise ValueError(f"index dim {self.index.shape[1]} must match the dim of z, got {tuple(z.shape)}")
        zn = normalize(z.detach())
        q = zn.mean(dim=1) if self.query == "mean" else zn[:, int(self.query)]
        ids = context.get("ids")
        exclude = None
        if ids is not None:
            from pairlab.candidates.base import check_ids

            exclude = check_ids(ids, z.shape[0], self.index.shape[0])
        if exclude is not None and self.table.shape[0]:
            nb = self.table[exclude.to(self.table.device)]
        else:
            _, nb = search(self.index, q, self.k, exclude, self.backend)
        pos = self.index.to(z)[nb.to(self.index.device)]  # [B, k, D]
        return Candidates(views=torch.cat([z, pos.to(z.device)], dim=1)).validate(z)
