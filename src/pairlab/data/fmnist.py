"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` IDX files (or a user's copy via ``data_dir``)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": "train", "test": "t10k"}


def _read_idx(path: Path, offset: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    except (gzip.BadGzipFile, EOFError, zlib.error, ValueError) as e:  # not gzip, cut short, shorter than the header
        raise ValueError(f"Fashion-MNIST file {str(path)!r} is unreadable or truncated: {e}") from None


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install it with "
        "'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or pass --data-dir to a folder "
        "holding the original IDX files (train-images-idx3-ubyte.gz, ...)."
    )


def load_fmnist(split: str = "train", data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, 28, 28], labels int64 [N])`` for ``split`` in ``{"train", "test"}``."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {list(_FILES)}, got {split!r}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    kind = _FILES[split]
    y = _read_idx(_find(root, f"{kind}-labels-idx1-ubyte"), 8).astype(np.int64)
    x = _read_idx(_find(root, f"{kind}-images-idx3-ubyte"), 16)
    if x.size != len(y) * 28 * 28:
        raise ValueError(f"Fashion-MNIST {split} files in {root} are inconsistent: {x.size} pixels for {len(y)} labels")
    return x.reshape(len(y), 28, 28), y
