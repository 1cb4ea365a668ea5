"""The SoftREPA real check on Fashion-MNIST: does error-contrast training of soft tokens alone improve alignment?

1. Train :class:`~pairlab.generative.TinyDenoiser` on Fashion-MNIST 28x28 images in ``[-1, 1]``, conditioned on
   MiniLM token embeddings of the class-name prompt (``"a photo of a {class}"``), briefly (600 steps). Choices (each
   a user's choice in SoftREPA, not part of its objective):

   * flow-matching noising (SD3, SoftREPA's main model) with **x0 prediction**: the per-pair error is then an
     image-space MSE of order 0.05-0.4 per pixel at mid/high noise, i.e. of the order of ``temp = 0.07``, where the
     faithful ``scale * exp(-err / temp)`` logits have a gradient (velocity errors ``x0 error / t`` were ~1 and
     saturated the loss at ``ln B``);
   * **condition dropout** 10% to the null prompt ``""`` (classifier-free-guidance training) so the conditional
     prediction must carry the prompt;
   * a fixed **prefix of** ``n_tokens`` **null-prompt tokens** in front of every prompt during pre-training (like
     the padding tokens SD always sees); the soft tokens *replace* this prefix, initialised to it (the official
     SD1.5 null-prompt init) with zero timestep vectors, so inserting them leaves the model exactly unchanged at
     step 0 (the "base" and "initial soft tokens" rows are equal by construction).

2. Freeze it; train only :class:`~pairlab.generative.SoftTokens` with
   :class:`~pairlab.objectives.error_contrast.ErrorContrast` (faithful ``exp`` form, temp 0.07, scale 4; and the
   ``log`` form) on ``B x B`` grids (``B = 10`` train images of distinct classes and their prompts, one shared noise
   and one ``t ~ U[t_min, t_max]`` per grid, ``grids_per_step`` grids per step).
   With ``n_val > 0`` the last ``n_val`` train images are held out from both stages as a **validation split**;
   with ``val_every > 0`` the tokens are scored on it (same protocol as below, its own noise draws) at step 0 and
   every ``val_every`` steps, and the best-scoring step is kept (early stopping, a user's choice; ties keep the
   earlier step, so step 0, the unchanged model, is a possible outcome). The test images are never used for a
   choice. ``denoiser_cache`` (a folder) saves the pre-trained denoiser and reloads it when a run with the same
   denoiser settings comes again: the numbers are identical, only faster.
3. On held-out test images (``n_eval``; every image against all 10 prompts at each of ``eval_ts``, the same draws
   for every model; one noise per image and timestep, shared by the image's 10 prompts, with
   ``eval_noise="per_image"`` (default), so the grids are independent; ``"shared"``: one noise per timestep for all
   images, the protocol of the first reports, whose 5 draws correlate every grid): the rank of the matching
   prompt's error in each grid, averaged over images and timesteps (**per-grid rank**, what the loss trains); also
   the rank of the errors averaged over the timesteps (a diffusion-classifier rank, a secondary number).

:func:`run_check` returns every number (and the curves, the per-grid ranks, and :func:`paired_gain`: the mean rank
gain over the paired test grids with its standard error) as a dict; ``benchmarks/softrepa.py`` adds plots and the
report.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pairlab.generative.denoiser import TinyDenoiser, train_denoiser
from pairlab.generative.pair_errors import matching_rank, pair_errors
from pairlab.generative.schedules import SCHEDULES
from pairlab.generative.soft_tokens import SoftTokens, TokenConditioned, train_soft_tokens
from pairlab.generative.text import encode_prompts
from pairlab.objectives.error_contrast import ErrorContrast


@dataclass
class CheckConfig:
    seed: int = 0
    n_train: int = 60000  # train images available to both stages
    denoiser_steps: int = 600
    denoiser_batch: int = 128
    schedule: str = "flow"  # "flow" (SD3) or "vp" (SD1.5)
    target: str = "x0"  # what the denoiser predicts (flow default "v", vp default "eps"); see the module docstring
    cond_dropout: float = 0.1
    hidden: int = 256
    depth: int = 2
    width: int = 64
    context_norm: bool = False
    token_steps: int = 150
    token_batch: int = 10  # B: distinct classes per grid (B x B pairs)
    grids_per_step: int = 4  # grids averaged per step (less gradient noise; the official run averages 2)
    n_tokens: int = 4
    n_buckets: int | None = 10
    token_lr: float = 1e-2  # official 1e-3 (SD, 3 epochs of COCO); a short CPU run needs more
    t_range: tuple[float, float] = (0.45, 0.95)
    null_prefix: bool = True  # pre-train with a null-token prefix that the soft tokens replace (no harm at step 0)
    n_eval: int = 1000
    eval_ts: Sequence[float] = field(default_factory=lambda: (0.5, 0.6, 0.7, 0.8, 0.9))
    eval_noise: str = "per_image"  # held-out noise per t: "shared" by all images or "per_image" (independent grids)
    forms: Sequence[str] = ("exp", "log")
    threads: int | None = None
    token_wd: float = 1e-4  # AdamW weight decay on the soft tokens (official 1e-4)
    diag_weight: float = 0.0  # ErrorContrast diag_weight (official: 0 for SD3, 10 for SD1.5/SDXL)
    n_val: int = 500  # validation images held out from the END of the train split (used by neither training stage)
    val_every: int = 15  # > 0: evaluate on the validation split every k token steps, keep the best (early stopping)
    denoiser_cache: str | None = None  # a folder: reuse a pre-trained denoiser of the same config (same numbers)


def class_prompts() -> list[str]:
    from pairlab.data.fmnist import CLASSES

    return [f"a photo of a {c.lower()}" for c in CLASSES]


def load_images(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``(x [N, 1, 28, 28] in [-1, 1], labels [N])`` (the first ``n``)."""
    from pairlab.data.fmnist import load_fmnist

    x, y = load_fmnist(split)
    if n is not None:
        x, y = x[:n], y[:n]
    return torch.from_numpy(x.copy()).float().div(127.5).sub(1.0).unsqueeze(1), torch.from_numpy(y.copy())


def _denoiser_batches(x, y, tokens, mask, batch: int, g: torch.Generator) -> Iterator:
    while True:
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        yield x[idx], (tokens[y[idx]], mask[y[idx]])


def _grid_batches(x, y, tokens, mask, batch: int, g: torch.Generator) -> Iterator:
    """``batch`` images of distinct random classes with their prompts (the B x B grid of SoftREPA)."""
    n_classes = tokens.shape[0]
    by_class = [torch.nonzero(y == c).flatten() for c in range(n_classes)]
    while True:
        classes = torch.randperm(n_classes, generator=g)[:batch]
        idx = torch.stack([by_class[c][torch.randint(0, len(by_class[c]), (1,), generator=g)][0] for c in classes])
        yield x[idx], (tokens[classes], mask[classes])


def rank_stats(ranks: torch.Tensor, n_cond: int) -> dict[str, Any]:
    r = ranks.float()
    return {
        "mean_rank": float(r.mean()),
        "top1": float((ranks == 1).float().mean()),
        "top3": float((ranks <= 3).float().mean()),
        "hist": torch.bincount(ranks.flatten() - 1, minlength=n_cond).tolist(),
    }


def evaluate(
    model, x, labels, cond, ts: Sequence[float], noiser, seed: int, per_image_noise: bool = False
) -> dict[str, Any]:
    """Held-out ranks: per grid (``[T, N]`` ranks) and of the t-averaged errors.

    Every image is scored against every condition with one noise per ``t`` shared by its whole row (what makes the
    row's errors comparable): the same noise for all images (``per_image_noise=False``, the training grids'
    protocol) or an independent draw per image (``True``: the grids, and hence the paired differences, are
    independent, so their standard error is honest).
    """
    g = torch.Generator().manual_seed(seed)
    errs = []
    with torch.no_grad():
        for t in ts:
            noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if per_image_noise else None
            errs.append(pair_errors(model, x, cond, float(t), noise, noiser=noiser, generator=g))
    e = torch.stack(errs)  # [T, N, M]
    per_grid = torch.stack([matching_rank(et, labels) for et in e])
    own = e.gather(2, labels.reshape(1, -1, 1).expand(len(ts), -1, 1)).squeeze(2)
    other = (e.sum(2) - own) / (e.shape[2] - 1)
    n_cond = e.shape[2]
    out = rank_stats(per_grid, n_cond)
    out["ranks"] = per_grid.tolist()
    out["per_t_mean_rank"] = [float(r.float().mean()) for r in per_grid]
    out["t_avg"] = rank_stats(matching_rank(e.mean(0), labels), n_cond)
    out["err_own"] = [float(v) for v in own.mean(1)]
    out["err_other"] = [float(v) for v in other.mean(1)]
    q = torch.quantile(own.flatten(), torch.tensor([0.1, 0.5, 0.9]))
    out["err_own_q10_50_90"] = [float(v) for v in q]
    return out


def paired_gain(base: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Mean rank gain ``base - after`` over the paired held-out grids (image x t) and its standard errors.

    ``se``: the paired-difference standard error treating every grid as independent; ``se_image`` (``[T, N]``
    ranks): the standard error of the per-image mean gain over the ``N`` images, which allows for the ``T`` grids
    of one image being correlated (it is the larger, honest one; with ``eval_noise="shared"`` even the images are
    correlated through the ``T`` shared draws, and both understate the error).
    """
    d = torch.tensor(base["ranks"], dtype=torch.float64) - torch.tensor(after["ranks"], dtype=torch.float64)
    flat = d.flatten()
    n = flat.numel()
    out = {"gain": float(flat.mean()), "se": float(flat.std(unbiased=True) / n**0.5) if n > 1 else float("nan"),
           "n": int(n), "better": float((flat > 0).double().mean()), "worse": float((flat < 0).double().mean())}
    if d.ndim == 2 and d.shape[1] > 1:
        per_image = d.mean(0)
        out["se_image"] = float(per_image.std(unbiased=True) / per_image.numel() ** 0.5)
    return out


_DENOISER_KEYS = ("seed", "n_train", "n_val", "denoiser_steps", "denoiser_batch", "schedule", "target",
                  "cond_dropout", "hidden", "depth", "width", "context_norm", "n_tokens", "null_prefix")


def _cache_file(cfg: CheckConfig) -> Path | None:
    if not cfg.denoiser_cache:
        return None
    key = json.dumps({k: getattr(cfg, k) for k in _DENOISER_KEYS}, sort_keys=True)
    return Path(cfg.denoiser_cache) / f"denoiser-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


def _avg(v: list[float]) -> float:
    return sum(v) / max(len(v), 1)


def run_check(cfg: CheckConfig | None = None, log=print) -> dict[str, Any]:
    cfg = cfg or CheckConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {cfg.schedule!r}")
    if not isinstance(cfg.n_val, int) or not 0 <= cfg.n_val < cfg.n_train:
        raise ValueError(f"n_val must be an int in [0, n_train={cfg.n_train}), got {cfg.n_val!r}")
    if cfg.val_every and not cfg.n_val:
        raise ValueError("val_every > 0 needs a validation split: set n_val > 0")
    if cfg.eval_noise not in ("shared", "per_image"):
        raise ValueError(f"eval_noise must be 'shared' or 'per_image', got {cfg.eval_noise!r}")
    per_image = cfg.eval_noise == "per_image"
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    prompts = class_prompts()
    tokens, mask = encode_prompts(prompts)
    null_tokens, null_mask = encode_prompts([""])
    null_cls = null_tokens[0, 0]  # the [CLS] token of "": the soft tokens' initial value (and the fixed prefix)
    length, dim = tokens.shape[1], tokens.shape[2]
    null_t = torch.zeros(length, dim)
    null_m = torch.zeros(length, dtype=torch.bool)
    null_t[: null_tokens.shape[1]], null_m[: null_tokens.shape[1]] = null_tokens[0], null_mask[0]
    xtr, ytr = load_images("train", cfg.n_train)
    xval, yval = xtr[xtr.shape[0] - cfg.n_val:], ytr[ytr.shape[0] - cfg.n_val:]
    xtr, ytr = xtr[: xtr.shape[0] - cfg.n_val], ytr[: ytr.shape[0] - cfg.n_val]
    xte, yte = load_images("test", cfg.n_eval)
    out: dict[str, Any] = {"config": asdict(cfg), "prompts": prompts}

    noiser = SCHEDULES[cfg.schedule](target=cfg.target)
    model = TinyDenoiser((1, 28, 28), dim, cfg.hidden, cfg.depth, width=cfg.width, context_norm=cfg.context_norm)
    prefix = SoftTokens(cfg.n_tokens, dim, init=null_cls).requires_grad_(False) if cfg.null_prefix else None

    def with_prefix(t: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if prefix is None:
            return t, m
        with torch.no_grad():
            return prefix(t, None, m)

    p_tok, p_mask = with_prefix(tokens, mask)
    n_tok, n_mask = with_prefix(null_t[None], null_m[None])
    g = torch.Generator().manual_seed(cfg.seed)
    t1 = time.perf_counter()
    cache = _cache_file(cfg)
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        model.load_state_dict(saved["state"])
        d_losses, out["denoiser_seconds"] = saved["loss"], saved["seconds"]
        out["denoiser_cached"] = str(cache)
    else:
        d_losses = train_denoiser(
            model,
            _denoiser_batches(xtr, ytr, p_tok, p_mask, cfg.denoiser_batch, g),
            cfg.denoiser_steps,
            noiser=noiser,
            cond_dropout=cfg.cond_dropout,
            null_cond=(n_tok[0], n_mask[0]) if cfg.cond_dropout > 0 else None,
            seed=cfg.seed,
        )
        out["denoiser_seconds"] = time.perf_counter() - t1
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state": model.state_dict(), "loss": d_losses, "seconds": out["denoiser_seconds"]}, cache)
    out["denoiser_loss"] = d_losses
    log(f"denoiser: {cfg.denoiser_steps} steps, loss {d_losses[0]:.4f} -> {_avg(d_losses[-20:]):.4f} "
        f"({out['denoiser_seconds']:.0f} s)")
    base = TokenConditioned(model, prefix) if prefix is not None else model

    def ev(m) -> dict[str, Any]:
        return evaluate(m, xte, yte, (tokens, mask), cfg.eval_ts, noiser, cfg.seed + 1, per_image)

    def ev_val(m) -> float:
        return evaluate(m, xval, yval, (tokens, mask), cfg.eval_ts, noiser, cfg.seed + 5, per_image)["mean_rank"]

    out["base"] = ev(base)
    b = out["base"]
    log(f"base: per-grid mean rank {b['mean_rank']:.3f} top-1 {b['top1']:.3f}; t-averaged "
        f"{b['t_avg']['mean_rank']:.3f} / {b['t_avg']['top1']:.3f}; own err {b['err_own']}, other {b['err_other']}")
    out["forms"] = {}
    for form in cfg.forms:
        torch.manual_seed(cfg.seed + 2)  # same initial tokens for every form
        init = null_cls if cfg.null_prefix else None
        soft = SoftTokens(cfg.n_tokens, dim, n_buckets=cfg.n_buckets, init=init,
                          t_init_std=0.0 if cfg.null_prefix else None)
        wrapped = TokenConditioned(model, soft)
        init_stats = ev(wrapped)
        g = torch.Generator().manual_seed(cfg.seed + 3)
        t1 = time.perf_counter()
        val_curve: list[list[float]] = []
        best: dict[str, Any] = {}
        if cfg.val_every:
            val_curve.append([0, ev_val(wrapped)])
            best = {"step": 0, "rank": val_curve[0][1], "state": copy.deepcopy(soft.state_dict())}

        def hook(step: int, loss: float, wrapped=wrapped, val_curve=val_curve, best=best, soft=soft) -> None:
            if cfg.val_every and (step + 1) % cfg.val_every == 0:
                r = ev_val(wrapped)
                val_curve.append([step + 1, r])
                if r < best["rank"]:  # strict: ties keep the earlier (shorter) run
                    best.update(step=step + 1, rank=r, state=copy.deepcopy(soft.state_dict()))

        losses = train_soft_tokens(
            model,
            soft,
            _grid_batches(xtr, ytr, tokens, mask, cfg.token_batch, g),
            ErrorContrast(form=form, diag_weight=cfg.diag_weight),
            cfg.token_steps,
            noiser=noiser,
            t_range=cfg.t_range,
            lr=cfg.token_lr,
            weight_decay=cfg.token_wd,
            grids_per_step=cfg.grids_per_step,
            seed=cfg.seed + 4,
            log=hook,
        )
        secs = time.perf_counter() - t1
        rec: dict[str, Any] = {"init": init_stats, "loss": losses, "seconds": secs, "val_curve": val_curve,
                               "trainable_params": sum(p.numel() for p in soft.parameters())}
        if cfg.val_every and best["step"] != cfg.token_steps:
            rec["last"] = ev(wrapped)  # the tokens at the last step, for the record (not what is selected)
            rec["last_gain"] = paired_gain(out["base"], rec["last"])
            soft.load_state_dict(best["state"])
        rec["selected_step"] = best["step"] if cfg.val_every else cfg.token_steps
        after = ev(wrapped)
        rec["after"], rec["gain"] = after, paired_gain(out["base"], after)
        out["forms"][form] = rec
        log(f"{form}: per-grid mean rank {b['mean_rank']:.3f} (base) / {init_stats['mean_rank']:.3f} (init) -> "
            f"{after['mean_rank']:.3f}; top-1 {b['top1']:.3f} -> {after['top1']:.3f}; t-averaged "
            f"{b['t_avg']['mean_rank']:.3f} -> {after['t_avg']['mean_rank']:.3f}; per t {after['per_t_mean_rank']} "
            f"(loss {_avg(losses[:20]):.4f} -> {_avg(losses[-20:]):.4f}, {secs:.0f} s); gain {rec['gain']['gain']:.3f} "
            f"+- {rec['gain']['se']:.3f} (grids) / {rec['gain'].get('se_image', float('nan')):.3f} (images); "
            f"selected step {rec['selected_step']}, validation curve {val_curve}")
    out["seconds"] = time.perf_counter() - t0
    return out
