"""Graphs: the MovieLens heterogeneous graph, MEOW meta-path views, cluster-weighted negatives, a homogeneous GCN.

Data (``ml100k-hetero``): MovieLens-100k from recbole's files (recbole is never imported) as a heterogeneous graph
with node types user (943), movie (1682), genre (19) and occupation (21) and edge types ``rates`` (user-movie,
100000, rating kept), ``has_genre`` (movie-genre, 2893) and ``works_as`` (user-occupation, 943). Plain torch:
dense/sparse adjacency products on at most 2665 nodes (no torch-geometric).

Task (``target``): ``movie-genre``: movies with exactly one genre, genres with at least ``min_class_count``
such movies (Drama, Comedy, Documentary, Horror, Thriller, Action: 742 movies, 6 classes, majority 0.51);
``user-occupation``: every user, occupations with at least ``min_class_count`` users. The label edges
(``has_genre`` / ``works_as``) are removed from the graph the encoders see. Target features: the node's rating
profile (ratings / 5 over the other side of ``rates``); other node types are featureless (one-hot, i.e. an
embedding table). Protocol: frozen embeddings, a fixed stratified split (``train_frac``, ``split_seed``), linear
probe (:mod:`pairlab.metrics.linear`: accuracy and macro-F1) and weighted kNN. Baselines in every run: the raw
rating-profile features and the randomly initialised meta-path encoder.

Meta-path views (MEOW, Yu & Li SDM 2023; official ``jianxiangyu/MEOW``, ``code_meow/module/meow.py``). Meta-paths
are strings of node letters (U, M, G, O), e.g. ``MUM`` and ``MUOUM`` for movies, ``UMU`` and ``UMGMU`` for users.
Meta-path graph ``A_p``: the ``topk`` neighbours per node by PathSim ``2 C_ij / (C_ii + C_jj)`` of the path counts
``C`` (symmetrised; deviation: MEOW uses every meta-path neighbour, which on MovieLens is almost a complete
graph). Context of ``p``: the node type at the path's middle (U for MUM, O for MUOUM), reached by the
row-normalised product of the adjacencies to it::

    h = ELU(drop(FC_0 X)), h_m = the same on feature-masked X (feat_mask)
    c_p = drop(Agg_p(ELU(C_p E_p)))                                     (E_p: the context type's embedding)
    z_fine   = SemanticAttention_p[ norm(GCN_p(ELU(h + c_p), A_p)), norm(GCN_p(ELU(h_m + c_p), A_p edge-masked)) ]
    z_coarse = GCN(h, mean_p A_p);   projections z = normalize(tanh(Proj z))

Losses (``method``):

- ``meow``: ``-mean_i log(S_ii / sum_j W_ij S_ij)``, ``S = exp(z_coarse z_fine^T / tau)`` with MEOW's weights
  ``W = R - co`` from spherical k-means of the (detached) fine view at ``num_clusters``
  (:func:`pairlab.weights.meow.cluster_consensus_weights`; the positive has ``W = 0``, so it is not in the
  denominator, as official) plus ``lam_proto`` x ProtoNCE on the coarse view with the same clusters
  (:func:`pairlab.weights.meow.proto_nce`; one k-means per granularity and step serves both, ``kmeans_iters``
  10 Lloyd iterations, one restart; official faiss: 20 iterations, 5 restarts).
- ``metapath-infonce``: the same views and encoder, plain InfoNCE (``W = 1``, no prototypes): the ablation.
- ``gcn``: the homogeneous comparison: every node type in one graph (all non-label edges, symmetric), type-wise
  input layers, a 2-layer GCN, GRACE-style views (edge dropping ``edge_drop``, feature masking ``feat_mask``) and
  NT-Xent (cosine, ``tau``) over the target nodes' two views.

Full-batch training (Adam), CPU-sized defaults (hidden 64, 100 epochs). Evaluated embedding: the fine view before
projection (``meow``, ``metapath-infonce``), the GCN output (``gcn``), without masks or dropout.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from pairlab.registry import register

LETTERS = {"U": "user", "M": "movie", "G": "genre", "O": "occupation"}
EDGE_TYPES = {"rates": ("user", "movie"), "has_genre": ("movie", "genre"), "works_as": ("user", "occupation")}
TARGETS = {"movie-genre": ("movie", "has_genre"), "user-occupation": ("user", "works_as")}
DEFAULT_METAPATHS = {"movie-genre": ("MUM", "MUOUM"), "user-occupation": ("UMU", "UMGMU")}
METHODS = ("meow", "metapath-infonce", "gcn")


# ---------------------------------------------------------------------------------------------------------------- data


@dataclass
class HeteroGraph:
    """Node counts and names per type; edges per type as ``(src_type, dst_type, index [2, E])``."""

    num_nodes: dict[str, int]
    names: dict[str, list[str]]
    edges: dict[str, tuple[str, str, torch.Tensor]]
    ratings: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def adjacency(self, src: str, dst: str, drop: tuple[str, ...] = ()) -> torch.Tensor:
        """Dense binary ``[n_src, n_dst]`` over the edge types between ``src`` and ``dst`` (either direction)."""
        a = torch.zeros(self.num_nodes[src], self.num_nodes[dst])
        found = False
        for name, (s, d, idx) in self.edges.items():
            if name in drop:
                continue
            if (s, d) == (src, dst):
                a[idx[0], idx[1]], found = 1.0, True
            elif (s, d) == (dst, src):
                a[idx[1], idx[0]], found = 1.0, True
        if not found:
            raise ValueError(f"no edge type between {src!r} and {dst!r} (dropped: {list(drop)}); "
                             f"edge types: {{{', '.join(f'{k}: {s}-{d}' for k, (s, d, _) in self.edges.items())}}}")
        return a

    def rating_matrix(self) -> torch.Tensor:
        """Dense ``[users, movies]`` ratings (0 = unrated)."""
        _, _, idx = self.edges["rates"]
        r = torch.zeros(self.num_nodes["user"], self.num_nodes["movie"])
        r[idx[0], idx[1]] = self.ratings
        return r


@register("datasets", "ml100k-hetero", summary="MovieLens-100k heterogeneous graph: user, movie, genre, occupation",
          domain="graph", paper="Harper & Konstan 2015 (MovieLens); meta-paths as in MEOW (Yu & Li 2023)")
def load_ml100k_hetero(data_dir: str | os.PathLike | None = None) -> HeteroGraph:
    """The ML-100k graph from recbole's atomic files (node index = file id - 1 for users and movies)."""
    from pairlab.domains.seqrec import read_atomic, recbole_ml100k_dir

    d = Path(data_dir) if data_dir is not None else recbole_ml100k_dir()
    items, users = read_atomic(d / "ml-100k.item"), read_atomic(d / "ml-100k.user")
    n_movie, n_user = max(int(r["item_id"]) for r in items), max(int(r["user_id"]) for r in users)
    genres = sorted({g for r in items for g in r.get("class", "").split()})
    occs = sorted({r["occupation"] for r in users})
    mg = [(int(r["item_id"]) - 1, genres.index(g)) for r in items for g in r.get("class", "").split()]
    uo = [(int(r["user_id"]) - 1, occs.index(r["occupation"])) for r in users]
    ur, rt = [], []
    for r in read_atomic(d / "ml-100k.inter"):
        u, m = int(r["user_id"]) - 1, int(r["item_id"]) - 1
        if not (0 <= u < n_user and 0 <= m < n_movie):
            raise ValueError(f"interaction ({u + 1}, {m + 1}) outside the user/item files")
        ur.append((u, m))
        rt.append(float(r["rating"]))
    titles = [""] * n_movie
    for r in items:
        titles[int(r["item_id"]) - 1] = r.get("movie_title", "")
    return HeteroGraph(
        num_nodes={"user": n_user, "movie": n_movie, "genre": len(genres), "occupation": len(occs)},
        names={"user": [str(i + 1) for i in range(n_user)], "movie": titles, "genre": genres, "occupation": occs},
        edges={"rates": ("user", "movie", torch.tensor(ur).T), "has_genre": ("movie", "genre", torch.tensor(mg).T),
               "works_as": ("user", "occupation", torch.tensor(uo).T)},
        ratings=torch.tensor(rt))


def node_labels(g: HeteroGraph, target: str, min_class_count: int = 30
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """``(nodes [N_l], labels [N_l], class names)`` of the task (see the module docstring)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    ntype, etype = TARGETS[target]
    _, _, idx = g.edges[etype]
    n = g.num_nodes[ntype]
    count = torch.bincount(idx[0], minlength=n)
    single = count == 1
    lab = torch.full((n,), -1, dtype=torch.long)
    lab[idx[0][single[idx[0]]]] = idx[1][single[idx[0]]]
    names = g.names["genre" if etype == "has_genre" else "occupation"]
    sizes = torch.bincount(lab[lab >= 0], minlength=len(names))
    keep_cls = [c for c in range(len(names)) if int(sizes[c]) >= min_class_count and names[c] != "unknown"]
    if len(keep_cls) < 2:
        raise ValueError(f"min_class_count={min_class_count} leaves {len(keep_cls)} classes; lower it")
    remap = torch.full((len(names),), -1, dtype=torch.long)
    remap[torch.tensor(keep_cls)] = torch.arange(len(keep_cls))
    lab = torch.where(lab >= 0, remap[lab.clamp_min(0)], lab)
    nodes = torch.nonzero(lab >= 0).flatten()
    return nodes, lab[nodes], tuple(names[c] for c in keep_cls)


def stratified_split(labels: torch.Tensor, train_frac: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of a stratified ``train_frac`` / rest split (every class on both sides when it has 2+ members)."""
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must lie in (0, 1), got {train_frac}")
    gen = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for c in torch.unique(labels):
        pos = torch.nonzero(labels == c).flatten()
        pos = pos[torch.randperm(pos.numel(), generator=gen)]
        k = min(max(1, round(train_frac * pos.numel())), max(1, pos.numel() - 1))
        tr.append(pos[:k])
        te.append(pos[k:])
    return torch.cat(tr).sort().values, torch.cat(te).sort().values


# ------------------------------------------------------------------------------------------------- graph construction


def parse_metapath(path: str, target_type: str, label_edge: str) -> list[str]:
    """``"MUOUM"`` -> node types; checks the ends are the target type and every hop has a (non-label) edge type."""
    if len(path) < 3 or any(ch not in LETTERS for ch in path):
        raise ValueError(f"meta-path must be a string of at least 3 letters from {sorted(LETTERS)}, got {path!r}")
    types = [LETTERS[ch] for ch in path]
    if types[0] != target_type or types[-1] != target_type:
        raise ValueError(f"meta-path {path!r} must start and end with the target type {target_type!r}")
    label_pair = set(EDGE_TYPES[label_edge])
    for a, b in zip(types, types[1:], strict=False):
        if {a, b} == label_pair:
            raise ValueError(f"meta-path {path!r} uses the label edge {label_edge!r} ({a}-{b}): it would leak labels")
        if not any({a, b} == {s, d} for s, d in EDGE_TYPES.values()):
            raise ValueError(f"meta-path {path!r}: no edge type between {a!r} and {b!r}")
    return types


def metapath_counts(g: HeteroGraph, types: list[str], drop: tuple[str, ...] = ()) -> torch.Tensor:
    """Path-instance counts ``C`` along the node types ``types`` (product of binary adjacencies).

    A palindromic path (``MUOUM``) is computed as ``H H^T`` with ``H`` the counts up to its middle type.
    """
    if len(types) >= 3 and len(types) % 2 == 1 and types == types[::-1]:
        h = metapath_counts(g, types[: len(types) // 2 + 1], drop)
        return h @ h.T
    c = g.adjacency(types[0], types[1], drop)
    for a, b in zip(types[1:], types[2:], strict=False):
        c = c @ g.adjacency(a, b, drop)
    return c


def pathsim_topk(counts: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetric ``edge_index [2, E]`` of each node's ``k`` best PathSim neighbours (self excluded, sim > 0)."""
    diag = counts.diagonal()
    sim = 2 * counts / (diag[:, None] + diag[None, :]).clamp_min(1e-12)
    sim.fill_diagonal_(-1.0)
    k = min(k, counts.shape[0] - 1)
    val, idx = sim.topk(k, dim=1)
    rows = torch.arange(counts.shape[0])[:, None].expand_as(idx)
    keep = val > 0
    e = torch.stack([rows[keep], idx[keep]])
    e = torch.cat([e, e.flip(0)], dim=1)
    return torch.unique(e, dim=1)


def gcn_adjacency(edge_index: torch.Tensor, n: int, drop: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Sparse ``D^-1/2 (A + I) D^-1/2`` of an undirected ``edge_index`` (each edge dropped w.p. ``drop``)."""
    e = edge_index
    if drop > 0:
        e = e[:, torch.rand(e.shape[1], generator=generator) >= drop]
    loops = torch.arange(n).repeat(2, 1)
    e = torch.cat([e, loops], dim=1)
    w = torch.ones(e.shape[1])
    deg = torch.zeros(n).index_add_(0, e[0], w)
    w = w * deg[e[0]].rsqrt() * deg[e[1]].rsqrt()
    return torch.sparse_coo_tensor(e, w, (n, n), check_invariants=False).coalesce()


def row_normalize(a: torch.Tensor) -> torch.Tensor:
    return a / a.sum(1, keepdim=True).clamp_min(1e-12)


# ------------------------------------------------------------------------------------------------------------ encoders


class GCNLayer(nn.Module):
    """``PReLU(Â X W)`` with a sparse or dense ``Â``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.lin = nn.Linear(dim_in, dim_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(dim_out))
        self.act = nn.PReLU()
        nn.init.xavier_normal_(self.lin.weight, gain=1.414)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        h = torch.sparse.mm(adj, h) if adj.is_sparse else adj @ h
        return self.act(h + self.bias)


class SemanticAttention(nn.Module):
    """HAN's semantic attention: ``beta_p = softmax_p mean_i q . tanh(W z_p,i + b)``; returns ``sum_p beta_p z_p``."""

    def __init__(self, dim: int, att_drop: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.q = nn.Parameter(torch.empty(1, dim))
        nn.init.xavier_normal_(self.fc.weight, gain=1.414)
        nn.init.xavier_normal_(self.q, gain=1.414)
        self.drop = nn.Dropout(att_drop)
        self.last_beta: torch.Tensor | None = None

    def forward(self, zs: list[torch.Tensor]) -> torch.Tensor:
        q = self.drop(self.q)
        scores = torch.stack([(torch.tanh(self.fc(z)).mean(0) * q).sum() for z in zs])
        beta = torch.softmax(scores, dim=0)
        self.last_beta = beta.detach()
        return sum(b * z for b, z in zip(beta, zs, strict=True))


class MetaPathEncoder(nn.Module):
    """MEOW's fine (meta-path context) and coarse (mean meta-path graph) views of the target nodes."""

    def __init__(self, in_dim: int, ctx_sizes: list[int], hidden: int = 64, feat_drop: float = 0.3):
        super().__init__()
        self.fc0 = nn.Linear(in_dim, hidden)
        self.ctx = nn.ModuleList(nn.Embedding(n, hidden) for n in ctx_sizes)
        self.agg = nn.ModuleList(nn.Linear(hidden, hidden) for _ in ctx_sizes)
        self.gcn = nn.ModuleList(GCNLayer(hidden, hidden) for _ in ctx_sizes)
        self.coarse_gcn = GCNLayer(hidden, hidden)
        self.att = SemanticAttention(hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(feat_drop)
        for m in (self.fc0, *self.agg, self.proj):
            nn.init.xavier_normal_(m.weight, gain=1.414)
        for e in self.ctx:
            nn.init.xavier_normal_(e.weight, gain=1.414)

    def contexts(self, ctx_adj: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.drop(agg(F.elu(a @ emb.weight))) for a, emb, agg in zip(ctx_adj, self.ctx, self.agg, strict=True)]

    def fine(self, x: torch.Tensor, ctx_adj: list[torch.Tensor], adjs: list[torch.Tensor],
             x_mask: torch.Tensor | None = None, adjs_mask: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Fine view ``[N, h]``; with the masked inputs (training) the attention also sees the masked branches."""
        h = F.elu(self.drop(self.fc0(x)))
        cs = self.contexts(ctx_adj)
        zs = [F.normalize(gcn(F.elu(h + c), a), dim=1) for gcn, c, a in zip(self.gcn, cs, adjs, strict=True)]
        if x_mask is not None and adjs_mask is not None:
            hm = F.elu(self.drop(self.fc0(x_mask)))
            zs += [F.normalize(gcn(F.elu(hm + c), a), dim=1) for gcn, c, a in zip(self.gcn, cs, adjs_mask, strict=True)]
        return self.att(zs)

    def coarse(self, x: torch.Tensor, adj_mean: torch.Tensor) -> torch.Tensor:
        return self.coarse_gcn(F.elu(self.drop(self.fc0(x))), adj_mean)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.tanh(self.proj(z)), dim=1)


class HomogeneousGCN(nn.Module):
    """Type-wise input layers (features or embedding tables) then a 2-layer GCN on the merged graph."""

    def __init__(self, in_dims: dict[str, int | None], sizes: dict[str, int], hidden: int = 64):
        super().__init__()
        self.order = list(sizes)
        self.inp = nn.ModuleDict({t: (nn.Linear(d, hidden) if d is not None else nn.Embedding(sizes[t], hidden))
                                  for t, d in in_dims.items()})
        self.g1, self.g2 = GCNLayer(hidden, hidden), GCNLayer(hidden, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, hidden))

    def forward(self, feats: dict[str, torch.Tensor], adj: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.inp[t](feats[t]) if isinstance(self.inp[t], nn.Linear) else self.inp[t].weight
                       for t in self.order])
        return self.g2(self.g1(h, adj), adj)


# ------------------------------------------------------------------------------------------------------------ protocol


def macro_f1(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Unweighted mean over the classes present in ``y`` of ``2 TP / (2 TP + FP + FN)``."""
    f1s = []
    for c in torch.unique(y):
        tp = float(((pred == c) & (y == c)).sum())
        fp = float(((pred == c) & (y != c)).sum())
        fn = float(((pred != c) & (y == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
    return sum(f1s) / len(f1s)


def probe(emb: torch.Tensor, nodes: torch.Tensor, labels: torch.Tensor, train_pos: torch.Tensor,
          test_pos: torch.Tensor, knn_k: int = 10) -> dict[str, float]:
    """Linear probe (accuracy, macro-F1) and weighted kNN accuracy of frozen node embeddings."""
    from pairlab.metrics.knn import knn_accuracy
    from pairlab.metrics.linear import fit_linear, standardize

    x = emb[nodes].float()
    xtr, xte = x[train_pos], x[test_pos]
    ytr, yte = labels[train_pos], labels[test_pos]
    s_tr, s_te = standardize(xtr, xte)
    w, b = fit_linear(s_tr, ytr, int(labels.max()) + 1)
    pred = (s_te @ w.T + b).argmax(1)
    return {"linear_acc": float((pred == yte).float().mean()), "macro_f1": macro_f1(pred, yte),
            "knn_acc": knn_accuracy(xtr, ytr, xte, yte, k=knn_k, temperature=0.1)}


# -------------------------------------------------------------------------------------------------------------- config


class GraphConfig(BaseModel):
    """A heterogeneous-graph run (``domain: graph``)."""

    model_config = ConfigDict(extra="forbid")
    domain: str = "graph"
    name: str = "graph-meow"
    dataset: str = "ml100k-hetero"
    data_dir: str | None = None
    target: str = "movie-genre"
    min_class_count: int = Field(30, ge=2)
    method: str = "meow"
    metapaths: tuple[str, ...] | None = None
    topk: int = Field(20, ge=1)
    hidden: int = Field(64, ge=2)
    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    temperature: float = Field(0.5, gt=0)
    feat_drop: float = Field(0.3, ge=0, lt=1)
    feat_mask: float = Field(0.3, ge=0, lt=1)
    adj_mask: float = Field(0.2, ge=0, lt=1)
    edge_drop: tuple[float, float] = (0.2, 0.3)
    num_clusters: tuple[int, ...] = (40, 120)
    lam_proto: float = Field(1.0, ge=0)
    proto_temperature: float = Field(0.4, gt=0)
    kmeans_iters: int = Field(10, ge=1)
    train_frac: float = Field(0.5, gt=0, lt=1)
    split_seed: int = 0
    knn_k: int = Field(10, ge=1)
    seed: int = 0
    runs_dir: str = "runs"
    plots: bool = True
    baselines: bool = True


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> GraphConfig:
    """Validate a mapping into a :class:`GraphConfig`; errors become one ValueError naming the keys."""
    try:
        cfg = GraphConfig.model_validate(data or {})
    except ValidationError as e:
        from pairlab.domains.seqrec import _errors

        raise ValueError(f"invalid graph configuration ({source}): {_errors(e)}. Valid keys: "
                         f"{sorted(GraphConfig.model_fields)}") from None
    if cfg.domain != "graph":
        raise ValueError(f"domain must be 'graph' for a GraphConfig, got {cfg.domain!r}")
    if cfg.dataset != "ml100k-hetero":
        raise ValueError(f"dataset must be 'ml100k-hetero', got {cfg.dataset!r}")
    if cfg.target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, got {cfg.target!r}")
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {cfg.method!r}")
    ntype, etype = TARGETS[cfg.target]
    for p in cfg.metapaths or DEFAULT_METAPATHS[cfg.target]:
        parse_metapath(p, ntype, etype)
    return cfg


# -------------------------------------------------------------------------------------------------------------- runner


@dataclass
class Prepared:
    """Everything the encoders need for one task: features, meta-path graphs, contexts, the merged graph."""

    x: torch.Tensor
    mp_edges: list[torch.Tensor]
    adjs: list[torch.Tensor]
    adj_mean: torch.Tensor
    ctx_adj: list[torch.Tensor]
    ctx_sizes: list[int]
    homo_edges: torch.Tensor
    homo_sizes: dict[str, int]
    homo_feats: dict[str, torch.Tensor]
    target_offset: int


def prepare(g: HeteroGraph, cfg: GraphConfig) -> Prepared:
    ntype, etype = TARGETS[cfg.target]
    drop = (etype,)
    r = g.rating_matrix() / 5.0
    x = r.T.contiguous() if ntype == "movie" else r
    mp_edges, ctx_adj, ctx_sizes = [], [], []
    n = g.num_nodes[ntype]
    for p in cfg.metapaths or DEFAULT_METAPATHS[cfg.target]:
        types = parse_metapath(p, ntype, etype)
        mp_edges.append(pathsim_topk(metapath_counts(g, types, drop), cfg.topk))
        mid = len(types) // 2
        ctx_adj.append(row_normalize(metapath_counts(g, types[: mid + 1], drop)))
        ctx_sizes.append(g.num_nodes[types[mid]])
    adjs = [gcn_adjacency(e, n) for e in mp_edges]
    adj_mean = (sum(a.to_dense() for a in adjs) / len(adjs)).to_sparse()
    order = list(g.num_nodes)
    off = {t: sum(g.num_nodes[u] for u in order[: order.index(t)]) for t in order}
    es = []
    for name, (s, d, idx) in g.edges.items():
        if name in drop:
            continue
        e = torch.stack([idx[0] + off[s], idx[1] + off[d]])
        es += [e, e.flip(0)]
    feats = {t: (x if t == ntype else torch.zeros(0)) for t in order}
    return Prepared(x, mp_edges, adjs, adj_mean, ctx_adj, ctx_sizes, torch.cat(es, dim=1), dict(g.num_nodes),
                    feats, off[ntype])


def feature_mask(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero a random fraction ``p`` of the feature columns (the same columns for every node, as GRACE/MEOW)."""
    keep = (torch.rand(x.shape[1], generator=generator) >= p).to(x.dtype)
    return x * keep


def _meow_step(enc: MetaPathEncoder, pr: Prepared, cfg: GraphConfig, gen: torch.Generator) -> torch.Tensor:
    from pairlab.nce import nce
    from pairlab.weights.meow import cluster_consensus_weights, concentration, proto_nce, spherical_kmeans

    n = pr.x.shape[0]
    xm = feature_mask(pr.x, cfg.feat_mask, gen)
    adjs_m = [gcn_adjacency(e, n, cfg.adj_mask, gen) for e in pr.mp_edges]
    zf = enc.project(enc.fine(pr.x, pr.ctx_adj, pr.adjs, xm, adjs_m))
    zc = enc.project(enc.coarse(pr.x, pr.adj_mean))
    scores = zc @ zf.T / cfg.temperature
    targets = torch.eye(n, dtype=torch.bool)
    if cfg.method != "meow":
        return nce(scores, targets).loss
    clusters = [spherical_kmeans(zf.detach(), min(k, n), cfg.kmeans_iters, 1, cfg.seed * 131 + r)
                for r, k in enumerate(cfg.num_clusters)]
    weights = cluster_consensus_weights(torch.stack([a for _, a in clusters]))
    loss = nce(scores, targets, weights=weights).loss
    if cfg.lam_proto > 0:  # ProtoNCE on the coarse view with the fine view's clusters (one k-means for both)
        protos = [proto_nce(zc, c, a, concentration(zc.detach(), c, a, cfg.proto_temperature)) for c, a in clusters]
        loss = loss + cfg.lam_proto * torch.stack(protos).mean()
    return loss


def _gcn_step(enc: HomogeneousGCN, pr: Prepared, cfg: GraphConfig, gen: torch.Generator, obj) -> torch.Tensor:
    n_all = sum(pr.homo_sizes.values())
    n = pr.x.shape[0]
    zs = []
    for v in range(2):
        feats = dict(pr.homo_feats)
        tgt = next(t for t, f in feats.items() if f.numel())
        feats[tgt] = feature_mask(pr.x, cfg.feat_mask, gen)
        h = enc(feats, gcn_adjacency(pr.homo_edges, n_all, cfg.edge_drop[v], gen))
        zs.append(enc.head(h[pr.target_offset: pr.target_offset + n]))
    return obj(torch.stack(zs, dim=1))


def build_encoder(cfg: GraphConfig, pr: Prepared) -> nn.Module:
    if cfg.method == "gcn":
        ntype = TARGETS[cfg.target][0]
        dims = {t: (pr.x.shape[1] if t == ntype else None) for t in pr.homo_sizes}
        return HomogeneousGCN(dims, pr.homo_sizes, cfg.hidden)
    return MetaPathEncoder(pr.x.shape[1], pr.ctx_sizes, cfg.hidden, cfg.feat_drop)


@torch.no_grad()
def embed(enc: nn.Module, pr: Prepared) -> torch.Tensor:
    """Evaluation embedding of the target nodes (no masks, no dropout)."""
    was = enc.training
    enc.eval()
    if isinstance(enc, HomogeneousGCN):
        n_all, n = sum(pr.homo_sizes.values()), pr.x.shape[0]
        out = enc(pr.homo_feats, gcn_adjacency(pr.homo_edges, n_all))[pr.target_offset: pr.target_offset + n]
    else:
        out = enc.fine(pr.x, pr.ctx_adj, pr.adjs)
    enc.train(was)
    return out


def fit(cfg: GraphConfig, pr: Prepared, log=None) -> tuple[nn.Module, list[float]]:
    """Full-batch contrastive training of ``cfg.method``'s encoder; returns it and the per-epoch loss."""
    from pairlab.objectives import NTXent

    enc = build_encoder(cfg, pr)
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7)
    obj = NTXent(temperature=cfg.temperature) if cfg.method == "gcn" else None
    history = []
    enc.train()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        loss = _gcn_step(enc, pr, cfg, gen, obj) if cfg.method == "gcn" else _meow_step(enc, pr, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if not math.isfinite(history[-1]):
            raise ValueError(f"training diverged at epoch {epoch + 1}: loss {history[-1]}")
        if log is not None:
            row = {"epoch": epoch + 1, "loss": history[-1], "epoch_s": time.perf_counter() - t0}
            att = getattr(getattr(enc, "att", None), "last_beta", None)
            if att is not None:
                row["semantic_attention"] = [round(float(b), 4) for b in att]
            log(row)
    return enc, history


def train(cfg: GraphConfig, *, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train ``cfg.method`` on the ML-100k graph; linear-probe node classification; writes the run dir."""
    from pairlab.domains import RunDir, fit_progress, plot_history

    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    rd.write_config(cfg)
    g = load_ml100k_hetero(cfg.data_dir)
    nodes, labels, classes = node_labels(g, cfg.target, cfg.min_class_count)
    tr, te = stratified_split(labels, cfg.train_frac, cfg.split_seed)
    pr = prepare(g, cfg)
    with fit_progress(cfg.name, cfg.epochs, quiet) as tick:  # a bar on a terminal, every 10th epoch when piped

        def log(row: dict[str, Any]) -> None:
            rd.log(row)
            tick(f"epoch {row['epoch']}/{cfg.epochs} loss {row['loss']:.4f}",
                 show=row["epoch"] % 10 == 0 or row["epoch"] == cfg.epochs)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            random_enc = MetaPathEncoder(pr.x.shape[1], pr.ctx_sizes, cfg.hidden, cfg.feat_drop)
            torch.manual_seed(cfg.seed)
            t0 = time.perf_counter()
            enc, history = fit(cfg, pr, log)
            train_s = time.perf_counter() - t0
    emb = embed(enc, pr)
    m: dict[str, Any] = {"dataset": cfg.dataset, "target": cfg.target, "method": cfg.method, "classes": list(classes),
                         "labelled": int(nodes.numel()), "train_nodes": int(tr.numel()), "test_nodes": int(te.numel()),
                         "majority_acc": float((labels[te] == torch.bincount(labels[tr]).argmax()).float().mean()),
                         "metapath_edges": [int(e.shape[1]) for e in pr.mp_edges], "epochs": cfg.epochs,
                         "train_s": train_s}
    m.update(probe(emb, nodes, labels, tr, te, cfg.knn_k))
    from pairlab.metrics.geometry import effective_rank

    m["effective_rank"] = effective_rank(emb[nodes])
    keys = ("linear_acc", "macro_f1", "knn_acc")
    board = {cfg.name: {k: m[k] for k in keys}}
    baselines: list[str] = []
    if cfg.baselines:
        raw = probe(pr.x, nodes, labels, tr, te, cfg.knn_k)
        rnd = probe(embed(random_enc, pr), nodes, labels, tr, te, cfg.knn_k)
        m.update({f"raw_{k}": v for k, v in raw.items()})
        m.update({f"random_{k}": v for k, v in rnd.items()})
        board["raw rating profile"] = raw
        board["random-init meta-path encoder"] = rnd
        board["majority class"] = {"linear_acc": m["majority_acc"]}
        baselines = ["raw rating profile", "random-init meta-path encoder", "majority class"]
    m["leaderboard"], m["leaderboard_baselines"] = board, baselines
    m["leaderboard_group"] = f"{cfg.dataset}:{cfg.target}"
    if cfg.plots:
        from pairlab.report.plots import plot_projection

        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png")),
                      "projection": str(plot_projection(emb[nodes[te]], labels[te], classes,
                                                        rd.path / "projection.png"))}
    m["history"] = history
    return rd.finish(m, t_start)


#: (claim, method expected better, method expected worse, metric) checked in direction on the leaderboard
GRAPH_CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("MEOW (Yu & Li 2023): cluster-weighted negatives + prototypes beat plain meta-path InfoNCE", "graph-meow",
     "graph-metapath-infonce", "linear_acc"),
    ("MEOW (Yu & Li 2023): cluster-weighted negatives + prototypes beat plain meta-path InfoNCE", "graph-meow",
     "graph-metapath-infonce", "macro_f1"),
    ("Heterogeneous meta-path views beat a homogeneous GCN view", "graph-meow", "graph-gcn", "linear_acc"),
    ("Heterogeneous meta-path views beat a homogeneous GCN view", "graph-meow", "graph-gcn", "macro_f1"),
    ("Contrastive pre-training beats the raw rating-profile features", "graph-meow", "raw rating profile",
     "linear_acc"),
)
