"""FT: feature transformation — positive extrapolation and negative interpolation.

Paper: Zhu, Zhao, Liu, Sun, Chen, "Improving Contrastive Learning by Visualizing Feature Transformation",
ICCV 2021 (oral). Official code ``DTennant/CL-Visualizing-Feature-Transformation`` @ c53d1be
(``memory/mem_moco.py::RGBMoCo_dropmix_norm``). Recommended command: ``--mixnorm --mixnorm_target posneg
--sep_alpha --pos_alpha 2.0 --neg_alpha 1.6 --mask_distribution beta --expolation_mask``. For a query ``q`` and
its key ``k`` (unit norm) and negatives ``N`` (the queue)::

    lambda_p ~ Beta(2, 2) + 1 in [1, 2]        q^ = lambda_p q + (1 - lambda_p) k
                                               k^ = lambda_p k + (1 - lambda_p) q      (q not detached)
    lambda_n ~ Beta(1.6, 1.6), pi = randperm   N^ = lambda_n N + (1 - lambda_n) N[pi]
    logits = [q^ . k^, q^ . N^] / tau

``dim_mask="none"`` (official default): one scalar ``lambda`` per step for the whole batch; ``"pos"``: one
``lambda_p`` per element of the positives (``[B, D]``); ``"both"``: per element for both.
``distribution="uniform"``: ``U(0, 1) + 1`` / ``U(0, 1)``. No post-mix normalisation (``--postmix_norm`` is off
in the recommended command), so with unit ``q, k`` of cosine ``c``: ``q^.k^ = c + 2 lambda (lambda-1)(c-1) <= c``
(a harder positive) and ``||q^||^2 = 1 + 2 lambda (lambda - 1)(1 - c) >= 1``, ``||N^_j|| <= 1``.

As candidates (choice documented in :mod:`pairlab.candidates.base`): the extrapolated positives are returned
as ``views = [q^, k^]`` (replacing the two views, ``K' = K = 2``), the interpolated negatives as ``extra``
(``N^`` replaces the queue's rows, as in the official logits). The queue is filled by :meth:`update` with the
*original* key view (official: un-mixed keys). Without a queue, ``N`` is the (detached) in-batch views and
``N^`` is added as extra columns; a mixed row is masked out for the anchors of the two samples it came from
(it would contain their own positive).

To reproduce the official logits use the objective with ``similarity="dot"`` (``normalize_inputs=True``
normalises ``q, k, N`` before mixing, like the official head); with ``similarity="cosine"`` the objective
re-normalises after mixing (the official ``--postmix_norm`` variant). The official code only scores
``q^`` as anchor (MoCo); NT-Xent on the views scores both ``q^`` and ``k^``. ``detach_q_in_key=True`` is the
ablation that stops the gradient of ``q`` through ``k^``.
"""

from __future__ import annotations

from typing import Any

import torch

from pairlab._validate import check_choice, check_positive
from pairlab.candidates.base import CandidateGenerator, Candidates, check_views
from pairlab.candidates.queue import Queue
from pairlab.registry import register
from pairlab.scores import normalize

DIM_MASKS = ("none", "pos", "both")
DISTRIBUTIONS = ("beta", "uniform")


@register("candidates", "ft", paper="Zhu et al. 2021 (FT, ICCV)",
          summary="feature transformation: extrapolated positives (views) and interpolated negatives (extra)")
class FeatureTransformation(CandidateGenerator):
    """FT positive extrapolation and negative interpolation.

    Args:
        pos_alpha, neg_alpha: Beta parameters (official 2.0 and 1.6).
        extrapolate, interpolate: turn each transformation on (official ``mixnorm_target="posneg"``: both).
        distribution: ``"beta"`` (official) or ``"uniform"``.
        dim_mask: ``"none"`` (scalar per step, official default), ``"pos"``, ``"both"``.
        detach_q_in_key: stop the gradient of ``q`` through ``k^`` (ablation; official: no).
        normalize_inputs: L2-normalise ``q, k, N`` before mixing (the official head outputs unit vectors).
        queue / queue_size / dim: negatives from a queue (given, or built empty); else in-batch.
        key_view: the view enqueued by :meth:`update` (official: the key, view 1).
        seed: seed of an own generator (None: torch's global RNG).
    """

    def __init__(
        self,
        pos_alpha: float = 2.0,
        neg_alpha: float = 1.6,
        extrapolate: bool = True,
        interpolate: bool = True,
        distribution: str = "beta",
        dim_mask: str = "none",
        detach_q_in_key: bool = False,
        normalize_inputs: bool = True,
        queue: Queue | None = None,
        queue_size: int = 0,
        dim: int | None = None,
        key_view: int = 1,
        seed: int | None = None,
    ):
        super().__init__()
        self.pos_alpha = check_positive("pos_alpha", pos_alpha)
        self.neg_alpha = check_positive("neg_alpha", neg_alpha)
        self.extrapolate, self.interpolate = bool(extrapolate), bool(interpolate)
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        self.dim_mask = check_choice("dim_mask", dim_mask, DIM_MASKS)
        self.detach_q_in_key, self.normalize_inputs = bool(detach_q_in_key), bool(normalize_inputs)
        if queue is None and queue_size:
            if not isinstance(queue_size, int) or queue_size < 0:
                raise ValueError(f"queue_size must be an integer >= 0, got {queue_size!r}")
            if dim is None:
                raise ValueError("dim is required to build a queue (queue_size > 0): the embedding dim D")
            queue = Queue(queue_size, dim, init="empty")
        self.queue, self.key_view = queue, int(key_view)
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.last_lambda: dict[str, torch.Tensor] = {}

    def _sample(self, alpha: float, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        if self.distribution == "beta":
            a = torch.tensor(alpha, dtype=torch.float64)
            if self._gen is not None:  # Beta via two Gammas, from the own generator
                x = torch._standard_gamma(a.expand(shape).contiguous(), generator=self._gen)
                y = torch._standard_gamma(a.expand(shape).contiguous(), generator=self._gen)
                lam = x / (x + y)
            else:
                lam = torch.distributions.Beta(a, a).sample(shape)
        else:
            lam = torch.rand(shape, generator=self._gen, dtype=torch.float64)
        return lam.to(device=like.device, dtype=like.dtype)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x) if self.normalize_inputs else x.to(torch.float64 if x.dtype == torch.float64
                                                               else torch.float32)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> Candidates:
        z, labels = check_views(z, labels)
        b, k, d = z.shape
        views = None
        if self.extrapolate:
            if k != 2:
                raise ValueError(f"FT extrapolation needs exactly K = 2 views (query, key), got shape {tuple(z.shape)}")
            q, key = self._prep(z[:, 0]), self._prep(z[:, 1])
            shape = (b, d) if self.dim_mask in ("pos", "both") else (1, 1)
            lam = self._sample(self.pos_alpha, shape, q) + 1.0
            q_in_key = q.detach() if self.detach_q_in_key else q
            views = torch.stack([lam * q + (1 - lam) * key, lam * key + (1 - lam) * q_in_key], dim=1)
            self.last_lambda["pos"] = lam.detach()
        extra, mask = None, None
        if self.interpolate:
            if self.queue is not None:
                neg = self._prep(self.queue.negatives().to(z.device))
                src = None
            else:
                neg = self._prep(z.detach().reshape(b * k, d))
                src = torch.arange(b, device=z.device).repeat_interleave(k)
            m = neg.shape[0]
            if m > 0:
                shape = (m, d) if self.dim_mask == "both" else (1, 1)
                lam_n = self._sample(self.neg_alpha, shape, neg)
                perm = torch.randperm(m, generator=self._gen).to(z.device)
                extra = lam_n * neg + (1 - lam_n) * neg[perm]
                self.last_lambda["neg"] = lam_n
                if src is not None:
                    anchor_sample = torch.arange(b, device=z.device).repeat_interleave(k)
                    mask = (anchor_sample[:, None] != src[None, :]) & (anchor_sample[:, None] != src[perm][None, :])
            else:
                extra = neg
        return Candidates(extra=extra, views=views, mask=mask).validate(z)

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> None:
        """Enqueue the original (un-mixed) ``z[:, key_view]`` when FT draws negatives from a queue."""
        if self.queue is None:
            return
        z, _ = check_views(z, None)
        self.queue.enqueue(z[:, self.key_view].detach())

    def extra_repr(self) -> str:
        return (f"pos_alpha={self.pos_alpha}, neg_alpha={self.neg_alpha}, extrapolate={self.extrapolate}, "
                f"interpolate={self.interpolate}, distribution={self.distribution!r}, dim_mask={self.dim_mask!r}")
