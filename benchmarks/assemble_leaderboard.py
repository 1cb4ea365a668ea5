"""Assemble a leaderboard from the *finished* runs of a grid, when the grid could not finish every seed.

Usage (repository root)::

    python benchmarks/assemble_leaderboard.py --grid configs/X.yaml --runs-dir RUNS --name NAME \
        [--out benchmarks/results] [--note "why some seeds are missing"]

Only run directories with a ``metrics.json`` whose ``config.yaml`` matches the grid's config for that (variant,
seed) are used (the same test ``pairlab compare`` applies before reusing a run); nothing is trained except the
baseline rows (raw features and random init, for the seeds that have runs). The Markdown's ``n`` column says how many
seeds each variant has, so a partial grid is visible as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pairlab.compare.grid import (
    backend_for,
    baseline_rows,
    load_grid,
    make_row,
    merge,
    run_config,
    run_state,
    sorted_rows,
)
from pairlab.compare.leaderboard import write_leaderboard
from pairlab.train.config import make_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True)
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    grid = load_grid(a.grid)
    runs = Path(a.runs_dir)
    rows, seeds_seen = [], set()
    for seed in grid.seeds:
        for v in grid.variants:
            cfg = run_config(grid.base, v, seed, runs)
            run_dir = Path(cfg.runs_dir) / cfg.name
            if run_state(cfg) != "done":
                continue
            metrics = json.loads((run_dir / "metrics.json").read_text())
            rows.append(make_row(v.name, seed, metrics, run_dir=str(run_dir), reused=True))
            seeds_seen.add(seed)
    seeds = sorted(seeds_seen)
    cfg0 = make_config(merge(grid.base, {"runs_dir": str(runs)}), source="base config")
    brows = baseline_rows(cfg0, seeds, backend_for(cfg0.dataset), runs / "baselines.json")
    base_rows = [make_row(r["variant"], r["seed"], r, kind="baseline") for r in brows]
    command = (f"python benchmarks/assemble_leaderboard.py --grid {a.grid} --runs-dir {a.runs_dir} --name {a.name}"
               " (finished runs of `pairlab compare --grid " + a.grid + "`)")
    notes = "\n\n".join(x for x in (grid.notes, a.note) if x)
    write_leaderboard(sorted_rows(rows, grid.variants) + base_rows, a.out, name=a.name, command=command,
                      base=grid.base, variants=grid.variants, seeds=seeds, notes=notes, title=grid.title)
    print(f"{len(rows)} finished runs over seeds {seeds} -> {a.out}/leaderboard-{a.name}.md")


if __name__ == "__main__":
    main()
