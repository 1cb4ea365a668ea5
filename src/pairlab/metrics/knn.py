"""Weighted k-nearest-neighbour classification on frozen features (InstDisc protocol).

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018, §3.4
(also solo-learn's ``WeightedKNNClassifier``): features are L2-normalised, the ``k`` most cosine-similar
training samples vote for their class with weight ``exp(s / T)``; the prediction is the class with the
largest summed weight. Defaults ``k=20``, ``T=0.07`` as in InstDisc / solo-learn. Ties in the top-k are
broken by ``torch.topk`` order; ties in votes by the lowest class index.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_embeddings, check_labels, check_positive, check_same_dim
from pairlab.registry import register
from pairlab.scores import normalize


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted labels ``[N_test]`` by temperature-weighted cosine kNN."""
    check_embeddings("train_x", train_x, 2, "[N, D]")
    check_embeddings("test_x", test_x, 2, "[M, D]")
    check_same_dim(("train_x", "test_x"), (train_x, test_x))
    train_y = check_labels("train_y", train_y, train_x.shape[0]).long()
    check_positive("temperature", temperature)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = min(k, train_x.shape[0])
    c = int(num_classes if num_classes is not None else int(train_y.max()) + 1)
    tr = normalize(train_x)
    preds = []
    for start in range(0, test_x.shape[0], chunk):
        te = normalize(test_x[start : start + chunk]).to(tr.dtype)
        sim, idx = (te @ tr.T).topk(k, dim=1)
        w = (sim / temperature).exp()
        votes = torch.zeros(te.shape[0], c, dtype=w.dtype).scatter_add_(1, train_y[idx], w)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


@register("metrics", "knn", summary="weighted kNN accuracy (cosine, k=20, T=0.07)", paper="Wu et al. 2018 (InstDisc)")
def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` on ``(test_x, test_y)``."""
    test_y = check_labels("test_y", test_y, test_x.shape[0]).long()
    c = int(max(int(train_y.max()), int(test_y.max()))) + 1
    pred = knn_predict(train_x, train_y, test_x, k, temperature, num_classes=c)
    return float((pred == test_y).float().mean())
