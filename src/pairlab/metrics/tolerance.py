"""Tolerance (Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021).

``T = E_{x,y ~ p_data}[ f(x)^T f(y) * 1{l(x) = l(y)} ]``: the mean cosine similarity over pairs of
*distinct* samples of the same class, computed as the mean of ``f_i . f_j`` over ``i < j`` with
``y_i = y_j`` (self-pairs excluded). Higher means the embedding tolerates semantically similar
samples (keeps them close). The multi-view code of Koromilas et al. (``utils.tolerance_loss``) also
drops pairs whose dot product is exactly 0; that quirk is not reproduced.
"""

from __future__ import annotations

import torch

from pairlab._validate import check_embeddings, check_labels
from pairlab.registry import register
from pairlab.scores import normalize


@register("metrics", "tolerance", summary="mean cosine over same-class pairs (i < j)", paper="Wang & Liu 2021")
def tolerance(x: torch.Tensor, labels: torch.Tensor) -> float:
    """``x: [N, D]`` embeddings (normalised inside), ``labels: [N]`` integer classes.

    Raises ``ValueError`` when no class has two samples (the mean is then undefined).
    """
    check_embeddings("x", x, 2, "[N, D]")
    labels = check_labels("labels", labels, x.shape[0]).to(x.device)
    f = normalize(x.detach()).double()
    counts = torch.bincount(labels - labels.min())
    n_pairs = int((counts * (counts - 1) // 2).sum())
    if n_pairs == 0:
        raise ValueError("tolerance needs at least one pair of samples with the same label, got none")
    # sum over i<j of f_i.f_j within a class = (||sum_c f||^2 - sum ||f_i||^2) / 2, one pass per class
    sums = torch.zeros(int(counts.numel()), f.shape[1], dtype=f.dtype, device=f.device)
    sums.index_add_(0, labels - labels.min(), f)
    self_sq = (f * f).sum(1)
    sq = torch.zeros(int(counts.numel()), dtype=f.dtype, device=f.device).index_add_(0, labels - labels.min(), self_sq)
    total = ((sums * sums).sum(1) - sq).sum() / 2
    return float(total / n_pairs)
