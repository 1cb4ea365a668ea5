"""SPACE-2 soft SupCon: graded positives from a score matrix or from label trees.

Paper: He et al., "SPACE-2: Tree-Structured Semi-Supervised Contrastive Pre-training for
Task-Oriented Dialog Understanding", COLING 2022. Official code: ``AlibabaResearch/DAMO-ConvAI``
(``space-2/space/utils/scores.py::hierarchical_set_score``, ``space/utils/criterions.py::SupConLoss``).

With ``z: [B, K, D]`` (``K`` dropout views), flat rows ``r = b*K + k``, a sample score matrix
``S in [0, 1]^{B x B}`` and ``s_rc = z_r . z_c / tau``::

    M_rc = S[b(r), b(c)]  for c != r        (the other views of the same sample get weight 1)
    L    = -mean_r (sum_c M_rc log softmax_{c != r}(s_r.)_c) / sum_c M_rc

Pairs with score 0 are only pushed (they stay in the denominator); partially similar pairs are in
both the numerator (weighted) and the denominator. This is the one equation
(:func:`pairlab.nce.nce`) with soft targets ``P = M`` and ``V`` = not self (``aggregation="mean_log"``).

Where ``S`` comes from (first that applies):
    1. ``forward(z, scores=S)``: an explicit ``[B, B]`` matrix (``[V, B, B]`` for ``z: [B, K, V, D]``).
    2. ``labels`` and ``label_similarity``: a ``[C, C]`` matrix (``S = M[labels][:, labels]``, e.g. from
       :func:`tree_score_matrix` over the label set's frames) or a callable
       ``fn(labels[:, None], labels[None, :]) -> [B, B]``.
    3. ``labels`` alone: ``S = [y_i == y_j]`` (SupCon L_out).
    4. nothing: ``S = I`` (SimCLR / NT-Xent), the official rule for unlabelled batches.

The diagonal of ``S`` is set to 1 (the official per-batch matrices have ``diag = 1``), so every row
has a positive and the normaliser ``sum_c M_rc >= K - 1``.

Subspaces: SPACE-2 projects each utterance into 10 subspaces (one per tree view) and averages the
per-subspace losses; pass ``z: [B, K, V, D]`` with ``scores: [V, B, B]`` (e.g.
``tree_score_matrix(frames, per_view=True)``).

Defaults: ``tau = 0.07`` (``base_tau``), cosine. Official code subtracts a detached row max before
the softmax; that is a no-op in value and gradient here (log-space throughout).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from pairlab._validate import check_embeddings, check_labels, check_tensor
from pairlab.nce import nce
from pairlab.objectives.base import ContrastiveObjective
from pairlab.pairs import not_self, soft_targets
from pairlab.registry import register
from pairlab.scores import prepare

IGNORED_NODES = ("default_domain", "default_intent")
TREE_VIEWS = ("domain", "act", "slot", "value", "domain-act", "act-slot", "slot-value", "domain-act-slot",
              "act-slot-value", "domain-act-slot-value")


def _clean(x: Any) -> str:
    if isinstance(x, Mapping):
        x = x.get("value", "")
    return str(x).strip().lower()


def frame_views(frame: Mapping[str, Mapping[str, Mapping[str, Sequence[Any]]]]) -> list[set[str]]:
    """The 10 node/edge/path sets of a semantic frame ``{domain: {act: {slot: [values]}}}``.

    Names are lower-cased and stripped; values may be strings or ``{"value": ...}`` dicts.
    ``DEFAULT_DOMAIN`` / ``DEFAULT_INTENT`` nodes (any case) are ignored, and so is every edge or
    path through them (pairlab's reading of the official ``ignore_nodes`` decorator, which is not
    in the released code).
    """
    views: list[set[str]] = [set() for _ in TREE_VIEWS]
    if not isinstance(frame, Mapping):
        raise TypeError(f"frame must be a mapping {{domain: {{act: {{slot: [values]}}}}}}, got {type(frame).__name__}")

    def add(view: int, *parts: str) -> None:
        if not any(p in IGNORED_NODES for p in parts):
            views[view].add("-".join(parts))

    for dom, acts in frame.items():
        d = _clean(dom)
        add(0, d)
        for act, slots in acts.items():
            a = _clean(act)
            add(1, a)
            add(4, d, a)
            for slot, values in slots.items():
                s = _clean(slot)
                add(2, s)
                add(5, a, s)
                add(7, d, a, s)
                for value in values:
                    v = _clean(value)
                    add(3, v)
                    add(6, s, v)
                    add(8, a, s, v)
                    add(9, d, a, s, v)
    return views


def tree_score(frame1: Mapping, frame2: Mapping, per_view: bool = False) -> float | list[float]:
    """SPACE-2's hierarchical Jaccard score of two frames.

    Per view: ``|X & Y| / |X | Y|`` (0 when the union is empty). Combined (``per_view=False``): the
    mean over views whose union is non-empty; identical frames score 1, an empty frame scores 0.
    """
    if not frame1 or not frame2:
        return [0.0] * len(TREE_VIEWS) if per_view else 0.0
    v1, v2 = frame_views(frame1), frame_views(frame2)
    if not per_view and v1 == v2:
        return 1.0
    scores, present = [], []
    for x, y in zip(v1, v2, strict=True):
        union = len(x | y)
        scores.append(len(x & y) / union if union else 0.0)
        present.append(union > 0)
    if per_view:
        return scores
    n = sum(present)
    return sum(scores) / n if n else 0.0


def tree_score_matrix(frames: Sequence[Mapping], per_view: bool = False) -> torch.Tensor:
    """``[B, B]`` combined scores (or ``[10, B, B]`` per view) of a list of frames, diagonal 1."""
    b = len(frames)
    out = torch.zeros(len(TREE_VIEWS) if per_view else 1, b, b, dtype=torch.float64)
    for i in range(b):
        for j in range(i, b):
            s = tree_score(frames[i], frames[j], per_view=per_view)
            s_t = torch.tensor(s if per_view else [s], dtype=torch.float64)
            out[:, i, j] = s_t
            out[:, j, i] = s_t
    idx = torch.arange(b)
    out[:, idx, idx] = 1.0
    return out if per_view else out[0]


@register("objectives", "soft-supcon", input="views", paper="He et al. 2022 (SPACE-2, COLING)")
class SoftSupCon(ContrastiveObjective):
    """Supervised contrastive loss with graded (soft) positives.

    Args:
        temperature: ``tau`` (SPACE-2: 0.07).
        label_similarity: ``[C, C]`` class-to-class scores in ``[0, 1]`` or a callable on label pairs;
            used when ``labels`` is given and ``scores`` is not.

    ``forward(z, labels=None, *, scores=None)``; see the module docstring for the precedence.

    Examples:
        >>> S = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> loss = SoftSupCon(0.07)(torch.randn(3, 2, 16), scores=S)
    """

    def __init__(
        self,
        temperature: float = 0.07,
        label_similarity: torch.Tensor | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        similarity: str = "cosine",
        **kw,
    ):
        super().__init__(temperature, similarity, **kw)
        if label_similarity is not None and not callable(label_similarity):
            m = check_tensor("label_similarity", label_similarity)
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise ValueError(f"label_similarity must have shape [C, C], got {tuple(m.shape)}")
            soft_targets(m, m.shape[0], m.shape[0], name="label_similarity")
        self.label_similarity = label_similarity

    def sample_scores(self, b: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """``S [B, B]`` from labels (see precedence) or the identity."""
        if labels is None:
            return torch.eye(b, device=device)
        labels = check_labels("labels", labels, b).to(device)
        ls = self.label_similarity
        if ls is None:
            return (labels[:, None] == labels[None, :]).float()
        if callable(ls):
            return soft_targets(ls(labels[:, None], labels[None, :]), b, b, name="label_similarity(labels)")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= ls.shape[0]):
            raise ValueError(f"labels must lie in [0, {ls.shape[0]}) to index label_similarity, "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")
        return ls.to(device)[labels][:, labels]

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, *, scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``z: [B, K, D]`` (or ``[B, K, V, D]`` with ``scores: [V, B, B]``)."""
        check_tensor("z", z)
        if z.ndim == 4:
            check_embeddings("z", z, 4, "[B, K, V, D]")
            b, k, v, _ = z.shape
            if scores is None:
                s = self.sample_scores(b, labels, z.device)[None].expand(v, b, b)
            else:
                check_tensor("scores", scores)
                if tuple(scores.shape) != (v, b, b):
                    raise ValueError(f"scores must have shape [V, B, B] = [{v}, {b}, {b}] for z of shape "
                                     f"{tuple(z.shape)}, got {tuple(scores.shape)}")
                s = scores
            losses = [self._one(z[:, :, i], s[i]) for i in range(v)]
            return torch.stack(losses).mean()
        check_embeddings("z", z, 3, "[B, K, D] or [B, K, V, D]")
        b = z.shape[0]
        s = self.sample_scores(b, labels, z.device) if scores is None else scores
        return self._one(z, s)

    def _one(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, k, d = z.shape
        s = soft_targets(s, b, b, name="scores")
        if b * k < 2:
            raise ValueError(f"z needs at least 2 rows in total, got shape {tuple(z.shape)}")
        s = s.clone().to(torch.float64 if z.dtype == torch.float64 else torch.float32)
        s.fill_diagonal_(1.0)
        f = prepare(z.reshape(b * k, d), self.similarity)
        idx = torch.arange(b, device=z.device).repeat_interleave(k)
        valid = not_self(b * k, device=z.device)
        targets = s.to(z.device)[idx][:, idx] * valid
        logits = (f @ f.T) * self.temperature.scale()
        return self._record(nce(logits, targets.to(logits.dtype), valid, on_no_positive=self.on_no_positive))
