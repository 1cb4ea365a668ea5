"""MLP encoder for vectors ``[N, D]``: the vector twin of :class:`pairlab.models.encoder.Encoder`.

Used by the training loop for the user's vector data (``npz:`` / ``parquet:`` with 2-D arrays, see
:mod:`pairlab.data.user`) and by any caller that contrasts feature vectors or frozen embeddings.
Backbone ``(Linear(bias=False) -> BatchNorm1d -> ReLU)`` per width; head: the SimCLR projection head
:class:`~pairlab.models.encoder.ProjectionHead`. Evaluation uses ``features(x)`` (pre-projection), as SimCLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pairlab._validate import check_embeddings
from pairlab.models.encoder import ProjectionHead


class MLPEncoder(nn.Module):
    """MLP backbone + SimCLR projection head for vectors ``[N, D]`` (the vector twin of ``models.encoder.Encoder``).

    Backbone: ``(Linear -> BatchNorm1d -> ReLU)`` per width of ``widths`` (the training loop uses ``(hidden_dim,
    widths[-1])`` of the model config: 256 then 128 by default); ``features(x)`` is its output (evaluation),
    ``forward(x)`` the head's ``z``.

    Examples:
        >>> MLPEncoder(10)(torch.randn(4, 10)).shape
        torch.Size([4, 64])
    """

    def __init__(self, in_dim: int, widths: Sequence[int] = (256, 128), hidden_dim: int = 256, proj_dim: int = 64):
        super().__init__()
        if not isinstance(in_dim, int) or in_dim < 1:
            raise ValueError(f"in_dim must be a positive int, got {in_dim!r}")
        if len(widths) == 0 or any(int(w) <= 0 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {list(widths)}")
        layers: list[nn.Module] = []
        d = in_dim
        for w in widths:
            layers += [nn.Linear(d, int(w), bias=False), nn.BatchNorm1d(int(w)), nn.ReLU(inplace=True)]
            d = int(w)
        self.backbone = nn.Sequential(*layers)
        self.head = ProjectionHead(d, hidden_dim, proj_dim)
        self.in_dim, self.out_dim = in_dim, d

    @property
    def feature_dim(self) -> int:
        return self.out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_embeddings("x", x, 2, "[N, D]")
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape [N, {self.in_dim}], got {tuple(x.shape)}")
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
