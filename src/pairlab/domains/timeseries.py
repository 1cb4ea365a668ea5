"""Time series: UCR/UEA loaders, jitter/scaling/permutation/time-warp views, a 1-D CNN, linear-probe/kNN protocol.

Data: the UCR/UEA problems bundled in aeon's wheel (GunPoint, ItalyPowerDemand, ArrowHead, BasicMotions,
OSULeaf), read from aeon's ``.ts`` files by a small parser here (aeon's own loader needs numba; aeon can be
installed ``--no-deps``). Official train/test splits. Series are standardised per channel with the training
mean/std (UCR series are already z-normalised per series; BasicMotions is not). Registered datasets:
``ucr-gunpoint``, ``ucr-italypowerdemand``, ``ucr-arrowhead``, ``ucr-basicmotions``, ``ucr-osuleaf``.

Views (Um et al., "Data augmentation of wearable sensor data ...", ICMI 2017; the weak/strong pairs of TS-TCC,
Eldele et al., IJCAI 2021), each applied per series with its own random parameters:

- jitter: ``x + N(0, jitter_sigma^2)``;
- scaling: ``x * s_c``, ``s_c ~ N(1, scale_sigma^2)`` per channel;
- permutation: cut into ``m ~ U{1..max_segments}`` random segments and shuffle them (probability ``permute_p``);
- time warp: resample at ``t' = warp(t)``, a smooth monotone map from cubic-free piecewise-linear random speeds
  ``~ N(1, warp_sigma^2)`` at ``warp_knots`` knots (probability ``warp_p``), linear interpolation.

Encoder: the 3-block 1-D CNN of TS-TCC (Conv1d k=8 -> BN -> ReLU -> MaxPool 2, widths 32/64/128) followed by
global average pooling (TS-TCC flattens; pooling keeps the feature size independent of the length), and a
projection head ``128 -> 128 -> 64`` (ReLU) that only the objective sees.

Protocol (as DBPM and TS-TCC): frozen backbone features (pre-projection), linear probe on standardised features
(:mod:`pairlab.metrics.linear`) and weighted kNN (:mod:`pairlab.metrics.knn`, ``k=5``: the training sets have
36-200 series) trained on the official train split and scored on the test split. Baselines in every run: the
field's classic **1-NN Euclidean distance** on the raw (standardised) series, the linear probe / kNN on raw
series, and the same protocol on a random-init encoder.

DBPM (Lan et al., ICLR 2024) is the registered ``dbpm`` objective; the runner passes dataset indices,
calls ``set_epoch`` every epoch, fills ``num_samples``/``max_epochs`` and visits every index once per epoch
(no dropped batch: a last batch of one series is merged into the previous one), as its memory requires.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from pairlab.registry import register

SPLITS = ("train", "test")
UCR = {
    "ucr-gunpoint": "GunPoint",
    "ucr-italypowerdemand": "ItalyPowerDemand",
    "ucr-arrowhead": "ArrowHead",
    "ucr-basicmotions": "BasicMotions",
    "ucr-osuleaf": "OSULeaf",
}


@dataclass
class SeriesData:
    """``x: float32 [N, C, L]``, ``labels: int64 [N]``, ``classes``: class names (file order)."""

    x: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def aeon_data_dir() -> Path:
    """``<aeon>/datasets/data`` (found without importing aeon, which needs numba)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the UCR/UEA files come with aeon: pip install --no-deps aeon  (aeon 1.6 ships "
                                "GunPoint, ItalyPowerDemand, ArrowHead, BasicMotions, OSULeaf)")
    return Path(os.path.dirname(spec.origin)) / "datasets" / "data"


def read_ts(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse an equal-length ``.ts`` file: ``(x float32 [N, C, L], labels int64 [N], class names)``.

    Format (sktime/aeon): ``@`` header lines (``@classLabel true a b c`` gives the class order), then one
    series per line, channels separated by ``:``, values by ``,``, the class label last.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"time-series file {str(p)!r} not found")
    classes: list[str] | None = None
    rows: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@classlabel"):
                    parts = line.split()
                    classes = parts[2:] if len(parts) > 2 and parts[1].lower() == "true" else None
                elif low.startswith("@data"):
                    in_data = True
                continue
            *chans, lab = line.split(":")
            rows.append([[float(v) for v in c.split(",")] for c in chans])
            labels.append(lab.strip())
    if not rows:
        raise ValueError(f"{str(p)!r} holds no series after @data")
    lengths = {len(c) for r in rows for c in r}
    n_ch = {len(r) for r in rows}
    if len(lengths) != 1 or len(n_ch) != 1:
        raise ValueError(f"{str(p)!r}: unequal lengths {sorted(lengths)[:5]} or channel counts {sorted(n_ch)}; "
                         "only equal-length problems are supported")
    classes = classes or sorted(set(labels))
    unknown = set(labels) - set(classes)
    if unknown:
        raise ValueError(f"{str(p)!r}: labels {sorted(unknown)} are not in @classLabel {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return (np.asarray(rows, dtype=np.float32), np.asarray([index[v] for v in labels], dtype=np.int64),
            tuple(classes))


def load_ucr(name: str, split: str = "train", data_dir: str | os.PathLike | None = None) -> SeriesData:
    """Problem ``name`` (e.g. ``"GunPoint"``), official ``split``, from ``data_dir`` or aeon's bundled files."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    root = Path(data_dir) if data_dir is not None else aeon_data_dir()
    path = root / name / f"{name}_{split.upper()}.ts"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: aeon bundles only {sorted(UCR.values())} (others "
                                "download from Zenodo, which is not possible offline)")
    x, y, classes = read_ts(path)
    return SeriesData(torch.from_numpy(x), torch.from_numpy(y), classes)


def _make_loader(key: str, problem: str):
    def loader(split: str = "train", data_dir: str | os.PathLike | None = None) -> SeriesData:
        return load_ucr(problem, split, data_dir)

    loader.__name__ = loader.__qualname__ = key.replace("-", "_")
    loader.__doc__ = f"UCR/UEA {problem} (official split) from aeon's bundled .ts files."
    return loader


for _key, _problem in UCR.items():
    _fn = _make_loader(_key, _problem)
    globals()[_fn.__name__] = _fn  # importable by its registered target name
    register("datasets", _key, summary=f"UCR/UEA {_problem}, official train/test split (aeon's files)",
             domain="timeseries", paper="Dau et al. 2019 (UCR archive)")(_fn)


def standardize_channels(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Standardise ``[N, C, L]`` tensors per channel with the training mean/std over samples and time."""
    mean = train.mean(dim=(0, 2), keepdim=True)
    std = train.std(dim=(0, 2), keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return [(t - mean) / std for t in (train, *others)]


# -------------------------------------------------------------------------------------------------------------- views


class TSAugment(BaseModel):
    """Time-series view parameters (``sigma=0`` / ``p=0`` switches an op off)."""

    model_config = ConfigDict(extra="forbid")
    jitter_sigma: float = Field(0.03, ge=0)
    scale_sigma: float = Field(0.1, ge=0)
    permute_p: float = Field(0.5, ge=0, le=1)
    max_segments: int = Field(5, ge=1)
    warp_p: float = Field(0.5, ge=0, le=1)
    warp_sigma: float = Field(0.2, ge=0)
    warp_knots: int = Field(4, ge=1)


def jitter(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + N(0, sigma^2)`` elementwise; ``x: [B, C, L]``."""
    return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def scaling(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x * s`` with ``s ~ N(1, sigma^2)`` per series and channel; ``x: [B, C, L]``."""
    s = 1.0 + sigma * torch.randn(x.shape[0], x.shape[1], 1, generator=generator, dtype=x.dtype)
    return x * s


def permutation(x: torch.Tensor, max_segments: int, p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut each series into ``m ~ U{1..max_segments}`` random segments and shuffle them (with probability ``p``).

    The same time permutation applies to all channels of a series; the multiset of time steps is kept.
    """
    b, _, length = x.shape
    idx = torch.arange(length).repeat(b, 1)
    for i in range(b):
        if float(torch.rand(1, generator=generator)) >= p:
            continue
        m = int(torch.randint(1, max_segments + 1, (1,), generator=generator))
        if m < 2 or length < 2:
            continue
        cuts = torch.sort(torch.randperm(length - 1, generator=generator)[: m - 1] + 1).values.tolist()
        segs = torch.tensor_split(torch.arange(length), cuts)
        order = torch.randperm(len(segs), generator=generator).tolist()
        idx[i] = torch.cat([segs[j] for j in order])
    return torch.gather(x, 2, idx[:, None, :].expand_as(x))


def time_warp(x: torch.Tensor, sigma: float, knots: int = 4, p: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Resample each series along a random smooth monotone time map (with probability ``p``).

    Speeds ``v_k ~ N(1, sigma^2)`` (clamped at 0.1) at ``knots + 2`` knots are linearly interpolated over the
    length; ``warp = cumsum(v)`` rescaled to ``[0, L-1]``; the output at step ``t`` is ``x`` linearly
    interpolated at ``warp(t)``. Endpoints are kept.
    """
    b, c, length = x.shape
    if length < 2:
        return x
    speeds = (1.0 + sigma * torch.randn(b, 1, knots + 2, generator=generator, dtype=x.dtype)).clamp_min(0.1)
    v = torch.nn.functional.interpolate(speeds, size=length, mode="linear", align_corners=True)[:, 0]
    w = torch.cumsum(v, dim=1)
    w = (w - w[:, :1]) / (w[:, -1:] - w[:, :1]) * (length - 1)
    apply = torch.rand(b, generator=generator) < p
    w = torch.where(apply[:, None], w, torch.arange(length, dtype=x.dtype).expand(b, length))
    lo = w.floor().long().clamp(0, length - 2)
    frac = (w - lo.to(x.dtype))[:, None, :]
    xl = torch.gather(x, 2, lo[:, None, :].expand(b, c, length))
    xh = torch.gather(x, 2, (lo + 1)[:, None, :].expand(b, c, length))
    return xl + frac * (xh - xl)


class TSViews:
    """``views(x [B, C, L]) -> [B, K, C, L]``: K independent draws of time warp -> permutation -> scaling -> jitter."""

    def __init__(self, num_views: int = 2, config: TSAugment | None = None):
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1, got {num_views!r}")
        self.num_views, self.config = num_views, config or TSAugment()

    def one(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        if c.warp_p > 0 and c.warp_sigma > 0:
            x = time_warp(x, c.warp_sigma, c.warp_knots, c.warp_p, generator)
        if c.permute_p > 0 and c.max_segments > 1:
            x = permutation(x, c.max_segments, c.permute_p, generator)
        if c.scale_sigma > 0:
            x = scaling(x, c.scale_sigma, generator)
        if c.jitter_sigma > 0:
            x = jitter(x, c.jitter_sigma, generator)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ValueError(f"x must be a tensor of shape [B, C, L], got {getattr(x, 'shape', type(x))}")
        return torch.stack([self.one(x, generator) for _ in range(self.num_views)], dim=1)


# ------------------------------------------------------------------------------------------------------------ encoder


class CNN1d(nn.Module):
    """TS-TCC's 3-block 1-D CNN + global average pooling (``features``) and a projection head (``forward``).

    ``features(x [B, C, L]) -> [B, widths[-1]]``; ``forward(x) -> [B, proj_dim]``.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (32, 64, 128), kernel: int = 8,
                 dropout: float = 0.1, hidden_dim: int = 128, proj_dim: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv1d(c, w, kernel, padding=kernel // 2, bias=False), nn.BatchNorm1d(w), nn.ReLU(),
                       nn.MaxPool1d(2, 2, padding=1)]
            if i == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = w
        self.backbone = nn.Sequential(*layers)
        self.feature_dim = c
        self.head = nn.Sequential(nn.Linear(c, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------------------------- protocol


def one_nn_euclidean_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                              test_y: torch.Tensor) -> float:
    """1-NN with Euclidean distance on flattened series (the UCR archive's reference classifier)."""
    d = torch.cdist(test_x.flatten(1).double(), train_x.flatten(1).double())
    return float((train_y[d.argmin(dim=1)] == test_y).float().mean())


@torch.no_grad()
def encode(fn, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([fn(x[i: i + batch]).float() for i in range(0, x.shape[0], batch)])


def probe(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
          knn_k: int = 5, knn_temperature: float = 0.07) -> dict[str, float]:
    """Linear-probe and weighted-kNN accuracies of one feature set."""
    from pairlab.metrics.knn import knn_accuracy
    from pairlab.metrics.linear import linear_probe_accuracy

    return {"linear_acc": linear_probe_accuracy(train_f, train_y, test_f, test_y),
            "knn_acc": knn_accuracy(train_f, train_y, test_f, test_y, k=knn_k, temperature=knn_temperature)}


# ------------------------------------------------------------------------------------------------------------- config


class TSConfig(BaseModel):
    """A time-series run (``domain: timeseries``)."""

    model_config = ConfigDict(extra="forbid")
    domain: str = "timeseries"
    name: str = "ts-gunpoint-ntxent"
    dataset: str = "ucr-gunpoint"
    data_dir: str | None = None
    objective: str = "ntxent"
    objective_args: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(0.2, gt=0)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    widths: tuple[int, ...] = (32, 64, 128)
    kernel: int = Field(8, ge=1)
    proj_dim: int = Field(64, ge=1)
    augment: TSAugment = Field(default_factory=TSAugment)
    knn_k: int = Field(5, ge=1)
    runs_dir: str = "runs"
    plots: bool = True
    baselines: bool = True


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> TSConfig:
    """Validate a mapping into a :class:`TSConfig`; errors become one ValueError naming the keys."""
    try:
        cfg = TSConfig.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(f"invalid time-series configuration ({source}): {_errors(e)}. Valid keys: "
                         f"{sorted(TSConfig.model_fields)}") from None
    if cfg.domain != "timeseries":
        raise ValueError(f"domain must be 'timeseries' for a TSConfig, got {cfg.domain!r}")
    if cfg.dataset not in UCR:
        raise ValueError(f"dataset must be one of {sorted(UCR)}, got {cfg.dataset!r}")
    return cfg


def _errors(e: ValidationError) -> str:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        out.append(f"unknown key {loc!r}" if err["type"] == "extra_forbidden"
                   else f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(out)


# ------------------------------------------------------------------------------------------------------------ runner


def build_objective(name: str, args: dict[str, Any], temperature: float | None, num_samples: int,
                    epochs: int) -> tuple[nn.Module, str, list[str]]:
    """Objective from the registry with ``temperature``; DBPM also gets ``num_samples`` and ``max_epochs``."""
    import inspect

    from pairlab import registry

    entry = registry.get("objectives", name)
    kwargs = dict(args)
    params = inspect.signature(entry.obj).parameters
    if temperature is not None and "temperature" in params and "temperature" not in kwargs:
        kwargs["temperature"] = temperature
    needs = list(entry.meta.get("needs", []))
    if "num_samples" in params and "num_samples" not in kwargs:
        kwargs["num_samples"] = num_samples
    if "max_epochs" in params and "max_epochs" not in kwargs:
        kwargs["max_epochs"] = epochs
    try:
        obj = entry.obj(**kwargs)
    except TypeError as e:
        raise ValueError(f"cannot build objective {name!r} with {kwargs}: {e}") from None
    kind = entry.meta.get("input", "views")
    if kind not in ("views", "pair"):
        raise ValueError(f"objective {name!r} has input={kind!r}; the time-series runner supports 'views'/'pair'")
    return obj, kind, needs


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random permutation of ``range(n)`` in batches; a last batch of one index joins the previous one."""
    perm = torch.randperm(n, generator=generator)
    batches = list(torch.split(perm, batch_size))
    if len(batches) > 1 and batches[-1].numel() < 2:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches


def fit(model: nn.Module, obj: nn.Module, kind: str, needs: list[str], x: torch.Tensor, y: torch.Tensor,
        views: TSViews, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
        log=None) -> list[float]:
    """SimCLR-style training of ``model`` on series ``x``; returns the per-epoch mean loss."""
    from pairlab.train.loop import param_groups

    opt = torch.optim.AdamW(param_groups([model, obj], weight_decay), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    g = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    history = []
    model.train()
    obj.train()
    for epoch in range(epochs):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
        total, count, t0 = 0.0, 0, time.perf_counter()
        for idx in epoch_batches(x.shape[0], batch_size, g):
            v = views(x[idx], g)
            b, k = v.shape[:2]
            z = model(v.reshape(b * k, *v.shape[2:])).reshape(b, k, -1)
            if "index" in needs:
                loss = obj(z, index=idx)
            elif kind == "pair":
                loss = obj(z[:, 0], z[:, 1])
            else:
                loss = obj(z, labels=y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * b, count + b
        sched.step()
        history.append(total / count)
        if log is not None:
            row = {"epoch": epoch + 1, "loss": history[-1], "lr": sched.get_last_lr()[0],
                   "epoch_s": time.perf_counter() - t0}
            stats = getattr(obj, "last_stats", {}) or {}
            row.update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
            mem = getattr(obj, "memory", None)
            if mem is not None and hasattr(mem, "noisy"):
                row["dbpm_noisy"], row["dbpm_faulty"] = int(mem.noisy.sum()), int(mem.faulty.sum())
            log(row)
    return history


def train(cfg: TSConfig, *, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train a 1-D CNN contrastively on ``cfg.dataset`` and evaluate it (official split); writes the run dir."""
    from pairlab.domains import RunDir, fit_progress, plot_history

    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    rd.write_config(cfg)
    tr, te = load_ucr(UCR[cfg.dataset], "train", cfg.data_dir), load_ucr(UCR[cfg.dataset], "test", cfg.data_dir)
    xtr, xte = standardize_channels(tr.x, te.x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = CNN1d(xtr.shape[1], cfg.widths, cfg.kernel, proj_dim=cfg.proj_dim)
        random_model = CNN1d(xtr.shape[1], cfg.widths, cfg.kernel, proj_dim=cfg.proj_dim)
        random_model.load_state_dict(model.state_dict())
        obj, kind, needs = build_objective(cfg.objective, cfg.objective_args, cfg.temperature, len(tr), cfg.epochs)
        t0 = time.perf_counter()
        with fit_progress(cfg.name, cfg.epochs, quiet) as tick:

            def log(row: dict[str, Any]) -> None:
                rd.log(row)
                tick(f"epoch {row['epoch']}/{cfg.epochs} loss {row['loss']:.4f}")

            history = fit(model, obj, kind, needs, xtr, tr.labels, TSViews(2, cfg.augment), cfg.epochs,
                          cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.seed, log)
        train_s = time.perf_counter() - t0
    model.eval()
    random_model.eval()
    m: dict[str, Any] = {"dataset": cfg.dataset, "objective": cfg.objective, "epochs": cfg.epochs,
                         "train_s": train_s, "train_size": len(tr), "test_size": len(te),
                         "series_shape": list(xtr.shape[1:])}
    ftr, fte = encode(model.features, xtr), encode(model.features, xte)
    m.update(probe(ftr, tr.labels, fte, te.labels, cfg.knn_k))
    from pairlab.metrics.geometry import effective_rank

    m["effective_rank"] = effective_rank(fte)
    board = {cfg.name: {"linear_acc": m["linear_acc"], "knn_acc": m["knn_acc"]}}
    baselines = []
    if cfg.baselines:
        m["raw_1nn_ed_acc"] = one_nn_euclidean_accuracy(xtr, tr.labels, xte, te.labels)
        raw = probe(xtr.flatten(1), tr.labels, xte.flatten(1), te.labels, cfg.knn_k)
        rnd = probe(encode(random_model.features, xtr), tr.labels, encode(random_model.features, xte), te.labels,
                    cfg.knn_k)
        m.update({f"raw_{k}": v for k, v in raw.items()})
        m.update({f"random_{k}": v for k, v in rnd.items()})
        board["1nn-euclidean (raw)"] = {"knn_acc": m["raw_1nn_ed_acc"]}
        board["raw series"] = raw
        board["random-init cnn"] = rnd
        baselines = ["1nn-euclidean (raw)", "raw series", "random-init cnn"]
    m["leaderboard"], m["leaderboard_group"], m["leaderboard_baselines"] = board, cfg.dataset, baselines
    if cfg.plots:
        from pairlab.report.plots import plot_projection

        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png")),
                      "projection": str(plot_projection(fte, te.labels, te.classes, rd.path / "projection.png"))}
    m["history"] = history
    if not math.isfinite(history[-1]):
        raise ValueError(f"training diverged: final epoch loss {history[-1]}")
    return rd.finish(m, t_start)
