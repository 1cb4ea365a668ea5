"""SoftREPA real check on Fashion-MNIST: soft tokens trained alone with the error-contrast loss.

Trains a small conditional denoiser (MiniLM token embeddings of "a photo of a {class}"), then only soft tokens with
``ErrorContrast`` in the faithful exp form and the log form, and measures the rank of the matching prompt's error
among the 10 prompts on held-out test images. Prints a markdown section (the body of ``results/softrepa.md``) and
writes ``results/softrepa-{schedule}-ranks.png`` and ``-loss.png``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/softrepa.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from pairlab.generative.softrepa_check import CheckConfig, run_check  # noqa: E402


def _smooth(v: list[float], k: int = 10) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(v):
        acc += x
        if i >= k:
            acc -= v[i - k]
        out.append(acc / min(i + 1, k))
    return out


def plots(res: dict, out_dir: Path, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    forms = list(res["forms"])
    fig, axes = plt.subplots(1, len(forms), figsize=(5 * len(forms), 3.6), squeeze=False)
    n = len(res["base"]["hist"])
    xs = torch.arange(1, n + 1).numpy()
    for ax, form in zip(axes[0], forms, strict=True):
        w = 0.4
        ax.bar(xs - w / 2, res["base"]["hist"], w, label=f"before (mean {res['base']['mean_rank']:.3f})")
        after = res["forms"][form]["after"]
        ax.bar(xs + w / 2, after["hist"], w, label=f"after (mean {after['mean_rank']:.3f})")
        ax.set_xlabel("rank of the matching prompt's error (1 = lowest)")
        ax.set_ylabel("held-out images")
        ax.set_title(f"form={form}")
        ax.set_xticks(xs)
        ax.legend()
    fig.tight_layout()
    names.append(f"{prefix}-ranks.png")
    fig.savefig(out_dir / names[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 1 + len(forms), figsize=(4.5 * (1 + len(forms)), 3.4), squeeze=False)
    axes[0][0].plot(res["denoiser_loss"], alpha=0.4)
    axes[0][0].plot(_smooth(res["denoiser_loss"]))
    axes[0][0].set_title(f"denoiser ({res['config']['schedule']}) MSE")
    axes[0][0].set_xlabel("step")
    for ax, form in zip(axes[0][1:], forms, strict=True):
        loss = res["forms"][form]["loss"]
        ax.plot(loss, alpha=0.4)
        ax.plot(_smooth(loss))
        ax.axhline(float(torch.log(torch.tensor(float(res["config"]["token_batch"])))), ls="--", c="gray", lw=1)
        ax.set_title(f"soft tokens, error contrast form={form}")
        ax.set_xlabel("step (dashed: log B)")
    fig.tight_layout()
    names.append(f"{prefix}-loss.png")
    fig.savefig(out_dir / names[-1], dpi=110)
    plt.close(fig)
    return names


def report(res: dict, cmd: str, pngs: list[str]) -> str:
    c = res["config"]
    lines = [
        f"## schedule = {c['schedule']}",
        "",
        f"Command: `{cmd}`",
        "",
        f"Denoiser: TinyDenoiser (hidden {c['hidden']}, depth {c['depth']}, attention width {c['width']}), "
        f"{c['denoiser_steps']} steps x batch {c['denoiser_batch']}, loss {res['denoiser_loss'][0]:.4f} -> "
        f"{sum(res['denoiser_loss'][-20:]) / 20:.4f} (last 20), {res['denoiser_seconds']:.0f} s. "
        f"Soft tokens: {c['n_tokens']} tokens (init: {'null prompt' if c['init_null'] else 'N(0, 0.02)'}) + "
        f"{c['n_buckets']} timestep buckets, {c['token_steps']} steps of "
        f"B x B grids (B = {c['token_batch']} distinct classes), AdamW lr {c['token_lr']}, t ~ U{tuple(c['t_range'])}. "
        f"Evaluation: {c['n_eval']} test images x 10 prompts, errors averaged over t in {tuple(c['eval_ts'])} "
        "(one shared noise per t, the same draws for every model).",
        "",
        "| model | mean rank | top-1 | top-3 | last-20 loss | train s | params trained |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| base denoiser (no soft tokens) | {res['base']['mean_rank']:.3f} | {res['base']['top1']:.3f} | "
        f"{res['base']['top3']:.3f} | | | |",
    ]
    for form, r in res["forms"].items():
        i, a = r["init"], r["after"]
        last = sum(r["loss"][-20:]) / max(len(r["loss"][-20:]), 1)
        first = sum(r["loss"][:20]) / max(len(r["loss"][:20]), 1)
        lines.append(f"| + initial soft tokens ({form} run) | {i['mean_rank']:.3f} | {i['top1']:.3f} | {i['top3']:.3f} "
                     f"| first-20 {first:.4f} | | |")
        lines.append(f"| + trained soft tokens, **form={form}** | **{a['mean_rank']:.3f}** | {a['top1']:.3f} | "
                     f"{a['top3']:.3f} | {last:.4f} | {r['seconds']:.0f} | {r['trainable_params']} |")
    lines += ["", "Rank histograms (before = base denoiser):", ""]
    lines += [f"![{p}]({p})" for p in pngs]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--schedule", default="vp", choices=["vp", "flow"])
    p.add_argument("--denoiser-steps", type=int, default=CheckConfig.denoiser_steps)
    p.add_argument("--token-steps", type=int, default=CheckConfig.token_steps)
    p.add_argument("--token-lr", type=float, default=CheckConfig.token_lr)
    p.add_argument("--n-eval", type=int, default=CheckConfig.n_eval)
    p.add_argument("--t-range", type=float, nargs=2, default=CheckConfig.t_range)
    p.add_argument("--eval-ts", type=float, nargs="+", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write every number (and curve) to this JSON file")
    a = p.parse_args(argv)
    cfg = CheckConfig(seed=a.seed, schedule=a.schedule, denoiser_steps=a.denoiser_steps, token_steps=a.token_steps,
                      token_lr=a.token_lr, n_eval=a.n_eval, threads=a.threads, t_range=tuple(a.t_range))
    if a.eval_ts:
        cfg.eval_ts = tuple(a.eval_ts)
    res = run_check(cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"softrepa-{a.schedule}"
    pngs = plots(res, out, prefix)
    args = argv if argv is not None else sys.argv[1:]
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/softrepa.py " + " ".join(args)
    body = report(res, cmd.strip(), pngs)
    meta = (f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} thread(s), "
            f"total {res['seconds']:.0f} s wall on a shared 2-core machine")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    print(body + f"\n{meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
