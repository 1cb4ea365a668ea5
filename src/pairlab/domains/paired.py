"""Paired sensor data: BasicMotions accelerometer vs gyroscope as two modalities (CLIP-style and CWCL training).

Data (``basicmotions-pair``): UEA BasicMotions (aeon's bundled files; 40/40 official split, 4 activities,
100 steps at 10 Hz), channels 0-2 = accelerometer (modality A), 3-5 = gyroscope (modality B), each standardised
per channel with training statistics. Row ``i`` of A and row ``i`` of B are the same time window: the pair.

Views: both modalities of a pair share one random time crop (``crop_frac`` of the length, resized back, so
they stay time-aligned) and each gets its own jitter/scaling (:mod:`pairlab.domains.timeseries`).

Towers: one 1-D CNN per modality (:class:`~pairlab.domains.timeseries.CNN1d`, 3 input channels), projection to
a shared 64-d space. Training settings:

- ``objective: clip`` (Radford et al. 2021) with ``freeze_a: false``: both towers trained from scratch.
- ``freeze_a: true`` (LiT / the CWCL setting): tower A is first pre-trained on accelerometer windows alone
  with NT-Xent (``pretrain_epochs``), then frozen; tower B is trained against it with ``clip`` or ``cwcl``.
  CWCL (Srinivasa et al., NeurIPS 2023) takes its continuous intra-modal weights ``w_ij = (cos(p_i, p_j)+1)/2``
  from the frozen tower A (``a`` argument), as in the paper; CLIP uses one-hot positives.

Protocol (test split, 40 pairs): cross-modal retrieval gyro -> accel and accel -> gyro (recall@1/@5, MRR; a
query's only relevant item is its own partner; chance R@1 = 1/40), **cross-modal transfer accuracy** (a gyro
test window is labelled by the nearest accelerometer class centroid of the training split: labels are only
ever seen in modality A), and a linear probe / kNN on gyro-tower features. Baselines: random-init towers, and
the raw-gyroscope linear probe / kNN.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from pairlab.domains.timeseries import (
    CNN1d,
    SeriesData,
    TSAugment,
    TSViews,
    encode,
    epoch_batches,
    jitter,
    load_ucr,
    probe,
    scaling,
    standardize_channels,
)
from pairlab.registry import register

ACC, GYRO = (0, 1, 2), (3, 4, 5)


@register("datasets", "basicmotions-pair", summary="BasicMotions accelerometer (3 ch) <-> gyroscope (3 ch), 40/40",
          domain="paired", paper="UEA archive (Bagnall et al. 2018)")
def basicmotions_pair(split: str = "train", data_dir: str | os.PathLike | None = None
                      ) -> tuple[SeriesData, SeriesData]:
    """``(accelerometer, gyroscope)`` of the official ``split``: two ``SeriesData`` of shape ``[N, 3, 100]``."""
    d = load_ucr("BasicMotions", split, data_dir)
    if d.x.shape[1] != 6:
        raise ValueError(f"BasicMotions should have 6 channels (acc x/y/z, gyro x/y/z), got {tuple(d.x.shape)}")
    return (SeriesData(d.x[:, list(ACC)], d.labels, d.classes), SeriesData(d.x[:, list(GYRO)], d.labels, d.classes))


def aligned_crop(a: torch.Tensor, b: torch.Tensor, frac: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random window of ``frac * L`` steps per pair, the same for ``a`` and ``b`` ``[B, C, L]``, resized to L."""
    if not 0 < frac <= 1:
        raise ValueError(f"crop_frac must lie in (0, 1], got {frac}")
    n, _, length = a.shape
    w = max(2, int(round(frac * length)))
    if w >= length:
        return a, b
    starts = torch.randint(0, length - w + 1, (n,), generator=generator)
    idx = starts[:, None] + torch.arange(w)
    out = []
    for x in (a, b):
        crop = torch.gather(x, 2, idx[:, None, :].expand(n, x.shape[1], w))
        out.append(torch.nn.functional.interpolate(crop, size=length, mode="linear", align_corners=True))
    return out[0], out[1]


def pair_views(a: torch.Tensor, b: torch.Tensor, aug: TSAugment, crop_frac: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared time crop, then independent scaling and jitter per modality."""
    a, b = aligned_crop(a, b, crop_frac, generator)
    if aug.scale_sigma > 0:
        a, b = scaling(a, aug.scale_sigma, generator), scaling(b, aug.scale_sigma, generator)
    if aug.jitter_sigma > 0:
        a, b = jitter(a, aug.jitter_sigma, generator), jitter(b, aug.jitter_sigma, generator)
    return a, b


# ---------------------------------------------------------------------------------------------------------- metrics


def retrieval_metrics(queries: torch.Tensor, keys: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Query ``i``'s only relevant key is key ``i`` (cosine ranking): recall@k and MRR."""
    from pairlab.scores import normalize

    if queries.shape != keys.shape:
        raise ValueError(f"queries and keys must have the same shape [N, D], got {tuple(queries.shape)} and "
                         f"{tuple(keys.shape)}")
    s = normalize(queries.double()) @ normalize(keys.double()).T
    pos = s.diagonal()[:, None]
    rank = (s > pos).sum(dim=1) + 1  # 1 = best; ties count in the query's favour
    out = {f"recall@{k}": float((rank <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / rank.double()).mean())
    return out


def centroid_transfer_accuracy(train_a: torch.Tensor, train_y: torch.Tensor, test_b: torch.Tensor,
                               test_y: torch.Tensor) -> float:
    """Label each ``test_b`` row by the most cosine-similar class centroid of ``train_a`` (other modality)."""
    from pairlab.scores import normalize

    a = normalize(train_a.double())
    c = int(max(int(train_y.max()), int(test_y.max()))) + 1
    cent = torch.zeros(c, a.shape[1], dtype=a.dtype).index_add_(0, train_y, a)
    pred = (normalize(test_b.double()) @ normalize(cent).T).argmax(dim=1)
    return float((pred == test_y).double().mean())


# ----------------------------------------------------------------------------------------------------------- config


class PairedConfig(BaseModel):
    """A paired-modality run (``domain: paired``)."""

    model_config = ConfigDict(extra="forbid")
    domain: str = "paired"
    name: str = "paired-basicmotions-clip"
    dataset: str = "basicmotions-pair"
    data_dir: str | None = None
    objective: str = "clip"
    objective_args: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(0.1, gt=0)
    freeze_a: bool = False
    pretrain_epochs: int = Field(60, ge=0, description="NT-Xent pre-training of tower A when freeze_a")
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(40, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    crop_frac: float = Field(0.8, gt=0, le=1)
    augment: TSAugment = Field(default_factory=lambda: TSAugment(permute_p=0.0, warp_p=0.0))
    proj_dim: int = Field(64, ge=1)
    knn_k: int = Field(5, ge=1)
    runs_dir: str = "runs"
    plots: bool = True
    baselines: bool = True


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> PairedConfig:
    """Validate a mapping into a :class:`PairedConfig` (one ValueError naming the keys)."""
    from pairlab.domains.timeseries import _errors

    try:
        cfg = PairedConfig.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(f"invalid paired configuration ({source}): {_errors(e)}. Valid keys: "
                         f"{sorted(PairedConfig.model_fields)}") from None
    if cfg.domain != "paired":
        raise ValueError(f"domain must be 'paired' for a PairedConfig, got {cfg.domain!r}")
    if cfg.dataset != "basicmotions-pair":
        raise ValueError(f"dataset must be 'basicmotions-pair', got {cfg.dataset!r}")
    return cfg


# ----------------------------------------------------------------------------------------------------------- runner


def _pair_objective(cfg: PairedConfig) -> nn.Module:
    import inspect

    from pairlab import registry

    entry = registry.get("objectives", cfg.objective)
    if entry.meta.get("input") != "pair":
        raise ValueError(f"objective {cfg.objective!r} has input={entry.meta.get('input')!r}; paired training "
                         "needs a two-tower ('pair') objective such as clip, cwcl, siglip, infonce")
    kwargs = dict(cfg.objective_args)
    if cfg.temperature is not None and "temperature" in inspect.signature(entry.obj).parameters:
        kwargs.setdefault("temperature", cfg.temperature)
    return entry.obj(**kwargs)


def pretrain_tower(model: CNN1d, x: torch.Tensor, cfg: PairedConfig, g: torch.Generator) -> list[float]:
    """NT-Xent (tau = 0.2) on one modality with time-series views (tower A before freezing)."""
    from pairlab.domains.timeseries import fit
    from pairlab.objectives import NTXent

    return fit(model, NTXent(0.2), "views", [], x, torch.zeros(x.shape[0], dtype=torch.long),
               TSViews(2, TSAugment()), cfg.pretrain_epochs, cfg.batch_size, cfg.lr, cfg.weight_decay,
               int(g.initial_seed() % 1_000_000))


def train(cfg: PairedConfig, *, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Two-tower training on accelerometer <-> gyroscope pairs, then retrieval / transfer / probe evaluation."""
    from pairlab.domains import RunDir, fit_progress, plot_history
    from pairlab.train.loop import param_groups

    t_start = time.perf_counter()
    rd = RunDir(cfg.runs_dir, cfg.name, overwrite)
    rd.write_config(cfg)
    (atr, btr), (ate, bte) = basicmotions_pair("train", cfg.data_dir), basicmotions_pair("test", cfg.data_dir)
    xa, xa_te = standardize_channels(atr.x, ate.x)
    xb, xb_te = standardize_channels(btr.x, bte.x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        tower_a, tower_b = CNN1d(3, proj_dim=cfg.proj_dim), CNN1d(3, proj_dim=cfg.proj_dim)
        rnd_a, rnd_b = CNN1d(3, proj_dim=cfg.proj_dim), CNN1d(3, proj_dim=cfg.proj_dim)
        rnd_a.load_state_dict(tower_a.state_dict())
        rnd_b.load_state_dict(tower_b.state_dict())
        obj = _pair_objective(cfg)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 29)
        t0 = time.perf_counter()
        pre_hist: list[float] = []
        if cfg.freeze_a:
            if cfg.pretrain_epochs > 0:
                pre_hist = pretrain_tower(tower_a, xa, cfg, torch.Generator().manual_seed(cfg.seed + 7))
            tower_a.eval().requires_grad_(False)
        trained = [tower_b, obj] if cfg.freeze_a else [tower_a, tower_b, obj]
        opt = torch.optim.AdamW(param_groups(trained, cfg.weight_decay), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        history: list[float] = []
        with fit_progress(cfg.name, cfg.epochs, quiet) as tick:
            for epoch in range(cfg.epochs):
                tower_b.train()
                if not cfg.freeze_a:
                    tower_a.train()
                total, count = 0.0, 0
                for idx in epoch_batches(xa.shape[0], cfg.batch_size, g):
                    va, vb = pair_views(xa[idx], xb[idx], cfg.augment, cfg.crop_frac, g)
                    za = tower_a(va)
                    loss = obj(za, tower_b(vb))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total, count = total + float(loss.detach()) * len(idx), count + len(idx)
                sched.step()
                history.append(total / count)
                row = {"epoch": epoch + 1, "loss": history[-1], "lr": sched.get_last_lr()[0]}
                stats = getattr(obj, "last_stats", {}) or {}
                row.update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
                rd.log(row)
                tick(f"epoch {epoch + 1}/{cfg.epochs} loss {history[-1]:.4f}")
        train_s = time.perf_counter() - t0
    for t in (tower_a, tower_b, rnd_a, rnd_b):
        t.eval()
    m: dict[str, Any] = {"dataset": cfg.dataset, "objective": cfg.objective, "freeze_a": cfg.freeze_a,
                         "train_s": train_s, "pretrain_history": pre_hist}

    def evaluate(ta: CNN1d, tb: CNN1d) -> dict[str, float]:
        za, zb = encode(ta, xa_te), encode(tb, xb_te)
        r_ba = retrieval_metrics(zb, za)
        r_ab = retrieval_metrics(za, zb)
        out = {"gyro2acc_r@1": r_ba["recall@1"], "gyro2acc_r@5": r_ba["recall@5"], "gyro2acc_mrr": r_ba["mrr"],
               "acc2gyro_r@1": r_ab["recall@1"], "acc2gyro_mrr": r_ab["mrr"],
               "transfer_acc": centroid_transfer_accuracy(encode(ta, xa), atr.labels, zb, bte.labels)}
        fb = probe(encode(tb.features, xb), btr.labels, encode(tb.features, xb_te), bte.labels, cfg.knn_k)
        out.update({f"gyro_{k}": v for k, v in fb.items()})
        return out

    learned = evaluate(tower_a, tower_b)
    m.update(learned)
    board = {cfg.name: learned}
    baselines = []
    if cfg.baselines:
        rnd = evaluate(rnd_a, rnd_b)
        raw = probe(xb.flatten(1), btr.labels, xb_te.flatten(1), bte.labels, cfg.knn_k)
        m.update({f"random_{k}": v for k, v in rnd.items()})
        m.update({f"raw_gyro_{k}": v for k, v in raw.items()})
        board["random-init towers"] = rnd
        board["raw gyroscope"] = {f"gyro_{k}": v for k, v in raw.items()}
        baselines = ["random-init towers", "raw gyroscope"]
    m["leaderboard"], m["leaderboard_group"], m["leaderboard_baselines"] = board, cfg.dataset, baselines
    m["history"] = history
    if cfg.plots:
        m["plots"] = {"loss": str(plot_history(history, rd.path / "loss.png"))}
        _plot_similarity(encode(tower_b, xb_te), encode(tower_a, xa_te), rd.path / "similarity.png")
        m["plots"]["similarity"] = str(rd.path / "similarity.png")
    if not math.isfinite(history[-1]):
        raise ValueError(f"training diverged: final epoch loss {history[-1]}")
    return rd.finish(m, t_start)


def _plot_similarity(zb: torch.Tensor, za: torch.Tensor, path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from pairlab.scores import normalize

    s = (normalize(zb) @ normalize(za).T).numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(s, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xlabel("accelerometer (test)")
    ax.set_ylabel("gyroscope (test)")
    ax.set_title("cross-modal cosine (diagonal = pairs)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
