"""Shared pieces of the InfoNCE-family objectives: temperature, similarity, stats, backend choice."""

from __future__ import annotations

import torch
from torch import nn

from pairlab._validate import check_choice
from pairlab.nce import NCEResult
from pairlab.scores import SIMILARITIES, Temperature

BACKENDS = ("auto", "dense", "tiled")


class ContrastiveObjective(nn.Module):
    """Base class: holds ``temperature`` (:class:`~pairlab.scores.Temperature`), ``similarity`` and
    the statistics of the last call in ``last_stats`` (anchors used, anchors without positive,
    mean positive/negative score).

    ``backend``: ``"auto"`` uses the tiled kernel (:mod:`pairlab.kernels`) whenever it applies and
    the dense reference path otherwise; ``"dense"`` and ``"tiled"`` force one path.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        similarity: str = "cosine",
        learnable_temperature: bool = False,
        on_no_positive: str = "raise",
        backend: str = "auto",
    ):
        super().__init__()
        self.temperature = Temperature(temperature, learnable=learnable_temperature)
        self.similarity = check_choice("similarity", similarity, SIMILARITIES)
        self.on_no_positive = check_choice("on_no_positive", on_no_positive, ("raise", "zero"))
        self.backend = check_choice("backend", backend, BACKENDS)
        self.last_stats: dict[str, float] = {}

    def _record(self, result: NCEResult) -> torch.Tensor:
        self.last_stats = dict(result.stats)
        return result.loss

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, backend={self.backend!r}"
