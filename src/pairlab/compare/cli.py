"""``pairlab compare``: a grid of runs (variants x seeds) and its leaderboard (registered by ``register(app)``).

Variants come from ``--grid FILE`` (a YAML listing named variants with config overrides; see
:func:`pairlab.compare.grid.load_grid`), from ``--objective a,b,c`` (one variant per objective), and/or
from repeated ``--variant 'NAME:key=value;key=value'``. The base config is ``--config FILE`` <
the grid's ``base`` < ``--set key=value`` (dotted keys reach nested fields: ``--set eval.knn_k=10``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer


def parse_variant(text: str) -> tuple[str, dict]:
    """``"dcl-b32:objective=dcl;batch_size=32"`` -> ``("dcl-b32", {"objective": "dcl", "batch_size": 32})``."""
    from pairlab.compare.grid import parse_set

    name, sep, rest = text.partition(":")
    if not name.strip():
        raise ValueError(f"--variant expects NAME or NAME:key=value;key=value, got {text!r}")
    items = [p for p in rest.split(";") if p.strip()] if sep else []
    return name.strip(), parse_set(items)


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        grid: Path = typer.Option(None, "--grid", help="Grid YAML: base, seeds, variants (name + set), notes."),
        objective: str = typer.Option(None, "--objective", help="Comma-separated objectives, one variant each."),
        variant: list[str] = typer.Option(None, "--variant", help="NAME:key=value;key=value (repeatable)."),
        seeds: str = typer.Option(None, "--seeds", help="Seeds, e.g. 0,1,2 or 0-2 (default: the grid's, else 0)."),
        config: Path = typer.Option(None, "--config", help="Base training config YAML."),
        set_: list[str] = typer.Option(None, "--set", help="Base config override KEY=VALUE (repeatable, dotted)."),
        name: str = typer.Option(None, "--name", help="Leaderboard name: leaderboard-NAME.* (default: grid stem)."),
        out: Path = typer.Option(None, "--out", help="Folder for leaderboard files (default: the runs folder)."),
        runs_dir: Path = typer.Option(None, "--runs-dir", help="Run folders' parent (default runs/compare-NAME)."),
        rerun: bool = typer.Option(False, "--rerun", help="Retrain every run even if a finished one exists."),
        no_baselines: bool = typer.Option(False, "--no-baselines", help="Skip the raw / random-init rows."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (and which runs would be reused)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar or table."),
    ) -> None:
        """Train a grid of variants x seeds and write a leaderboard (CSV, Markdown, one PNG per metric)."""
        from pairlab.compare.grid import (
            Variant,
            check_names,
            check_unique,
            compare,
            load_grid,
            merge,
            objective_variants,
            parse_seeds,
            parse_set,
            run_config,
            run_state,
        )
        from pairlab.train.config import read_yaml

        variants: list[Variant] = []
        base: dict = read_yaml(config) if config is not None else {}
        grid_seeds, notes, title = None, "", ""
        if grid is not None:
            g = load_grid(grid)
            base = merge(base, g.base)
            variants += g.variants
            grid_seeds, notes, title = g.seeds, g.notes, g.title
        if objective:
            variants += objective_variants(objective)
        for v in variant or []:
            n, ov = parse_variant(v)
            variants.append(Variant(n, ov))
        if not variants:
            raise ValueError("nothing to compare: give --grid FILE, --objective a,b,c or --variant NAME:key=value")
        check_unique(variants)
        base = merge(base, parse_set(set_ or []))
        seed_list = parse_seeds(seeds) if seeds is not None else (grid_seeds or [0])
        if name is None:
            name = grid.stem.removeprefix("compare-") if grid is not None else ""
        runs = runs_dir if runs_dir is not None else Path("runs") / ("compare-" + name if name else "compare")
        out_dir = out if out is not None else runs
        parts = ["pairlab", "compare"]
        for flag, val in (("--grid", grid), ("--objective", objective), ("--config", config)):
            if val is not None:
                parts += [flag, str(val)]
        for v in variant or []:
            parts += ["--variant", v]
        if seeds is not None:
            parts += ["--seeds", seeds]
        for s in set_ or []:
            parts += ["--set", s]
        for flag, val in (("--name", name if name else None), ("--out", out), ("--runs-dir", runs_dir)):
            if val is not None:
                parts += [flag, str(val)]
        parts += ["--rerun"] if rerun else []
        parts += ["--no-baselines"] if no_baselines else []
        command = shlex.join(parts)
        if dry_run:
            check_names(base, variants)
            for v in variants:
                for s in seed_list:
                    try:
                        state = run_state(run_config(base, v, s, runs))
                    except ValueError as e:
                        state = f"rejected ({e})"
                    typer.echo(f"{v.name} seed {s}: {'new' if rerun and state == 'done' else state}")
            return
        rows = compare(variants, seed_list, base, out_dir, runs_dir=runs, name=name, command=command, notes=notes,
                       title=title, quiet=quiet, rerun=rerun, baselines=not no_baselines)
        if not quiet:
            _print_table(rows, out_dir, name)


def _print_table(rows: list[dict], out_dir: Path, name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from pairlab.compare.leaderboard import aggregate, fmt

    table = Table(title=f"leaderboard{' ' + name if name else ''} (mean ± std over seeds)")
    for c in ("variant", "n", "kNN", "linear", "align", "unif", "eff. rank", "epoch s"):
        table.add_column(c, justify="left" if c == "variant" else "right")
    failed = []
    for s in aggregate(rows):
        if not s["n_ok"]:
            failed.append(f"{s['variant']}: {'; '.join(s['errors'])}")
            continue
        table.add_row(s["variant"], str(s["n_ok"]), *(fmt(s[m + "_mean"], s[m + "_std"], d) for m, d in (
            ("knn_acc", 4), ("linear_acc", 4), ("alignment", 3), ("uniformity", 3), ("effective_rank", 1),
            ("epoch_s", 1))))
    Console().print(table)
    for line in failed:
        Console().print(f"[red]not trained[/] {line}", soft_wrap=True)
    Console().print(f"leaderboard files in {out_dir}/")
