"""Small residual CNN for 28x28 grayscale images and the MLP projection head (SimCLR layout).

``Encoder = backbone -> head``. The backbone's pooled feature (pre-projection, as in SimCLR, Chen et
al. 2020, §4.2) is what the evaluation protocols use; the head's output ``z`` is what the objective
sees.

Backbone (``SmallResNet``): a 3x3 stem conv (stride ``stem_stride``, default 2: 28x28 -> 14x14), then
``len(widths)`` stages of basic residual blocks (He et al. 2016, BasicBlock: conv-BN-ReLU-conv-BN +
shortcut, ReLU); every stage but the first halves the resolution with a stride-2 first conv and a 1x1
projection shortcut; global average pooling gives a ``widths[-1]``-dim feature. Defaults ``widths=(32, 64,
128)``, ``stem_stride=2`` run the stages at 14x14, 7x7 and 4x4: about 10 M multiply-adds per image, the cost
that lets the Fashion-MNIST demo train on 2 CPU cores (a full-resolution stem is ~3x slower per image).

Head (``ProjectionHead``): ``Linear -> BN -> ReLU -> Linear`` (SimCLR's 2-layer MLP; BN as in SimCLR v2
and solo-learn).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pairlab._validate import check_embeddings


class BasicBlock(nn.Module):
    """Residual block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Residual CNN: ``[N, C, H, W] -> [N, widths[-1]]`` (any ``H, W >= 4``).

    Args:
        in_channels: image channels (1 for Fashion-MNIST / digits).
        widths: channels of each stage; stage ``i`` has ``blocks`` basic blocks and runs at
            ``H / (stem_stride * 2**i)``.
        blocks: residual blocks per stage.
        stem_stride: stride of the stem conv (2 halves the resolution first; 1 keeps it).
    """

    def __init__(
        self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128), blocks: int = 1, stem_stride: int = 2
    ):
        super().__init__()
        if len(widths) == 0 or any(int(w) <= 0 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {list(widths)}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(c, w, stride=2 if (j == 0 and i > 0) else 1))
                c = w
        self.stages = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_dim = int(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape [N, {self.in_channels}, H, W], got {tuple(x.shape)} ({x.dtype})"
            )
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class ProjectionHead(nn.Module):
    """SimCLR MLP head ``Linear(d, h) -> BN -> ReLU -> Linear(h, out)``."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_embeddings("h", h, 2, "[N, D]")
        return self.net(h)


class Encoder(nn.Module):
    """Backbone + projection head. ``forward(x) -> z``; ``features(x)`` -> backbone feature (evaluation)."""

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 1,
        hidden_dim: int = 256,
        proj_dim: int = 64,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.backbone = SmallResNet(in_channels, widths, blocks, stem_stride)
        self.head = ProjectionHead(self.backbone.out_dim, hidden_dim, proj_dim)

    @property
    def feature_dim(self) -> int:
        return self.backbone.out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
