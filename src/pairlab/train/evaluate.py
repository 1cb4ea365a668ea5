"""Evaluation of a trained encoder on frozen features, with the raw-pixel and random-init baselines.

Protocol (identical for the three rows ``learned``, ``raw`` pixels and ``random``-init encoder):
weighted kNN (cosine, ``k=20``, ``T=0.07``; :mod:`pairlab.metrics.knn`) and a linear probe on
standardised features (:mod:`pairlab.metrics.linear`), trained on the training split and scored on the
test split. The encoder's feature is the backbone output (pre-projection), as in SimCLR.

Geometry of the learned embedding, on ``geometry_samples`` test images with two augmented views each
(views drawn from a fixed seed): alignment and uniformity (Wang & Isola 2020) and positive/negative score
histograms on the projection output ``z`` (the space the objective scores); effective rank (Roy & Vetterli
2007) of the backbone features of the test set and of ``z``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pairlab.data.datasets import ImageData, to_float
from pairlab.data.views import Views
from pairlab.metrics.geometry import alignment, effective_rank, uniformity
from pairlab.metrics.histograms import pos_neg_scores, score_histograms
from pairlab.metrics.knn import knn_accuracy
from pairlab.metrics.linear import linear_probe_accuracy
from pairlab.train.config import EvalConfig


@torch.no_grad()
def extract(fn, x: torch.Tensor, batch: int = 2048, device: str = "cpu") -> torch.Tensor:
    """Apply ``fn`` to uint8/float images in batches; returns float32 CPU features."""
    out = [fn(to_float(x[i : i + batch]).to(device)).float().cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.empty(0)


def probe(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
          cfg: EvalConfig) -> dict[str, float]:
    """kNN and linear-probe accuracies of one feature set."""
    return {
        "knn_acc": knn_accuracy(train_f, train_y, test_f, test_y, k=cfg.knn_k, temperature=cfg.knn_temperature),
        "linear_acc": linear_probe_accuracy(train_f, train_y, test_f, test_y, l2=cfg.linear_l2,
                                            max_iter=cfg.linear_max_iter),
    }


def evaluate(
    model: nn.Module,
    train: ImageData,
    test: ImageData,
    cfg: EvalConfig,
    *,
    views: Views | None = None,
    random_model: nn.Module | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(metrics, arrays)``; ``arrays`` holds what the plots need (test features, pos/neg scores)."""
    train, test = train.subset(cfg.train_subset), test.subset(cfg.test_subset)
    was_training = model.training
    model.eval()
    metrics: dict[str, Any] = {}
    feats = lambda m: (lambda x: m.features(x))  # noqa: E731
    tr_f, te_f = extract(feats(model), train.x, device=device), extract(feats(model), test.x, device=device)
    metrics.update(probe(tr_f, train.labels, te_f, test.labels, cfg))
    metrics["effective_rank"] = effective_rank(te_f)
    metrics["feature_dim"] = int(te_f.shape[1])
    arrays: dict[str, torch.Tensor] = {"test_features": te_f, "test_labels": test.labels}
    n = min(cfg.geometry_samples, len(test))
    if views is not None and n >= 2:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            v = Views(views.size, 2, views.config)(test.x[:n])
        with torch.no_grad():
            z1 = model(v[:, 0].to(device)).float().cpu()
            z2 = model(v[:, 1].to(device)).float().cpu()
        metrics["alignment"] = alignment(z1, z2, alpha=2.0)
        metrics["uniformity"] = (uniformity(z1, t=2.0) + uniformity(z2, t=2.0)) / 2
        metrics["effective_rank_z"] = effective_rank(torch.cat([z1, z2]))
        hist = score_histograms(z1, z2)
        metrics["scores"] = {k: hist[k] for k in ("pos_mean", "pos_std", "neg_mean", "neg_std", "gap")}
        metrics["score_hist"] = {k: hist[k] for k in ("bin_edges", "pos_hist", "neg_hist")}
        arrays["pos_scores"], arrays["neg_scores"] = pos_neg_scores(z1, z2)
    if cfg.baselines:
        flat = lambda x: x.flatten(1)  # noqa: E731
        raw = probe(extract(flat, train.x), train.labels, extract(flat, test.x), test.labels, cfg)
        metrics.update({f"raw_{k}": v for k, v in raw.items()})
        if random_model is not None:
            random_model.eval()
            rnd = probe(extract(feats(random_model), train.x, device=device), train.labels,
                        extract(feats(random_model), test.x, device=device), test.labels, cfg)
            metrics.update({f"random_{k}": v for k, v in rnd.items()})
    metrics["eval_train_size"], metrics["eval_test_size"] = len(train), len(test)
    model.train(was_training)
    return metrics, arrays
