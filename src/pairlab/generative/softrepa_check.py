"""The SoftREPA real check on Fashion-MNIST: does error-contrast training of soft tokens alone improve alignment?

1. Train :class:`~pairlab.generative.TinyDenoiser` (flow matching) on Fashion-MNIST 28x28 images in ``[-1, 1]``,
   conditioned on MiniLM token embeddings of the class-name prompt (``"a photo of a {class}"``).
2. Freeze it; train only :class:`~pairlab.generative.SoftTokens` with
   :class:`~pairlab.objectives.error_contrast.ErrorContrast` on ``B x B`` grids (``B`` train images of distinct
   classes, their prompts, one shared noise and ``t`` per grid), in the faithful ``exp`` form and the ``log`` form.
3. On held-out test images, the rank of the matching prompt's error among all 10 prompts (averaged over a fixed
   set of timesteps and shared noises, the same draws for every model) before and after.

:func:`run_check` returns every number (and the curves) as a dict; ``benchmarks/softrepa.py`` adds plots and the
report. The defaults take a few CPU minutes; tests run a shorter configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pairlab.generative.denoiser import TinyDenoiser, train_denoiser
from pairlab.generative.pair_errors import matching_rank, mean_pair_errors
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
    schedule: str = "vp"  # "vp" (epsilon prediction, SD1.5) or "flow" (velocity, SD3)
    hidden: int = 256
    depth: int = 2
    width: int = 64
    token_steps: int = 300
    token_batch: int = 8  # B: distinct classes per grid (B x B pairs)
    n_tokens: int = 4
    n_buckets: int | None = 10
    token_lr: float = 1e-2  # official 1e-3 (SD, 3 epochs of COCO); a short CPU run needs more
    # high-noise end, where epsilon-prediction errors are small enough (~0.01) for the faithful exp form not to
    # saturate (official: t ~ U[0, 1000)); the same range for both forms
    t_range: tuple[float, float] = (0.6, 1.0)
    init_null: bool = True  # initialise the tokens to the null-prompt "" embedding (official SD1.5 variant)
    n_eval: int = 500
    eval_ts: Sequence[float] = field(default_factory=lambda: (0.6, 0.7, 0.8, 0.9))
    forms: Sequence[str] = ("exp", "log")
    threads: int | None = None


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
        "hist": torch.bincount(ranks - 1, minlength=n_cond).tolist(),
    }


def _avg(v: list[float]) -> float:
    return sum(v) / max(len(v), 1)


def run_check(cfg: CheckConfig | None = None, log=print) -> dict[str, Any]:
    cfg = cfg or CheckConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    prompts = class_prompts()
    tokens, mask = encode_prompts(prompts)
    xtr, ytr = load_images("train", cfg.n_train)
    xte, yte = load_images("test", cfg.n_eval)
    out: dict[str, Any] = {"config": asdict(cfg), "prompts": prompts}

    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {cfg.schedule!r}")
    noiser = SCHEDULES[cfg.schedule]()
    model = TinyDenoiser((1, 28, 28), tokens.shape[-1], cfg.hidden, cfg.depth, width=cfg.width)
    g = torch.Generator().manual_seed(cfg.seed)
    t1 = time.perf_counter()
    d_losses = train_denoiser(
        model,
        _denoiser_batches(xtr, ytr, tokens, mask, cfg.denoiser_batch, g),
        cfg.denoiser_steps,
        noiser=noiser,
        seed=cfg.seed,
    )
    out["denoiser_loss"] = d_losses
    out["denoiser_seconds"] = time.perf_counter() - t1
    log(f"denoiser: {cfg.denoiser_steps} steps, loss {d_losses[0]:.4f} -> {d_losses[-1]:.4f} "
        f"({out['denoiser_seconds']:.0f} s)")

    def eval_ranks(m) -> tuple[dict[str, Any], torch.Tensor]:
        err = mean_pair_errors(m, xte, (tokens, mask), cfg.eval_ts, noiser=noiser, seed=cfg.seed + 1)
        ranks = matching_rank(err, yte)
        return rank_stats(ranks, tokens.shape[0]), ranks

    out["base"], base_ranks = eval_ranks(model)
    out["base_ranks"] = base_ranks.tolist()
    log(f"base (no soft tokens): mean rank {out['base']['mean_rank']:.3f}, top-1 {out['base']['top1']:.3f}")
    out["forms"] = {}
    for form in cfg.forms:
        torch.manual_seed(cfg.seed + 2)  # same initial tokens for every form
        init = encode_prompts([""])[0][0, 0] if cfg.init_null else None  # the [CLS] token of ""
        soft = SoftTokens(cfg.n_tokens, tokens.shape[-1], n_buckets=cfg.n_buckets, init=init)
        wrapped = TokenConditioned(model, soft)
        init_stats, _ = eval_ranks(wrapped)
        g = torch.Generator().manual_seed(cfg.seed + 3)
        t1 = time.perf_counter()
        losses = train_soft_tokens(
            model,
            soft,
            _grid_batches(xtr, ytr, tokens, mask, cfg.token_batch, g),
            ErrorContrast(form=form),
            cfg.token_steps,
            noiser=noiser,
            t_range=cfg.t_range,
            lr=cfg.token_lr,
            seed=cfg.seed + 4,
        )
        secs = time.perf_counter() - t1
        after, ranks = eval_ranks(wrapped)
        out["forms"][form] = {"init": init_stats, "after": after, "loss": losses, "seconds": secs,
                              "ranks": ranks.tolist(), "trainable_params": sum(p.numel() for p in soft.parameters())}
        log(f"{form}: mean rank {out['base']['mean_rank']:.3f} (base) / {init_stats['mean_rank']:.3f} (init tokens) "
            f"-> {after['mean_rank']:.3f}; top-1 {out['base']['top1']:.3f} -> {after['top1']:.3f} "
            f"(loss {_avg(losses[:20]):.4f} -> {_avg(losses[-20:]):.4f}, "
            f"{secs:.0f} s)")
    out["seconds"] = time.perf_counter() - t0
    return out
