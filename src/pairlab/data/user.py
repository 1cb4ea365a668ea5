"""Users' own data for ``pairlab train --dataset PREFIX:PATH`` (images, arrays, embeddings, text).

Formats (``PATH`` relative to the working directory):

- ``folder:PATH``: an image folder (anything PIL opens: png, jpg, bmp, gif, tiff, webp). Labelled:
  ``PATH/<class>/*.png`` (class = sub-folder name, sorted; files in nested folders count for their top
  class folder). Unlabelled: ``PATH/*.png`` (labels ``-1``). ``PATH/train`` and ``PATH/test`` (both present)
  define the split; otherwise a fixed stratified 80/20 split (seed 0, as the ``digits`` data set).
  Mode: ``image_mode: auto`` takes grayscale or RGB from the first image (sorted order) and converts every
  image to it (``L`` / ``RGB`` force one); every image is resized to ``image_size`` x ``image_size``
  (default 28; bilinear, aspect ratio not kept) and stored ``uint8 [N, C, H, W]``: the image pipeline
  (:class:`~pairlab.data.views.Views`, :class:`~pairlab.models.encoder.Encoder`) applies unchanged.
- ``npz:PATH`` / ``parquet:PATH``: the features under ``x`` (or ``X``, ``features``, ``embeddings``), optional
  labels ``y`` (or ``Y``, ``labels``, ``label``; integers or strings), the split from ``x_train``/``x_test`` (+
  ``y_train``/``y_test``) keys, a ``split`` array/column (``"train"``/``"test"`` or ``0``/``1``), or else the
  stratified 80/20 split. Parquet reads through ``pyarrow``; a column of lists holds one vector (or image) per
  row. 4-D arrays (``[N, C, H, W]`` or ``[N, H, W, C]`` with ``C`` in 1, 3, 4) and 3-D arrays (``[N, H, W]``)
  are images: scaled to ``uint8`` (values in [0, 1] times 255; values in [0, 255] as they are; any other range
  min-max over the whole array) and resized only when not square or when ``image_size`` is set. 2-D arrays
  ``[N, D]`` are vectors: standardised with the training split's per-feature mean and std (a constant feature
  keeps std 1), trained with :class:`~pairlab.models.mlp.MLPEncoder` and :class:`VectorViews`; the ``raw``
  evaluation row is then the standardised features.
- ``csv:PATH`` (``.tsv``: tab-separated): a text column (``text_column``, else ``text`` or ``sentence``), an
  optional ``label`` (or ``labels``, ``y``) and ``split`` column. :func:`train_text` fine-tunes all-MiniLM-L6-v2
  with the text domain's SimCSE recipe (:mod:`pairlab.domains.text`: dropout views, NT-Xent, tau 0.05, MLP head
  in training only, lr 3e-5, top 2 layers; values the user did not set come from that recipe) and evaluates
  kNN / linear probe on the frozen mean-pooled embeddings against the pretrained model.

Vector views (:class:`VectorViews`; no paper prescribes one augmentation for arbitrary vectors): on
standardised features, ``x + noise_std * eps`` (``eps ~ N(0, I)``, default ``noise_std = 0.1``), then each
feature is independently replaced by 0 (= the training mean) with probability ``mask_p`` (default 0.2) -- the
masking corruption of VIME (Yoon et al. 2020); SCARF (Bahri et al. 2022) replaces masked features by draws from
their marginal instead. Evaluation is the image protocol (kNN, linear probe, raw and random-init rows).

Unlabelled data (all labels ``-1``) trains with self-supervised objectives only (a supervised objective is
refused) and reports the geometry (alignment, uniformity, effective rank, score histograms), no kNN/linear
accuracy, with a ``note`` in ``metrics.json`` saying why.

Errors are ``FileNotFoundError`` (missing path) or ``ValueError`` naming the ``--dataset`` argument and the file:
empty folder, unreadable image, missing ``x`` array, labels of another length, NaN/Inf in arrays, unknown prefix.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pairlab._validate import check_all_finite, check_embeddings
from pairlab.data.datasets import ImageData
from pairlab.models.mlp import MLPEncoder  # noqa: F401  (re-exported: moved to pairlab.models.mlp)

PREFIXES = ("folder", "npz", "parquet", "csv")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
X_KEYS = ("x", "X", "features", "embeddings")
Y_KEYS = ("y", "Y", "labels", "label")
TEXT_KEYS = ("text", "sentence")
LABEL_COLUMNS = ("label", "labels", "y")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
DEFAULT_IMAGE_SIZE = 28
TEST_FRACTION = 0.2


def split_spec(spec: str) -> tuple[str, str] | None:
    """``"npz:data/x.npz" -> ("npz", "data/x.npz")``; ``None`` for a plain name; unknown prefixes raise."""
    if ":" not in spec:
        return None
    prefix, _, path = spec.partition(":")
    if prefix not in PREFIXES:
        from pairlab import registry

        raise ValueError(f"dataset {spec!r}: unknown prefix {prefix!r}; valid prefixes: "
                         f"{[p + ':PATH' for p in PREFIXES]}, or a registered data set: "
                         f"{registry.available('datasets')}")
    if not path:
        raise ValueError(f"dataset {spec!r}: missing path after '{prefix}:' (e.g. {prefix}:data/my_set)")
    return prefix, path


def is_user_spec(spec: str) -> bool:
    return split_spec(spec) is not None


def is_unlabelled(data: ImageData) -> bool:
    return len(data) > 0 and bool((data.labels < 0).all())


def is_vector(data: ImageData) -> bool:
    return data.x.ndim == 2


def data_options(cfg: Any) -> dict[str, Any]:
    """The config's options for :func:`load_user` (``image_size``, ``image_mode``)."""
    return {"image_size": getattr(cfg, "image_size", None), "image_mode": getattr(cfg, "image_mode", "auto")}


def load_user(spec: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
              image_size: int | None = None, image_mode: str = "auto") -> ImageData:
    """Load ``split`` of a ``folder:`` / ``npz:`` / ``parquet:`` data set (``csv:`` is text: see :func:`train_text`)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be one of ['train', 'test'], got {split!r}")
    if data_dir is not None:
        raise ValueError(f"data_dir is not used with --dataset {spec!r} (the path is part of it), got {data_dir!r}")
    if image_mode not in ("auto", "L", "RGB"):
        raise ValueError(f"image_mode must be one of ['auto', 'L', 'RGB'], got {image_mode!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
        raise ValueError(f"image_size must be an integer >= 4, got {image_size!r}")
    parsed = split_spec(spec)
    if parsed is None:
        raise ValueError(f"dataset {spec!r} is not of the form PREFIX:PATH with PREFIX in {list(PREFIXES)}")
    prefix, path = parsed
    if prefix == "csv":
        raise ValueError(f"dataset {spec!r} is text: `pairlab train --dataset csv:PATH` runs the text pipeline "
                         "(pairlab.data.user.train_text), not the image/vector loader")
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise FileNotFoundError(f"dataset {spec!r}: path {str(p)!r} does not exist")
    stamp = _stamp(p)
    tr, te = _load_cached(prefix, str(p), stamp, image_size, image_mode, spec)
    return tr if split == "train" else te


def _stamp(p: Path) -> tuple[int, int]:
    """(count, newest mtime) of the files under ``p``: a changed data set is reloaded."""
    if p.is_file():
        return 1, p.stat().st_mtime_ns
    times = [f.stat().st_mtime_ns for f in p.rglob("*") if f.is_file()]
    return len(times), max(times, default=0)


@functools.lru_cache(maxsize=4)
def _load_cached(prefix: str, path: str, stamp: tuple[int, int], image_size: int | None, image_mode: str,
                 spec: str) -> tuple[ImageData, ImageData]:
    p = Path(path)
    if prefix == "folder":
        return _load_folder(spec, p, image_size or DEFAULT_IMAGE_SIZE, image_mode)
    if prefix == "npz":
        arrays = _read_npz(spec, p)
    else:
        arrays = _read_parquet(spec, p)
    return _from_arrays(spec, p, arrays, image_size, image_mode)


# ------------------------------------------------------------------------------------------------------ split/labels


def stratified_test_mask(labels: np.ndarray, frac: float = TEST_FRACTION, seed: int = 0) -> np.ndarray:
    """Boolean ``is_test``: ``round(frac * n_c)`` random samples of every class ``c`` (``-1`` is one group)."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_test[rng.permutation(idx)[: int(round(frac * len(idx)))]] = True
    return is_test


def encode_labels(spec: str, file: Path, raw: Sequence[Any] | np.ndarray, key: str) -> tuple[np.ndarray, tuple]:
    """Integer or string labels -> ``int64`` indices into the sorted class names."""
    a = np.asarray(raw)
    if a.ndim != 1:
        raise ValueError(f"dataset {spec!r}: labels {key!r} in {str(file)!r} must be 1-D, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"dataset {spec!r}: labels {key!r} in {str(file)!r} contain NaN/Inf at rows "
                             f"{np.flatnonzero(~np.isfinite(a))[:5].tolist()}")
        if not np.all(a == np.round(a)):
            raise ValueError(f"dataset {spec!r}: labels {key!r} in {str(file)!r} must be integers or strings, "
                             f"got non-integer floats (e.g. {a[a != np.round(a)][0]})")
        a = a.astype(np.int64)
    elif a.dtype.kind in "iub":
        a = a.astype(np.int64)
    elif a.dtype.kind in "USO":
        if any(v is None for v in a.tolist()):
            raise ValueError(f"dataset {spec!r}: labels {key!r} in {str(file)!r} have missing values")
        a = a.astype(str)
    else:
        raise ValueError(f"dataset {spec!r}: labels {key!r} in {str(file)!r} have unsupported dtype {a.dtype}")
    classes, idx = np.unique(a, return_inverse=True)
    return idx.astype(np.int64).reshape(-1), tuple(str(c) for c in classes.tolist())


def _pick(keys: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((k for k in candidates if k in keys), None)


def _split_values(spec: str, file: Path, raw: np.ndarray) -> np.ndarray:
    """``split`` array/column -> boolean ``is_test`` (``"train"``/``"test"`` or ``0``/``1``)."""
    vals = np.asarray(raw)
    if vals.dtype.kind in "iub":
        bad = ~np.isin(vals, (0, 1))
        is_test = vals == 1
    else:
        s = np.char.lower(vals.astype(str))
        bad = ~np.isin(s, ("train", "test"))
        is_test = s == "test"
    if bad.any():
        raise ValueError(f"dataset {spec!r}: 'split' in {str(file)!r} must hold 'train'/'test' (or 0/1), got "
                         f"{vals[bad][:3].tolist()} at rows {np.flatnonzero(bad)[:5].tolist()}")
    if is_test.all() or not is_test.any():
        raise ValueError(f"dataset {spec!r}: 'split' in {str(file)!r} must mark both train and test rows")
    return is_test


# ------------------------------------------------------------------------------------------------------------ images


def _image_files(d: Path) -> list[Path]:
    return sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS
                  and not any(part.startswith(".") for part in f.relative_to(d).parts))


def _scan(spec: str, root: Path) -> list[tuple[Path, str | None]]:
    """``[(file, class name or None)]`` of one folder (class sub-folders, or images at top level)."""
    top = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS
                 and not f.name.startswith("."))
    subs = [(d, _image_files(d)) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    subs = [(d, files) for d, files in subs if files]
    if top and subs:
        raise ValueError(f"dataset {spec!r}: {str(root)!r} holds both images ({top[0].name}, ...) and class "
                         f"sub-folders ({subs[0][0].name}/, ...); use one layout: PATH/<class>/*.png or PATH/*.png")
    if subs:
        return [(f, d.name) for d, files in subs for f in files]
    if top:
        return [(f, None) for f in top]
    raise ValueError(f"dataset {spec!r}: no images ({', '.join(IMAGE_EXTS)}) in {str(root)!r} or its class "
                     "sub-folders")


def _read_images(spec: str, files: Sequence[Path], size: int, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), 1 if mode == "L" else 3, size, size), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode).resize((size, size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            raise ValueError(f"dataset {spec!r}: cannot read image {str(f)!r}: {e}") from None
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return out


def _first_mode(spec: str, f: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            if im.mode == "P":  # a palette image is grey only if every palette entry is
                return "L" if im.convert("RGB").convert("HSV").getextrema()[1][1] == 0 else "RGB"
            return "L" if im.mode in GRAY_MODES else "RGB"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise ValueError(f"dataset {spec!r}: cannot read image {str(f)!r}: {e}") from None


def _load_folder(spec: str, root: Path, size: int, mode: str) -> tuple[ImageData, ImageData]:
    if not root.is_dir():
        raise ValueError(f"dataset {spec!r}: {str(root)!r} is not a folder (folder:PATH needs a directory of images)")
    has_tr, has_te = (root / "train").is_dir(), (root / "test").is_dir()
    if has_tr != has_te:
        raise ValueError(f"dataset {spec!r}: {str(root)!r} has a '{'train' if has_tr else 'test'}' sub-folder but "
                         f"no '{'test' if has_tr else 'train'}' one; give both, or neither (80/20 split)")
    parts = [_scan(spec, root / "train"), _scan(spec, root / "test")] if has_tr else [_scan(spec, root)]
    named = [[c is not None for _, c in part] for part in parts]
    if len(parts) == 2 and any(named[0]) != any(named[1]):
        raise ValueError(f"dataset {spec!r}: train/ and test/ must both be labelled (class sub-folders) or both "
                         "unlabelled (images directly inside)")
    files = [f for part in parts for f, _ in part]
    if mode == "auto":
        mode = _first_mode(spec, files[0])
    x = torch.from_numpy(_read_images(spec, files, size, mode))
    names = [c for part in parts for _, c in part]
    if names[0] is None:
        labels, classes = np.full(len(files), -1, dtype=np.int64), ()
    else:
        classes = tuple(sorted(set(names)))
        labels = np.searchsorted(np.asarray(classes), np.asarray(names)).astype(np.int64)
    if len(parts) == 2:
        is_test = np.arange(len(files)) >= len(parts[0])
    else:
        is_test = stratified_test_mask(labels)
    y = torch.from_numpy(labels)
    tr, te = torch.from_numpy(np.flatnonzero(~is_test)), torch.from_numpy(np.flatnonzero(is_test))
    return ImageData(x[tr], y[tr], classes), ImageData(x[te], y[te], classes)


# ------------------------------------------------------------------------------------------------------------ arrays


def _read_npz(spec: str, p: Path) -> dict[str, np.ndarray]:
    if not p.is_file():
        raise ValueError(f"dataset {spec!r}: {str(p)!r} is not a file (npz:PATH needs a .npz file)")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic != b"PK\x05\x06":  # an .npz is a zip archive (empty: end record)
        raise ValueError(f"dataset {spec!r}: cannot read {str(p)!r} as .npz: not a zip archive written by "
                         f"numpy.savez (starts with {magic!r})")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"dataset {spec!r}: {str(p)!r} holds object (pickled) arrays, which are not loaded "
                             "for safety; save numeric or string arrays") from None
        raise ValueError(f"dataset {spec!r}: cannot read {str(p)!r} as .npz: {e}") from None
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise ValueError(f"dataset {spec!r}: cannot read {str(p)!r} as .npz: {type(e).__name__}: {e}") from None


def _read_parquet(spec: str, p: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FileNotFoundError(f"dataset {spec!r}: reading parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow.ArrowInvalid, OSError, ...
        raise ValueError(f"dataset {spec!r}: cannot read {str(p)!r} as parquet: {type(e).__name__}: {e}") from None
    out = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        if any(v is None for v in values):
            rows = [i for i, v in enumerate(values) if v is None][:5]
            raise ValueError(f"dataset {spec!r}: column {name!r} of {str(p)!r} has missing values at rows {rows}")
        try:
            out[name] = np.asarray(values)
        except ValueError as e:  # ragged lists
            raise ValueError(f"dataset {spec!r}: column {name!r} of {str(p)!r} has rows of different lengths: "
                             f"{e}") from None
        if out[name].dtype == object:
            raise ValueError(f"dataset {spec!r}: column {name!r} of {str(p)!r} has rows of different lengths "
                             "or mixed types")
    return out


def _features(spec: str, file: Path, key: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "iufb":
        raise ValueError(f"dataset {spec!r}: array {key!r} in {str(file)!r} must be numeric, got dtype {a.dtype}")
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"dataset {spec!r}: array {key!r} in {str(file)!r} must be [N, D] vectors or [N, H, W] / "
                         f"[N, C, H, W] / [N, H, W, C] images, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"dataset {spec!r}: array {key!r} in {str(file)!r} is empty")
    if a.dtype.kind == "f":
        check_all_finite(f"dataset {spec!r}: array {key!r} in {str(file)!r}", torch.from_numpy(np.ascontiguousarray(a)))
    return a


def _from_arrays(spec: str, file: Path, arrays: dict[str, np.ndarray], image_size: int | None,
                 image_mode: str) -> tuple[ImageData, ImageData]:
    keys = list(arrays)
    if "x_train" in arrays or "x_test" in arrays:
        if not ("x_train" in arrays and "x_test" in arrays):
            raise ValueError(f"dataset {spec!r}: {str(file)!r} needs both 'x_train' and 'x_test' (found {keys})")
        xs = [_features(spec, file, k, arrays[k]) for k in ("x_train", "x_test")]
        if xs[0].shape[1:] != xs[1].shape[1:]:
            raise ValueError(f"dataset {spec!r}: 'x_train' {xs[0].shape} and 'x_test' {xs[1].shape} in "
                             f"{str(file)!r} differ in shape beyond the first axis")
        has_y = ["y_train" in arrays, "y_test" in arrays]
        if any(has_y) and not all(has_y):
            raise ValueError(f"dataset {spec!r}: {str(file)!r} needs both 'y_train' and 'y_test' or neither")
        x = np.concatenate(xs)
        is_test = np.arange(len(x)) >= len(xs[0])
        y_raw, y_key = (np.concatenate([arrays["y_train"], arrays["y_test"]]), "y_train/y_test") if all(has_y) \
            else (None, "")
        if y_raw is not None:
            for k, n in (("y_train", len(xs[0])), ("y_test", len(xs[1]))):
                if len(arrays[k]) != n:
                    raise ValueError(f"dataset {spec!r}: labels {k!r} have {len(arrays[k])} entries but "
                                     f"'x_{k[2:]}' has {n} rows in {str(file)!r}")
    else:
        x_key = _pick(keys, X_KEYS)
        if x_key is None:
            raise ValueError(f"dataset {spec!r}: {str(file)!r} has no features array; expected one of "
                             f"{list(X_KEYS)} (or x_train/x_test), found {keys}")
        x = _features(spec, file, x_key, arrays[x_key])
        y_key = _pick(keys, Y_KEYS) or ""
        y_raw = arrays[y_key] if y_key else None
        if y_raw is not None and len(y_raw) != len(x):
            raise ValueError(f"dataset {spec!r}: labels {y_key!r} have {len(y_raw)} entries but {x_key!r} has "
                             f"{len(x)} rows in {str(file)!r}")
        is_test = None
        if "split" in arrays:
            if len(arrays["split"]) != len(x):
                raise ValueError(f"dataset {spec!r}: 'split' has {len(arrays['split'])} entries but {x_key!r} has "
                                 f"{len(x)} rows in {str(file)!r}")
            is_test = _split_values(spec, file, arrays["split"])
    if y_raw is None:
        labels, classes = np.full(len(x), -1, dtype=np.int64), ()
    else:
        labels, classes = encode_labels(spec, file, y_raw, y_key)
    if is_test is None:
        is_test = stratified_test_mask(labels)
    if len(x) < 2 or is_test.all() or not is_test.any():
        raise ValueError(f"dataset {spec!r}: {str(file)!r} has {len(x)} rows; need at least one train and one test "
                         "row")
    if x.ndim == 2:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        tr_mask = torch.from_numpy(~is_test)
        mean = xt[tr_mask].mean(0)
        std = xt[tr_mask].std(0, unbiased=False)
        xt = (xt - mean) / torch.where(std > 0, std, torch.ones_like(std))
    else:
        xt = _images_from_array(x, image_size, image_mode)
    y = torch.from_numpy(labels)
    tr, te = torch.from_numpy(np.flatnonzero(~is_test)), torch.from_numpy(np.flatnonzero(is_test))
    return ImageData(xt[tr], y[tr], classes), ImageData(xt[te], y[te], classes)


def _images_from_array(a: np.ndarray, image_size: int | None, image_mode: str) -> torch.Tensor:
    """3-D/4-D numeric array -> ``uint8 [N, C, S, S]``."""
    if a.ndim == 3:
        a = a[:, None]
    elif a.shape[1] not in (1, 3, 4) and a.shape[-1] in (1, 3, 4):
        a = a.transpose(0, 3, 1, 2)  # channels-last
    if a.shape[1] == 4:
        a = a[:, :3]  # drop alpha
    if a.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(a)).float()
    else:
        f = a.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        if lo >= 0 and hi <= 1:
            f = f * 255.0
        elif not (lo >= 0 and hi <= 255):
            f = (f - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(f)
        t = torch.from_numpy(f).float()
    c = t.shape[1]
    if image_mode == "L" and c == 3:
        t = (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif image_mode == "RGB" and c == 1:
        t = t.repeat(1, 3, 1, 1)
    h, w = t.shape[-2:]
    if image_size is not None or h != w:
        s = image_size or DEFAULT_IMAGE_SIZE
        t = torch.nn.functional.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------- vector models


class VectorViews(nn.Module):
    """``k`` views of standardised vectors: Gaussian noise, then random feature masking (see module docstring).

    ``views(x [B, D]) -> [B, K, D]`` (sample-major); randomness from torch's global RNG, as the image views.

    Examples:
        >>> VectorViews(k=2)(torch.randn(8, 5)).shape
        torch.Size([8, 2, 5])
    """

    def __init__(self, k: int = 2, noise_std: float = 0.1, mask_p: float = 0.2):
        super().__init__()
        if k < 1:
            raise ValueError(f"k (views per sample) must be >= 1, got {k}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if not 0 <= mask_p < 1:
            raise ValueError(f"mask_p must be in [0, 1), got {mask_p}")
        self.k, self.noise_std, self.mask_p = k, float(noise_std), float(mask_p)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_embeddings("x", x, 2, "[B, D]")
        v = x.float().repeat_interleave(self.k, dim=0)
        if self.noise_std > 0:
            v = v + self.noise_std * torch.randn_like(v)
        if self.mask_p > 0:
            v = v.masked_fill(torch.rand_like(v) < self.mask_p, 0.0)
        return v.reshape(x.shape[0], self.k, x.shape[1])


def build_views(cfg: Any, data: ImageData) -> nn.Module:
    """Views for ``data``: image :class:`Views` or :class:`VectorViews`; a supervised objective on unlabelled data
    is refused here (before any training)."""
    from pairlab import registry
    from pairlab.data.views import Views

    if is_unlabelled(data) and registry.get("objectives", cfg.objective).meta.get("supervised"):
        raise ValueError(f"objective {cfg.objective!r} needs labels but dataset {cfg.dataset!r} is unlabelled; use "
                         "a self-supervised objective (ntxent, dcl, ...) or give labels")
    if is_vector(data):
        return VectorViews(cfg.views)
    return Views(data.x.shape[-1], cfg.views, cfg.augment)


# -------------------------------------------------------------------------------------------------------- evaluation

UNLABELLED_NOTE = ("unlabelled data set: kNN / linear-probe accuracies need labels and are not reported; "
                   "geometry only (alignment, uniformity, effective rank, score histograms)")


def evaluate(model: nn.Module, train: ImageData, test: ImageData, cfg: Any, *, views: nn.Module | None = None,
             random_model: nn.Module | None = None, seed: int = 0,
             device: str = "cpu", **kwargs: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """:func:`pairlab.train.evaluate.evaluate` for user data (``cfg``: an ``EvalConfig``; ``kwargs``, e.g.
    ``quiet``, go to it). Labelled data (images or vectors) is evaluated by it unchanged (its geometry pass
    uses the run's own views class); unlabelled data gets the geometry and a ``note`` instead of accuracies."""
    from pairlab.metrics.geometry import effective_rank
    from pairlab.train import evaluate as ev

    if not is_unlabelled(train):
        return ev.evaluate(model, train, test, cfg, views=views, random_model=random_model, seed=seed,
                           device=device, **kwargs)
    was = model.training
    train, test = train.subset(cfg.train_subset), test.subset(cfg.test_subset)
    model.eval()
    te_f = ev.extract(lambda x: model.features(x), test.x, device=device)
    metrics: dict[str, Any] = {"note": UNLABELLED_NOTE, "labelled": False, "effective_rank": effective_rank(te_f),
                               "feature_dim": int(te_f.shape[1]), "eval_train_size": len(train),
                               "eval_test_size": len(test)}
    arrays: dict[str, torch.Tensor] = {"test_features": te_f, "test_labels": test.labels}
    n = min(cfg.geometry_samples, len(test))
    if views is not None and n >= 2:
        m, a = ev.geometry(model, test.x[:n], views, seed, device)
        metrics.update(m)
        arrays.update(a)
    model.train(was)
    return metrics, arrays


# -------------------------------------------------------------------------------------------------------------- text


def read_text_csv(spec: str, path: str | os.PathLike, text_column: str | None = None
                  ) -> tuple[list[str], np.ndarray, tuple, np.ndarray]:
    """``(texts, labels (-1: none), classes, is_test)`` of a CSV/TSV file (split column or stratified 80/20)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise FileNotFoundError(f"dataset {spec!r}: path {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"dataset {spec!r}: {str(p)!r} is not a file (csv:PATH needs a .csv/.tsv file)")
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delim)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"dataset {spec!r}: cannot read {str(p)!r} as UTF-8 CSV: {e}") from None
    if not columns:
        raise ValueError(f"dataset {spec!r}: {str(p)!r} is empty (expected a header row with a text column)")
    lower = {c.strip().lower(): c for c in columns}
    if text_column is not None:
        if text_column not in columns:
            raise ValueError(f"dataset {spec!r}: text_column {text_column!r} is not a column of {str(p)!r}; "
                             f"columns: {columns}")
        tcol = text_column
    else:
        found = _pick(list(lower), TEXT_KEYS)
        if found is None:
            raise ValueError(f"dataset {spec!r}: {str(p)!r} has no text column {list(TEXT_KEYS)}; columns: "
                             f"{columns}. Set text_column in the config")
        tcol = lower[found]
    if not rows:
        raise ValueError(f"dataset {spec!r}: {str(p)!r} has a header but no rows")
    texts = [(r.get(tcol) or "").strip() for r in rows]
    empty = [i + 2 for i, t in enumerate(texts) if not t]  # file line numbers (header is line 1)
    if empty:
        raise ValueError(f"dataset {spec!r}: empty text in column {tcol!r} of {str(p)!r} on lines {empty[:5]}")
    lcol = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    if lcol is not None:
        raw = [(r.get(lcol) or "").strip() for r in rows]
        missing = [i + 2 for i, v in enumerate(raw) if not v]
        if missing:
            raise ValueError(f"dataset {spec!r}: empty label in column {lcol!r} of {str(p)!r} on lines "
                             f"{missing[:5]}")
        as_int = all(v.lstrip("-").isdigit() for v in raw)
        labels, classes = encode_labels(spec, p, np.array([int(v) for v in raw] if as_int else raw), lcol)
    else:
        labels, classes = np.full(len(texts), -1, dtype=np.int64), ()
    if "split" in lower:
        is_test = _split_values(spec, p, np.array([(r.get(lower["split"]) or "").strip() for r in rows]))
    else:
        is_test = stratified_test_mask(labels)
    if is_test.all() or not is_test.any():
        raise ValueError(f"dataset {spec!r}: {str(p)!r} has {len(texts)} rows; need at least one train and one "
                         "test row")
    return texts, labels, classes, is_test


def _text_recipe(cfg: Any) -> dict[str, Any]:
    """Training values for text: the user's where set (config/flags), else the text domain's SimCSE recipe."""
    from pairlab.domains.text import TextConfig

    ref = TextConfig()
    user = cfg.model_fields_set
    pick = lambda key, default: getattr(cfg, key) if key in user else default  # noqa: E731
    return {"lr": pick("lr", ref.lr), "temperature": pick("temperature", ref.temperature),
            "batch_size": pick("batch_size", ref.batch_size), "weight_decay": pick("weight_decay", ref.weight_decay),
            "max_length": ref.max_length, "train_layers": ref.train_layers}


def train_text(cfg: Any, *, overwrite: bool = False, quiet: bool = False, resume: bool = False,
               encoder: nn.Module | None = None) -> dict[str, Any]:
    """``pairlab train --dataset csv:PATH``: SimCSE fine-tuning of MiniLM on the CSV's texts, then evaluation.

    Reuses :mod:`pairlab.domains.text` (``MiniLMEncoder``, ``batches``, the objective builder of the domains).
    ``encoder`` replaces MiniLM (any module with ``dim``, ``forward(texts, max_length) -> [B, dim]`` with dropout
    in training mode, and ``embed(texts, max_length)``), e.g. a tiny stand-in in tests. Steps: ``max_steps`` if
    set, else ``epochs`` passes over the training texts. Metrics: ``knn_acc`` / ``linear_acc`` of the fine-tuned
    embeddings and ``pretrained_knn_acc`` / ``pretrained_linear_acc`` of the encoder before training (labelled
    data), alignment / uniformity of two dropout views of the test texts, effective rank.
    """
    from pairlab.domains import RunDir, plot_history
    from pairlab.domains.text import MiniLMEncoder, TextConfig, batches
    from pairlab.domains.timeseries import build_objective
    from pairlab.metrics.geometry import alignment, effective_rank, uniformity
    from pairlab.train.config import dump_config
    from pairlab.train.evaluate import probe

    if resume:
        raise ValueError(f"--resume is not supported for text data ({cfg.dataset!r}); text runs are short: rerun "
                         "with --overwrite")
    parsed = split_spec(cfg.dataset)
    if parsed is None or parsed[0] != "csv":
        raise ValueError(f"train_text needs a csv:PATH dataset, got {cfg.dataset!r}")
    if cfg.data_dir is not None:
        raise ValueError(f"data_dir is not used with --dataset {cfg.dataset!r}, got {cfg.data_dir!r}")
    texts, labels, classes, is_test = read_text_csv(cfg.dataset, parsed[1], getattr(cfg, "text_column", None))
    tr_i, te_i = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    train_texts, test_texts = [texts[i] for i in tr_i], [texts[i] for i in te_i]
    if cfg.train_subset is not None:
        tr_i, train_texts = tr_i[: cfg.train_subset], train_texts[: cfg.train_subset]
    y_tr, y_te = torch.from_numpy(labels[tr_i]), torch.from_numpy(labels[te_i])
    labelled = not bool((labels < 0).all())
    r = _text_recipe(cfg)
    if r["batch_size"] > len(train_texts):
        raise ValueError(f"batch_size {r['batch_size']} is larger than the {len(train_texts)} training texts of "
                         f"{cfg.dataset!r}; lower --batch-size")
    steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * (len(train_texts) // r["batch_size"])
    if cfg.views < 2:
        raise ValueError(f"text training needs --views >= 2 (dropout views), got {cfg.views}")
    from pairlab import registry

    if registry.get("objectives", cfg.objective).meta.get("supervised"):
        raise ValueError(f"objective {cfg.objective!r} is supervised; text runs (csv:PATH) train self-supervised "
                         "(SimCSE dropout views): use ntxent, dcl, ...")
    tcfg = TextConfig(steps=steps, batch_size=r["batch_size"], seed=cfg.seed, views=cfg.views,
                      max_length=r["max_length"])
    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    (rd.path / "config.yaml").write_text(dump_config(cfg))
    say = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    ml = r["max_length"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = encoder if encoder is not None else MiniLMEncoder(r["train_layers"])
        m: dict[str, Any] = {"labelled": labelled, "train_texts": len(train_texts), "test_texts": len(test_texts),
                             "classes": list(classes), "text_recipe": r}
        if labelled:
            base = probe(model.embed(train_texts, ml).float(), y_tr, model.embed(test_texts, ml).float(), y_te,
                         cfg.eval)
            m.update({f"pretrained_{k}": v for k, v in base.items()})
        obj, kind, _ = build_objective(cfg.objective, cfg.objective_args, r["temperature"], len(train_texts), 1)
        head = nn.Sequential(nn.Linear(model.dim, model.dim), nn.Tanh())
        params = [p for mod in (model, head, obj) for p in mod.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])
        history: list[float] = []
        t0 = time.perf_counter()
        model.train()
        head.train()
        for step, idx in enumerate(batches(train_texts, tcfg)):
            batch = [train_texts[i] for i in idx]
            z = torch.stack([head(model(batch, ml)) for _ in range(cfg.views)], dim=1)
            loss = obj(z[:, 0], z[:, 1]) if kind == "pair" else obj(z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            if not math.isfinite(history[-1]):
                raise FloatingPointError(f"loss became {history[-1]} at step {step + 1}; lower --lr")
            rd.log({"step": step + 1, "loss": history[-1]})
            say(f"step {step + 1}/{steps} loss {history[-1]:.4f}")
        m["steps"], m["train_s"] = len(history), time.perf_counter() - t0
        t1 = time.perf_counter()
        te_f = model.embed(test_texts, ml).float()
        if labelled:
            m.update(probe(model.embed(train_texts, ml).float(), y_tr, te_f, y_te, cfg.eval))
        else:
            m["note"] = UNLABELLED_NOTE
        m["effective_rank"], m["feature_dim"] = effective_rank(te_f), int(te_f.shape[1])
        n = min(cfg.eval.geometry_samples, len(test_texts))
        if n >= 2:
            model.train()  # two dropout views of the same texts, as in training
            with torch.no_grad():
                z1, z2 = model(test_texts[:n], ml).float(), model(test_texts[:n], ml).float()
            model.eval()
            m["alignment"] = alignment(z1, z2, alpha=2.0)
            m["uniformity"] = (uniformity(z1, t=2.0) + uniformity(z2, t=2.0)) / 2
        m["eval_s"] = time.perf_counter() - t1
    m["history"] = history
    if cfg.eval.plots and history:
        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png", xlabel="step"))}
    return rd.finish(m, t_start)
