"""Write a finished Fashion-MNIST run as a committed result: ``NAME.json``, ``NAME.md`` and its PNG plots.

Usage (repository root)::

    python benchmarks/fmnist_result.py RUN_DIR --name fmnist-long --command "OMP_NUM_THREADS=1 torchrun ..."

The Markdown gives the three rows of the quality bar (learned backbone, raw pixels, random-init encoder, one
protocol), the verdict against both baselines, the geometry, the per-epoch loss and the time (wall and CPU) with
the machine's load average, since this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def verdict(m: dict) -> list[str]:
    out = []
    for key, label in (("knn_acc", "kNN"), ("linear_acc", "linear")):
        learned, raw, rnd = m[key], m[f"raw_{key}"], m[f"random_{key}"]
        vs_random = "beats" if learned > rnd else "does NOT beat"
        vs_raw = "beats" if learned > raw else "does NOT beat"
        out.append(f"- {label}: learned {learned:.4f} {vs_random} random init {rnd:.4f} (by {learned - rnd:+.4f}) "
                   f"and {vs_raw} raw pixels {raw:.4f} (by {learned - raw:+.4f}).")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    run, out = Path(a.run_dir), Path(a.out)
    m = json.loads((run / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = (run / "config.yaml").read_text()
    record = {**{k: v for k, v in m.items() if k not in ("plots", "score_hist", "run_dir")}, "command": a.command,
              "epochs_log": epochs}
    (out / f"{a.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    pngs = []
    for png in ("loss", "scores", "projection"):
        src = run / f"{png}.png"
        if src.is_file():
            shutil.copy(src, out / f"{a.name}-{png}.png")
            pngs.append(f"{a.name}-{png}.png")
    la0, la1 = m.get("load_avg_start", [0, 0, 0]), m.get("load_avg_end", [0, 0, 0])
    world, threads = m.get("world_size", 1), m.get("torch_threads", 1)
    sc = m.get("scores", {})
    lines = [
        f"# {a.title or a.name}",
        "",
        "Command (repository root):",
        "",
        "```bash",
        a.command,
        "```",
        "",
        "| features | kNN acc (k=20, T=0.07, cosine) | linear probe acc |",
        "| --- | --- | --- |",
        f"| learned (backbone, {m.get('feature_dim', '?')}-d) | {m['knn_acc']:.4f} | {m['linear_acc']:.4f} |",
        f"| raw pixels (784-d) | {m['raw_knn_acc']:.4f} | {m['raw_linear_acc']:.4f} |",
        f"| random-init encoder | {m['random_knn_acc']:.4f} | {m['random_linear_acc']:.4f} |",
        "",
        f"Protocol: frozen features, fitted on {m.get('eval_train_size')} Fashion-MNIST training images, scored on "
        f"{m.get('eval_test_size')} test images; identical for the three rows.",
        "",
        "## Verdict",
        "",
        *verdict(m),
        "",
        "## Geometry and training",
        "",
        f"Alignment {m.get('alignment', float('nan')):.4f}, uniformity {m.get('uniformity', float('nan')):.4f}, "
        f"effective rank {m.get('effective_rank', float('nan')):.2f} (backbone) / "
        f"{m.get('effective_rank_z', float('nan')):.2f} (projection); positive / negative cosine means "
        f"{sc.get('pos_mean', float('nan')):.3f} / {sc.get('neg_mean', float('nan')):.3f}.",
        "",
        "| epoch | step | loss | epoch s | images/s |",
        "| --: | --: | --: | --: | --: |",
        *[f"| {e['epoch']} | {e['step']} | {e['loss']:.4f} | {e.get('epoch_s', 0):.0f} | "
          f"{e.get('images_per_s', 0):.0f} |" for e in epochs],
        "",
        f"Time: {m['steps']} steps; wall {m['wall_s']:.0f} s (training {m['train_s']:.0f} s, evaluation "
        f"{m.get('eval_s', 0):.0f} s); CPU time of rank 0: training {m.get('train_cpu_s', 0):.0f} s, evaluation "
        f"{m.get('eval_cpu_s', 0):.0f} s. {world} process(es) x {threads} thread(s) on {m.get('cpu_count')} cores.",
        f"The machine is shared: load average (1, 5, 15 min) {la0[0]:.1f}, {la0[1]:.1f}, {la0[2]:.1f} at the start "
        f"and {la1[0]:.1f}, {la1[1]:.1f}, {la1[2]:.1f} at the end, so wall times are inflated; on an idle 2-core "
        "machine the training CPU time per rank is the better guide to the wall time.",
        "",
        *[f"![{png}]({png})" for png in pngs],
        "",
        "## Config",
        "",
        "```yaml",
        config.rstrip(),
        "```",
        "",
    ]
    (out / f"{a.name}.md").write_text("\n".join(lines))
    print(out / f"{a.name}.md")


if __name__ == "__main__":
    main()
