"""Image datasets for the training job, registered under kind ``datasets``.

Each loader returns an :class:`ImageData` with ``x: uint8 [N, 1, H, W]`` and ``labels: int64 [N]``; the
training loop converts batches to float in ``[0, 1]`` on the fly (keeps 60k images at 47 MB).

- ``fmnist``: Fashion-MNIST (Xiao et al. 2017), official 60k/10k split, from Debian's
  ``dataset-fashion-mnist`` IDX files or ``data_dir`` (see :mod:`pairlab.data.fmnist`).
- ``digits``: sklearn's 8x8 digits (UCI optdigits test set, 1797 images, values 0..16), rescaled to
  0..255 and upsampled to ``size`` x ``size`` (default 28, bilinear) so the same model and views apply;
  a fixed stratified 80/20 split (seed 0), since the data set has none.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from pairlab.registry import get, register

SPLITS = ("train", "test")


@dataclass
class ImageData:
    """``x: uint8 [N, C, H, W]``, ``labels: int64 [N]``, ``classes``: class names."""

    x: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int | None) -> ImageData:
        """The first ``n`` samples (all when ``n`` is None or larger than the data set)."""
        if n is None or n >= len(self):
            return self
        return ImageData(self.x[:n], self.labels[:n], self.classes)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


@register("datasets", "fmnist", summary="Fashion-MNIST 28x28 grayscale, 60k/10k, 10 classes", paper="Xiao et al. 2017")
def fmnist(split: str = "train", data_dir: str | os.PathLike | None = None) -> ImageData:
    """Fashion-MNIST; missing files raise FileNotFoundError saying how to install them."""
    from pairlab.data.fmnist import CLASSES, load_fmnist

    x, y = load_fmnist(_check_split(split), data_dir)
    return ImageData(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y), CLASSES)


@register("datasets", "digits", summary="sklearn 8x8 digits upsampled to 28x28, 1438/359 split, 10 classes")
def digits(split: str = "train", data_dir: str | os.PathLike | None = None, size: int = 28) -> ImageData:
    """sklearn digits; ``data_dir`` is accepted for a uniform interface and must be None."""
    _check_split(split)
    if data_dir is not None:
        raise ValueError(f"data_dir is not used by the digits data set (it ships with scikit-learn), got {data_dir!r}")
    x, labels = _digits(split, size)
    return ImageData(x.clone(), labels.clone(), tuple(str(c) for c in range(10)))


@functools.lru_cache(maxsize=8)
def _digits(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is a dependency
        raise FileNotFoundError("sklearn digits need scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    rng = np.random.default_rng(0)
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(d.target == c))[: int(round(0.2 * (d.target == c).sum()))] for c in range(10)]
    )
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    idx = torch.from_numpy(np.flatnonzero(is_test if split == "test" else ~is_test))
    images, labels = images[idx], labels[idx]
    if size != 8:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 image_size: int | None = None, image_mode: str = "auto") -> ImageData:
    """Load ``split`` of a registered data set, or of the user's ``folder:PATH`` / ``npz:PATH`` / ``parquet:PATH``.

    ``image_size`` / ``image_mode`` apply to the user's data only (see :mod:`pairlab.data.user`).
    """
    if ":" in name:
        from pairlab.data.user import load_user

        return load_user(name, split, data_dir, image_size=image_size, image_mode=image_mode)
    from pairlab.registry import available

    if name not in available("datasets"):
        from pairlab.data.user import PREFIXES

        raise ValueError(f"unknown dataset {name!r}; valid choices: {available('datasets')}, or your own data as "
                         f"{', '.join(p + ':PATH' for p in PREFIXES)}")
    return get("datasets", name).obj(split=split, data_dir=data_dir)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in ``[0, 1]`` (float input is returned as float32 unchanged)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
