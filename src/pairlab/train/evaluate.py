"""Evaluation of a trained encoder on frozen features, with the raw-pixel and random-init baselines.

Protocol (identical for the three rows ``learned``, ``raw`` pixels and ``random``-init encoder):
weighted kNN (cosine, ``k=20``, ``T=0.07``; :mod:`pairlab.metrics.knn`) and a linear probe on
standardised features (:mod:`pairlab.metrics.linear`), trained on the training split and scored on the
test split. The encoder's feature is the backbone output (pre-projection), as in SimCLR.

Geometry of the learned embedding, on ``geometry_samples`` test samples with two augmented views each
(views drawn from a fixed seed by the run's own views class with ``K=2``, :func:`two_views`: image
:class:`~pairlab.data.views.Views` or :class:`~pairlab.data.user.VectorViews`): alignment and uniformity
(Wang & Isola 2020) and positive/negative score histograms on the projection output ``z`` (the space the
objective scores); effective rank (Roy & Vetterli 2007) of the backbone features of the test set and of ``z``.

Progress: one rich bar over the feature-extraction batches, the geometry pass and each kNN / linear probe
(:func:`pairlab.train.tracking.progress`), hidden with ``quiet=True`` or when stdout is not a terminal.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from pairlab.data.datasets import ImageData, to_float
from pairlab.metrics.geometry import alignment, effective_rank, uniformity
from pairlab.metrics.histograms import pos_neg_scores, score_histograms
from pairlab.metrics.knn import knn_accuracy
from pairlab.metrics.linear import linear_probe_accuracy
from pairlab.train.config import EvalConfig
from pairlab.train.tracking import progress

BATCH = 2048


@torch.no_grad()
def extract(fn, x: torch.Tensor, batch: int = BATCH, device: str = "cpu", bar: Any = None) -> torch.Tensor:
    """Apply ``fn`` to uint8/float images in batches; returns float32 CPU features (``bar.advance()`` per batch)."""
    out = []
    for i in range(0, x.shape[0], batch):
        out.append(fn(to_float(x[i : i + batch]).to(device)).float().cpu())
        if bar is not None:
            bar.advance()
    return torch.cat(out) if out else torch.empty(0)


def probe(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
          cfg: EvalConfig, bar: Any = None, name: str = "") -> dict[str, float]:
    """kNN and linear-probe accuracies of one feature set (``bar`` advances once after each)."""
    if bar is not None:
        bar.update(status=f"kNN ({name})")
    knn = knn_accuracy(train_f, train_y, test_f, test_y, k=cfg.knn_k, temperature=cfg.knn_temperature)
    if bar is not None:
        bar.advance(status=f"linear probe ({name})")
    lin = linear_probe_accuracy(train_f, train_y, test_f, test_y, l2=cfg.linear_l2, max_iter=cfg.linear_max_iter)
    if bar is not None:
        bar.advance()
    return {"knn_acc": knn, "linear_acc": lin}


def two_views(views: nn.Module) -> nn.Module:
    """The run's views with ``K=2``: the same class, size and augmentation settings (images or vectors).

    A shallow copy with ``k = 2`` (the augmentation modules are shared, ``views`` itself is unchanged); it
    draws exactly what a fresh instance built with ``k=2`` would draw from the same RNG state.
    """
    if not isinstance(views, nn.Module) or not isinstance(getattr(views, "k", None), int):
        raise TypeError(f"views must be a views module with an integer k (Views, VectorViews), got {type(views)}")
    if views.k == 2:
        return views
    two = copy.copy(views)
    two.k = 2
    return two


@torch.no_grad()
def geometry(model: nn.Module, x: torch.Tensor, views: nn.Module, seed: int = 0,
             device: str = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Alignment / uniformity (Wang & Isola 2020), effective rank of ``z`` and pos/neg score histograms.

    Two views of every row of ``x`` (:func:`two_views`, drawn under ``seed`` without touching the global RNG
    stream) go through ``model`` (its projection output ``z``). Returns ``(metrics, arrays)``; ``arrays``
    holds ``pos_scores`` / ``neg_scores`` for the plots.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        v = two_views(views)(x)
    z1 = model(v[:, 0].to(device)).float().cpu()
    z2 = model(v[:, 1].to(device)).float().cpu()
    hist = score_histograms(z1, z2)
    metrics = {"alignment": alignment(z1, z2, alpha=2.0),
               "uniformity": (uniformity(z1, t=2.0) + uniformity(z2, t=2.0)) / 2,
               "effective_rank_z": effective_rank(torch.cat([z1, z2])),
               "scores": {k: hist[k] for k in ("pos_mean", "pos_std", "neg_mean", "neg_std", "gap")},
               "score_hist": {k: hist[k] for k in ("bin_edges", "pos_hist", "neg_hist")}}
    pos, neg = pos_neg_scores(z1, z2)
    return metrics, {"pos_scores": pos, "neg_scores": neg}


def evaluate(
    model: nn.Module,
    train: ImageData,
    test: ImageData,
    cfg: EvalConfig,
    *,
    views: nn.Module | None = None,
    random_model: nn.Module | None = None,
    seed: int = 0,
    device: str = "cpu",
    quiet: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(metrics, arrays)``; ``arrays`` holds what the plots need (test features, pos/neg scores)."""
    train, test = train.subset(cfg.train_subset), test.subset(cfg.test_subset)
    rows = 1 + int(cfg.baselines) + int(cfg.baselines and random_model is not None)
    total = rows * (math.ceil(len(train) / BATCH) + math.ceil(len(test) / BATCH) + 2) + 1
    with progress("eval", total, quiet=quiet, status="learned features") as bar:
        return _evaluate(model, train, test, cfg, views, random_model, seed, device, bar)


def _evaluate(model: nn.Module, train: ImageData, test: ImageData, cfg: EvalConfig, views: nn.Module | None,
              random_model: nn.Module | None, seed: int, device: str, bar: Any) -> tuple[dict[str, Any], dict]:
    was_training = model.training
    model.eval()
    metrics: dict[str, Any] = {}
    feats = lambda m: (lambda x: m.features(x))  # noqa: E731
    tr_f = extract(feats(model), train.x, device=device, bar=bar)
    te_f = extract(feats(model), test.x, device=device, bar=bar)
    metrics.update(probe(tr_f, train.labels, te_f, test.labels, cfg, bar, "learned"))
    bar.update(status="geometry")
    metrics["effective_rank"] = effective_rank(te_f)
    metrics["feature_dim"] = int(te_f.shape[1])
    arrays: dict[str, torch.Tensor] = {"test_features": te_f, "test_labels": test.labels}
    n = min(cfg.geometry_samples, len(test))
    if views is not None and n >= 2:
        geo, geo_arrays = geometry(model, test.x[:n], views, seed, device)
        metrics.update(geo)
        arrays.update(geo_arrays)
    bar.advance(status="raw pixels" if cfg.baselines else "done")
    if cfg.baselines:
        flat = lambda x: x.flatten(1)  # noqa: E731
        raw = probe(extract(flat, train.x, bar=bar), train.labels, extract(flat, test.x, bar=bar), test.labels, cfg,
                    bar, "raw pixels")
        metrics.update({f"raw_{k}": v for k, v in raw.items()})
        if random_model is not None:
            random_model.eval()
            bar.update(status="random-init features")
            rnd = probe(extract(feats(random_model), train.x, device=device, bar=bar), train.labels,
                        extract(feats(random_model), test.x, device=device, bar=bar), test.labels, cfg,
                        bar, "random init")
            metrics.update({f"random_{k}": v for k, v in rnd.items()})
    metrics["eval_train_size"], metrics["eval_test_size"] = len(train), len(test)
    model.train(was_training)
    return metrics, arrays
