"""``pairlab train`` and ``pairlab eval`` (registered into :mod:`pairlab.cli` by ``register(app)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# the order a user reads them in; anything else the run directory holds follows, sorted (folders end in "/")
ARTEFACT_ORDER = ("report.html", "metrics.csv", "tensorboard/", "mlruns/", "score_hist.jsonl", "metrics.json",
                  "metrics.jsonl", "config.yaml", "checkpoint.pt")


OWN_DEFAULT = ("default", "null", "none")  # --temperature values meaning "the objective's own default"


def parse_temperature(value: str | None) -> float | None:
    """``--temperature`` as a number (validated > 0 by the config); ``None`` when not given."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--temperature must be a number > 0 or 'default' (each objective's own default), "
                         f"got {value!r}") from None


def run_artefacts(run: Path) -> list[str]:
    """What ``run`` really holds: known artefacts first (:data:`ARTEFACT_ORDER`), then the PNGs and any other
    entry by name; temporary (``*.tmp``) and hidden files are left out. ``[]`` when ``run`` does not exist."""
    run = Path(run)
    if not run.is_dir():
        return []
    names = [p.name + "/" * p.is_dir() for p in run.iterdir()
             if not p.name.startswith(".") and not p.name.endswith(".tmp")]
    rank = {n: i for i, n in enumerate(ARTEFACT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank) + (not n.endswith(".png"))), n))


def print_summary(metrics: dict[str, Any], title: str = "frozen-feature evaluation") -> None:
    """Rich table: learned vs raw pixels vs random init (kNN and linear), plus geometry."""
    from rich.console import Console
    from rich.table import Table

    def fmt(key: str) -> str:
        v = metrics.get(key)
        return f"{v:.4f}" if isinstance(v, (int, float)) else "-"

    table = Table(title=title)
    table.add_column("features")
    table.add_column("kNN acc", justify="right")
    table.add_column("linear acc", justify="right")
    table.add_row("learned (backbone)", fmt("knn_acc"), fmt("linear_acc"))
    table.add_row("raw pixels", fmt("raw_knn_acc"), fmt("raw_linear_acc"))
    table.add_row("random init", fmt("random_knn_acc"), fmt("random_linear_acc"))
    console = Console()
    console.print(table)
    extra = [f"{k}={metrics[k]:.3f}" for k in ("alignment", "uniformity", "effective_rank") if k in metrics]
    if "wall_s" in metrics:
        extra.append(f"wall {metrics['wall_s']:.0f}s")
    if "load_avg_end" in metrics:
        extra.append(f"load {metrics['load_avg_end'][0]:.1f}")
    console.print("  ".join(extra))
    if "run_dir" in metrics:
        run = Path(metrics["run_dir"])
        files = run_artefacts(run)
        if "report.html" in files:
            console.print(f"report: {run / 'report.html'}", soft_wrap=True)
        console.print(f"artefacts in {run}/: {', '.join(files)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path = typer.Option(None, "--config", help="YAML config file (flags override it)."),
        objective: str = typer.Option(None, "--objective", help="Registered objective name (pairlab list)."),
        candidates: str = typer.Option(None, "--candidates", help="Candidates component (queue, mochi, ...)."),
        weights: str = typer.Option(None, "--weights", help="Weights component (hardness, meow, ...)."),
        dataset: str = typer.Option(None, "--dataset", help="fmnist | digits | your data: folder:PATH (images, "
                                    "one sub-folder per class or unlabelled), npz:PATH / parquet:PATH (x, optional y), "
                                    "csv:PATH (text column + optional label)."),
        epochs: int = typer.Option(None, "--epochs"),
        batch_size: int = typer.Option(None, "--batch-size"),
        views: int = typer.Option(None, "--views", help="Views per image K."),
        temperature: str = typer.Option(None, "--temperature", help="tau > 0 for objectives that take one, or "
                                        "'default': each objective's own (paper) default. Config default 0.2."),
        lr: float = typer.Option(None, "--lr"),
        seed: int = typer.Option(None, "--seed"),
        name: str = typer.Option(None, "--name", help="Run name: writes runs/<name>/."),
        data_dir: str = typer.Option(None, "--data-dir", help="Folder with the data set's files."),
        runs_dir: str = typer.Option(None, "--runs-dir", help="Parent folder of run directories (default runs)."),
        max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps."),
        grad_cache_chunk: int = typer.Option(None, "--grad-cache-chunk", help="Exact large-batch gradient caching."),
        device: str = typer.Option(None, "--device", help="cpu | cuda | ..."),
        resume: bool = typer.Option(False, "--resume", help="Continue runs/<name>/ from its checkpoint."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
        logger: str = typer.Option(None, "--logger", help="Tracking: tensorboard,csv (default) | mlflow | none "
                                   "(comma-separated; files in runs/<name>/)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar or table."),
    ) -> None:
        """Train an encoder with a contrastive objective, then evaluate it (default: Fashion-MNIST, NT-Xent)."""
        from pairlab.train.config import load_config
        from pairlab.train.loop import train

        own_temperature = temperature is not None and temperature.strip().lower() in OWN_DEFAULT
        overrides = {
            "objective": objective,
            "candidates": candidates,
            "weights": weights,
            "dataset": dataset,
            "epochs": epochs,
            "batch_size": batch_size,
            "views": views,
            "temperature": None if own_temperature else parse_temperature(temperature),
            "lr": lr,
            "seed": seed,
            "name": name,
            "data_dir": data_dir,
            "runs_dir": runs_dir,
            "max_steps": max_steps,
            "grad_cache_chunk": grad_cache_chunk,
            "device": device,
        }
        if logger is not None:
            from pairlab.train.tracking import parse_loggers

            overrides["loggers"] = parse_loggers(logger)  # ValueError listing the choices -> exit 2
        if config is not None:
            from pairlab.train.config import read_yaml

            raw = read_yaml(config)
            if isinstance(raw, dict) and "domain" in raw:  # text / time series / seqrec / graph / paired configs
                from pairlab import domains

                dom = {k: v for k, v in overrides.items() if k in ("seed", "name", "runs_dir", "epochs")}
                metrics = domains.run(str(config), dom, overwrite=overwrite, quiet=quiet)
                if not quiet:
                    print({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
                return
        cfg = load_config(config, overrides)
        if own_temperature:  # null: build_objective leaves the objective's own default
            cfg = cfg.model_copy(update={"temperature": None})
        metrics = train(cfg, resume=resume, overwrite=overwrite, quiet=quiet)
        from pairlab import distributed

        if not quiet and distributed.rank() == 0:
            print_summary(metrics, title=f"{cfg.name}: {cfg.objective} on {cfg.dataset}, {metrics['steps']} steps")

    @app.command("eval")
    def eval_cmd(
        run_dir: Path = typer.Argument(..., help="A run directory written by `pairlab train`."),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Re-evaluate a run's checkpoint (kNN, linear probe, baselines, geometry, plots)."""
        from pairlab.train.loop import evaluate_saved_run

        metrics = evaluate_saved_run(run_dir, quiet=quiet)
        if not quiet:
            print_summary(metrics, title=f"eval of {run_dir}")
