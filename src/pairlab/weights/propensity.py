"""Inverse-propensity pair sampling and weights: de-bias pairs against a nuisance covariate.

The idea of DebCSE (Miao, Du, Zhang, CIKM 2023: sample positive and negative pairs by inverse propensity
so that surface similarity, e.g. sentence length, no longer predicts the label). DebCSE's exact equations
are unverified (no official code; spec tag [abs]+[recon]), so the components are named by what they do.

For pairs ``p`` with a covariate ``x_p`` (surface similarity, length ratio, ...) and a binary label
``y_p`` (positive / negative pair, or a label proxy such as ``sem >= tau_pos``)::

    bin(x)       = equal-width bins over [lo, hi] (``bins`` of them; lo/hi from the data unless given)
    e(b | y)     = #{p : bin(x_p) = b, y_p = y} / #{p : y_p = y}            (histogram propensity)
    w_p          = 1 / max(e(bin(x_p) | y_p), clip)

Sampling pairs with probability ``∝ w_p`` flattens each label's covariate distribution over the bins it
occupies, so the covariate stops predicting the label (:class:`InversePropensityPairSampler`). As partition
weights (:class:`InversePropensityWeights`), the negatives of the score matrix get ``w`` computed from the
batch's own histogram of their covariate (positives keep 1), normalised to mean 1 over negatives.

In ``pairlab train`` the covariate of every anchor/candidate pair comes from ``source`` (:meth:`setup` keeps the
per-sample data, :meth:`prepare` builds the step's ``[N, M]`` matrix from the batch's ``ids``):
``"pixels"`` (default) is the raw-input cosine of the two samples, a surface similarity (DebCSE's nuisance is a
surface feature such as length), so negatives are re-weighted until pixel similarity no longer predicts which
are sampled; ``"labels"`` is ``1[same class]`` (unlabelled: ``"pixels"``), which up-weights the rare same-class
(false) negatives, so it is not the default. Extra columns (queues, synthesised rows) have no dataset index and
get the mean covariate of the batch's pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from pairlab._validate import check_tensor
from pairlab.registry import register
from pairlab.scores import normalize
from pairlab.weights.base import PairWeights, negatives_mask

SOURCES = ("pixels", "labels")


def _check_cov(name: str, x: object) -> torch.Tensor:
    x = check_tensor(name, x)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a float tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def _bin(x: torch.Tensor, bins: int, lo: float | None, hi: float | None) -> torch.Tensor:
    lo_ = float(x.min()) if lo is None else float(lo)
    hi_ = float(x.max()) if hi is None else float(hi)
    width = (hi_ - lo_) / bins if hi_ > lo_ else 1.0
    return ((x - lo_) / width).floor().clamp(0, bins - 1).long()


def _histogram(
    covariate: torch.Tensor, labels: torch.Tensor, bins: int, lo: float | None, hi: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(label, bin) counts ``[L, bins]``, and each pair's label index and bin."""
    x = _check_cov("covariate", covariate)
    y = check_tensor("labels", labels)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"covariate and labels must both have shape [P], got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise ValueError("covariate and labels must hold at least one pair (shape [P] with P >= 1), got shape (0,)")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    b = _bin(x.detach().double(), bins, lo, hi)
    y = y.long()
    _, yi = torch.unique(y, return_inverse=True)
    n_lab = int(yi.max()) + 1 if yi.numel() else 0
    counts = torch.zeros(n_lab, bins, dtype=torch.float64, device=x.device)
    counts.index_put_((yi, b), torch.ones_like(b, dtype=torch.float64), accumulate=True)
    return counts, yi, b


def propensity(
    covariate: torch.Tensor, labels: torch.Tensor, bins: int = 10, lo: float | None = None, hi: float | None = None
) -> torch.Tensor:
    """Histogram estimate ``e(bin(x_p) | y_p)`` for every pair ``p`` (``covariate [P]``, ``labels [P]``)."""
    counts, yi, b = _histogram(covariate, labels, bins, lo, hi)
    e = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    return e[yi, b]


def inverse_propensity_weights(
    covariate: torch.Tensor, labels: torch.Tensor, bins: int = 10, clip: float = 0.01,
    lo: float | None = None, hi: float | None = None, min_count: int = 0,
) -> torch.Tensor:
    """``w_p = 1 / max(e(bin(x_p) | y_p), clip)`` (``clip`` in ``(0, 1]`` bounds the weights by ``1/clip``).

    ``min_count > 0`` trims to the common support: pairs in a bin where some label has fewer than
    ``min_count`` pairs get ``w = 0`` (without overlap no reweighting can make the covariate uninformative).
    """
    if not 0 < float(clip) <= 1:
        raise ValueError(f"clip must lie in (0, 1], got {clip}")
    counts, yi, b = _histogram(covariate, labels, bins, lo, hi)
    e = (counts / counts.sum(dim=1, keepdim=True).clamp_min(1))[yi, b]
    w = 1.0 / e.clamp_min(float(clip))
    if min_count > 0:
        w = torch.where((counts.min(dim=0).values >= min_count)[b], w, torch.zeros_like(w))
    return w


@register("weights", "ipw-sampler", applies_to="pairs", summary="inverse-propensity pair sampler (DebCSE idea)",
          paper="idea of DebCSE (Miao et al. 2023); equations unverified")
class InversePropensityPairSampler(Sampler[int]):
    """Draw pair indices with probability ``∝ 1 / e(bin(x) | y)`` (with replacement, seeded).

    Args:
        covariate: ``[P]`` nuisance covariate of each candidate pair; ``labels``: ``[P]`` pair labels.
        num_samples: draws per epoch (default ``P``).
        bins, clip: histogram bins and propensity floor.
        min_count: common-support trimming (pairs in bins where a label has fewer pairs are never drawn).
        seed: base seed (``set_epoch`` adds the epoch).

    Data-dependent arguments may be given later with :meth:`bind` (registry construction with defaults).
    """

    def __init__(self, covariate: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 num_samples: int | None = None, bins: int = 10, clip: float = 0.01, min_count: int = 10,
                 seed: int = 0):
        self.bins, self.clip, self.min_count, self.seed, self.epoch = bins, clip, int(min_count), int(seed), 0
        self.num_samples_arg = num_samples
        self.weights: torch.Tensor | None = None
        if covariate is not None or labels is not None:
            self.bind(covariate, labels)

    def bind(self, covariate: torch.Tensor | None, labels: torch.Tensor | None) -> InversePropensityPairSampler:
        if covariate is None or labels is None:
            raise ValueError("covariate and labels are both required: float [P] and int/bool [P]")
        w = inverse_propensity_weights(covariate, labels, self.bins, self.clip, min_count=self.min_count)
        if not bool((w > 0).any()):
            raise ValueError("no pair lies in the common support of the labels: lower min_count or bins")
        self.weights = w.cpu()
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.weights is None:
            return 0 if self.num_samples_arg is None else int(self.num_samples_arg)
        return int(self.weights.shape[0] if self.num_samples_arg is None else self.num_samples_arg)

    def __iter__(self) -> Iterator[int]:
        if self.weights is None:
            raise ValueError("the sampler has no pairs: pass covariate= and labels= or call bind()")
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        yield from torch.multinomial(self.weights, len(self), replacement=True, generator=g).tolist()


@register("weights", "inverse-propensity", applies_to="partition",
          paper="idea of DebCSE (Miao et al. 2023); equations unverified")
class InversePropensityWeights(PairWeights):
    """Partition weights ``1 / e(bin(x_ij) | negative)`` for the negatives, mean 1; positives 1.

    Args:
        bins, clip: histogram bins (over the batch's negatives) and propensity floor.
        covariate: ``[N, M]`` covariate of every anchor/candidate pair; set per step with
            :meth:`set_covariate` (e.g. the length ratio or token overlap of the two texts).
    """

    def __init__(self, bins: int = 10, clip: float = 0.01, covariate: torch.Tensor | None = None,
                 source: str = "pixels"):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
        self.source = source
        self._sample_data: torch.Tensor | None = None
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if not 0 < float(clip) <= 1:
            raise ValueError(f"clip must lie in (0, 1], got {clip}")
        self.bins, self.clip = bins, float(clip)
        self.covariate = None if covariate is None else _check_cov("covariate", covariate)

    def set_covariate(self, covariate: torch.Tensor) -> None:
        self.covariate = _check_cov("covariate", covariate)

    def setup(self, context: Any) -> None:
        """``pairlab train`` hook: keep the per-sample data of ``source`` (unit raw inputs, or labels)."""
        lab = context.labels
        if self.source == "labels" and lab is not None and bool((lab >= 0).all()):
            self._sample_data = lab.long()
        else:
            self._sample_data = normalize(context.raw_features().double()).float()

    def prepare(self, z: torch.Tensor, extra: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **context: Any) -> None:
        """The step's covariate ``[B*K, B*K + M]`` from the batch's ``ids`` (after :meth:`setup`); single process."""
        if self._sample_data is None:
            return  # used from Python: the covariate is set by set_covariate
        ids = context.get("ids")
        if ids is None:
            raise ValueError("InversePropensityWeights.prepare needs ids=: the dataset indices of the batch [B]")
        b, k = z.shape[:2]
        data = self._sample_data[ids.to(self._sample_data.device).long()]
        if data.ndim == 1:
            cov = (data[:, None] == data[None, :]).float()
        else:
            cov = data @ data.T
        cov = cov.repeat_interleave(k, 0).repeat_interleave(k, 1)
        m = 0 if extra is None else extra.shape[0]
        if m:
            cov = torch.cat([cov, torch.full((cov.shape[0], m), float(cov.mean()), dtype=cov.dtype)], dim=1)
        self.set_covariate(cov.to(z.device))

    def weights(self, scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.covariate is None:
            raise ValueError("no covariate set: call set_covariate(x) with x of shape [N, M] before the loss")
        x = self.covariate.to(scores.device)
        if tuple(x.shape) != tuple(scores.shape):
            raise ValueError(f"covariate must have shape {list(scores.shape)} like the scores, got {tuple(x.shape)}")
        neg = negatives_mask(targets, valid)
        w = torch.ones_like(scores)
        if not bool(neg.any()):
            return w
        xn = x[neg].double()
        wn = inverse_propensity_weights(xn, torch.zeros_like(xn, dtype=torch.long), self.bins, self.clip)
        wn = wn / wn.mean()
        w[neg] = wn.to(w.dtype)
        return w

    def extra_repr(self) -> str:
        return f"bins={self.bins}, clip={self.clip}, source={self.source!r}"
