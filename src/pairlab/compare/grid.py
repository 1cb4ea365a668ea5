"""Run a grid of training runs (variants x seeds) and collect one row per run.

A *variant* is a name plus config overrides (a nested dict merged onto the base config, the same way
``pairlab train --config`` merges flags onto a YAML file): ``Variant("dcl", {"objective": "dcl"})``,
``Variant("ntxent-mochi", {"candidates": "mochi"})``. Each (variant, seed) becomes its own run directory
``runs_dir/<variant>-s<seed>/`` trained sequentially, in-process, by the backend of the config's data set
(:func:`pairlab.train.loop.train` for the registered image data sets and the user's own ``npz:`` / ``parquet:`` /
``folder:`` / ``csv:`` data, :mod:`pairlab.compare.mfeat` for the UCI multiple-features views).

Behaviour:

- **Failures are rows, not crashes.** A variant whose overrides the config rejects (e.g. a ``candidates``
  key the loop does not know yet), an objective the loop cannot drive, or a run that raises, gives a row
  with ``ok=False`` and ``error`` = the exception's message; the grid continues. ``KeyboardInterrupt``
  still stops the grid.
- **Resumable.** A run directory holding ``metrics.json`` (with ``knn_acc``) whose saved ``config.yaml`` equals
  the intended config is reused (``reused=True``), not rerun. A directory with the same config but no
  ``metrics.json`` (an interrupted run) is resumed from its checkpoint when the backend can; a directory
  whose config differs is overwritten. ``rerun=True`` retrains everything.
- **Baselines** (raw pixels, random-init encoder) are computed once per grid by the backend (raw once,
  random init once per seed), cached in ``runs_dir/baselines.json``, instead of once per run.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pairlab.train.config import TrainConfig, make_config, read_yaml

#: the per-run numbers copied into a row (``epoch_s`` is the mean of the run's per-epoch seconds)
METRICS: tuple[str, ...] = ("knn_acc", "linear_acc", "alignment", "uniformity", "effective_rank",
                            "effective_rank_z", "epoch_s")
ROW_FIELDS: tuple[str, ...] = ("variant", "seed", "ok", "kind", *METRICS, "steps", "train_s", "eval_s", "wall_s",
                               "load_avg", "reused", "run_dir", "error")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass
class Variant:
    """One column of the grid: a name (used in run-directory names) and config overrides."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"variant name must match {_NAME_RE.pattern} (used in directory names), got {self.name!r}")
        if not isinstance(self.overrides, dict):
            raise TypeError(f"variant {self.name!r}: overrides must be a mapping, got {type(self.overrides).__name__}")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``over`` wins; nested mappings are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["eval.knn_k=10", "lr=1e-3"]`` -> ``{"eval": {"knn_k": 10}, "lr": 0.001}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (dotted keys for nested fields), got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: value is not valid YAML ({e})") from None
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value) if _FLOAT_RE.match(value) else value
            except ValueError:
                pass
        parts = [p.strip() for p in key.split(".")]
        if any(not p for p in parts):
            raise ValueError(f"--set {item!r}: empty component in dotted key {key!r}")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"--set {item!r}: {p!r} was already set to a value, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` or a list of ints -> sorted unique seeds."""
    if isinstance(text, str):
        seeds: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)-(\d+)", part)
            try:
                seeds.extend(range(int(m[1]), int(m[2]) + 1) if m else [int(part)])
            except ValueError:
                raise ValueError(f"--seeds expects comma-separated integers or ranges like 0-2, got {text!r}") from None
    else:
        seeds = list(text)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {text!r}")
    return sorted(set(seeds))


def objective_variants(names: str | Sequence[str]) -> list[Variant]:
    """``"ntxent,dcl"`` -> one variant per objective, named after it."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("--objective needs at least one objective name (see `pairlab list --kind objectives`)")
    return [Variant(n, {"objective": n}) for n in names]


@dataclass
class Grid:
    """A grid file: ``base`` (config file path and/or inline overrides), ``seeds``, ``variants``, ``notes``."""

    base: dict[str, Any]
    seeds: list[int]
    variants: list[Variant]
    notes: str = ""
    title: str = ""


GRID_KEYS = ("base_config", "base", "seeds", "variants", "notes", "title")


def load_grid(path: str | Path) -> Grid:
    """Read a grid YAML::

        title: NT-Xent with each candidate
        base_config: configs/some.yaml   # optional, relative to the grid file or the cwd
        base: {epochs: 1, ...}           # inline overrides on top of base_config
        seeds: [0, 1, 2]
        variants:
          - name: ntxent                 # or just `- ntxent` (= objective name)
            set: {objective: ntxent}
        notes: |                         # Markdown appended to the leaderboard
    """
    data = read_yaml(path)
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"grid file {str(path)!r}: unknown keys {unknown}; valid keys are {list(GRID_KEYS)}")
    base: dict[str, Any] = {}
    if data.get("base_config"):
        p = Path(data["base_config"])
        if not p.is_file() and (Path(path).parent / p).is_file():
            p = Path(path).parent / p
        base = read_yaml(p)
    inline = data.get("base") or {}
    if not isinstance(inline, dict):
        raise ValueError(f"grid file {str(path)!r}: 'base' must be a mapping of config keys")
    base = merge(base, inline)
    raw_variants = data.get("variants") or []
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ValueError(f"grid file {str(path)!r}: 'variants' must be a non-empty list")
    variants = []
    for v in raw_variants:
        if isinstance(v, str):
            variants.append(Variant(v, {"objective": v}))
        elif isinstance(v, dict) and set(v) <= {"name", "set"} and "name" in v:
            variants.append(Variant(str(v["name"]), dict(v.get("set") or {})))
        else:
            raise ValueError(f"grid file {str(path)!r}: each variant is a name or {{name: ..., set: {{...}}}}, "
                             f"got {v!r}")
    check_unique(variants)
    return Grid(base, parse_seeds(data.get("seeds", [0])), variants, str(data.get("notes") or ""),
                str(data.get("title") or ""))


def check_unique(variants: Sequence[Variant]) -> None:
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise ValueError(f"duplicate variant name {v.name!r}; give each variant its own name")
        seen.add(v.name)


def check_names(base: dict[str, Any], variants: Sequence[Variant]) -> None:
    """Unknown objective or data-set names are input errors (ValueError up front), not failed runs."""
    from pairlab import registry

    for v in variants:
        data = merge(base, v.overrides)
        obj = data.get("objective", TrainConfig.model_fields["objective"].default)
        if isinstance(obj, str):
            registry.get("objectives", obj)
        ds = data.get("dataset", TrainConfig.model_fields["dataset"].default)
        if isinstance(ds, str) and ds != "mfeat":
            from pairlab.data.user import split_spec

            if split_spec(ds) is None:  # the user's own data (npz:/folder:/...): the prefix is checked above
                registry.get("datasets", ds)


def as_base_dict(base_config: TrainConfig | dict[str, Any] | str | Path | None) -> dict[str, Any]:
    """The base config as a plain dict (validated: a bad base is an error for the whole grid)."""
    if base_config is None:
        data: dict[str, Any] = {}
    elif isinstance(base_config, TrainConfig):
        data = base_config.model_dump(mode="json")
    elif isinstance(base_config, dict):
        data = dict(base_config)
    else:
        data = read_yaml(base_config)
    make_config(data, source="base config")
    return data


def run_config(base: dict[str, Any], variant: Variant, seed: int, runs_dir: Path) -> TrainConfig:
    """Base < variant overrides < (seed, name, runs_dir); raises ValueError when the config is rejected."""
    data = merge(merge(base, variant.overrides), {"seed": seed, "name": f"{variant.name}-s{seed}",
                                                    "runs_dir": str(runs_dir)})
    return make_config(data, source=f"variant {variant.name!r}")


def _comparable(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg_dict.items() if k not in ("runs_dir", "device")}


def run_state(cfg: TrainConfig) -> str:
    """``"done"`` (reusable), ``"partial"`` (same config, unfinished), ``"stale"`` (other config), ``"new"``."""
    run_dir = Path(cfg.runs_dir) / cfg.name
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return "stale" if run_dir.exists() and any(run_dir.iterdir()) else "new"
    try:
        same = _comparable(read_yaml(saved)) == _comparable(cfg.model_dump(mode="json"))
    except (ValueError, yaml.YAMLError):
        same = False
    if not same:
        return "stale"
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            if "knn_acc" in json.loads(metrics.read_text()):
                return "done"
        except json.JSONDecodeError:
            pass
    return "partial"


def mean_epoch_seconds(run_dir: Path) -> float | None:
    """Mean of ``epoch_s`` over the rows of ``metrics.jsonl`` (None when absent)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    vals = []
    for line in path.read_text().splitlines():
        try:
            v = json.loads(line).get("epoch_s")
        except json.JSONDecodeError:
            continue
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return sum(vals) / len(vals) if vals else None


def make_row(variant: str, seed: int, metrics: dict[str, Any] | None, *, error: str = "", run_dir: str = "",
             reused: bool = False, kind: str = "run") -> dict[str, Any]:
    """One leaderboard row (missing numbers are ``None``)."""
    m = metrics or {}
    row: dict[str, Any] = {f: None for f in ROW_FIELDS}
    load = m.get("load_avg_end")
    row.update(variant=variant, seed=seed, ok=not error, kind=kind, reused=reused, run_dir=run_dir, error=error,
               load_avg=load[0] if isinstance(load, list) and load else None)
    for k in (*METRICS, "steps", "train_s", "eval_s", "wall_s"):
        v = m.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            row[k] = float(v) if k != "steps" else int(v)
    if row["epoch_s"] is None and run_dir:
        row["epoch_s"] = mean_epoch_seconds(Path(run_dir))
    return row


Runner = Callable[..., dict[str, Any]]


@dataclass
class Backend:
    """How to train one run and how to compute the baseline rows for a data set."""

    train: Runner  # train(cfg, *, resume, overwrite, quiet) -> metrics dict (writes metrics.json)
    baselines: Callable[[TrainConfig, Sequence[int]], list[dict[str, Any]]] | None = None


def image_baselines(cfg: TrainConfig, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Raw-pixel probe once and random-init encoder probes per seed, with the run's evaluation protocol.

    Works on images and on the user's vectors (``npz:`` / ``parquet:``: the raw row is the "pixels", the
    random-init encoder is the MLP); unlabelled data has no probe, hence no baseline rows.
    """
    from pairlab.data.datasets import load_dataset
    from pairlab.data.user import data_options, is_unlabelled
    from pairlab.train.evaluate import extract, probe
    from pairlab.train.loop import model_for

    train = load_dataset(cfg.dataset, "train", cfg.data_dir, **data_options(cfg)).subset(cfg.eval.train_subset)
    test = load_dataset(cfg.dataset, "test", cfg.data_dir, **data_options(cfg)).subset(cfg.eval.test_subset)
    if is_unlabelled(train):
        return []
    flat = lambda x: x.flatten(1)  # noqa: E731
    rows = [{"variant": "raw pixels", "seed": None, **probe(extract(flat, train.x), train.labels,
                                                              extract(flat, test.x), test.labels, cfg.eval)}]
    for s in seeds:
        model = model_for(cfg.model_copy(update={"seed": s}), train.x).eval()
        fn = lambda x, m=model: m.features(x)  # noqa: E731
        rows.append({"variant": "random init", "seed": s,
                     **probe(extract(fn, train.x), train.labels, extract(fn, test.x), test.labels, cfg.eval)})
    return rows


def _image_train(cfg: TrainConfig, *, resume: bool, overwrite: bool, quiet: bool) -> dict[str, Any]:
    from pairlab.train.loop import train

    return train(cfg, resume=resume, overwrite=overwrite, quiet=quiet)


def backend_for(dataset: str) -> Backend:
    """``mfeat`` -> the multi-view MLP backend; anything else -> the training loop (images, vectors, text)."""
    if dataset == "mfeat":
        from pairlab.compare import mfeat

        return Backend(mfeat.train_mfeat, mfeat.mfeat_baselines)
    if dataset.startswith("csv:"):  # text (SimCSE on MiniLM): the run reports its own zero-shot baseline
        return Backend(_image_train, None)
    return Backend(_image_train, image_baselines)


def _error_text(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:400]


def baseline_rows(cfg: TrainConfig, seeds: Sequence[int], backend: Backend, cache: Path) -> list[dict[str, Any]]:
    """Baseline rows, cached in ``cache`` (a JSON file keyed by the evaluation-relevant config)."""
    if backend.baselines is None:
        return []
    key = json.dumps({"dataset": cfg.dataset, "data_dir": cfg.data_dir, "views": cfg.views,
                      "model": cfg.model.model_dump(mode="json"), "eval": cfg.eval.model_dump(mode="json"),
                      "seeds": list(seeds)}, sort_keys=True)
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                return list(saved["rows"])
        except (json.JSONDecodeError, KeyError):
            pass
    rows = backend.baselines(cfg, seeds)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "rows": rows}, indent=2))
    return rows


def compare(
    variants: Sequence[Variant],
    seeds: Sequence[int],
    base_config: TrainConfig | dict[str, Any] | str | Path | None,
    out_dir: str | Path,
    *,
    runs_dir: str | Path | None = None,
    name: str = "",
    command: str = "",
    notes: str = "",
    title: str = "",
    quiet: bool = False,
    rerun: bool = False,
    baselines: bool = True,
    plots: bool = True,
    backend: Backend | None = None,
) -> list[dict[str, Any]]:
    """Train every (variant, seed), write the leaderboard files into ``out_dir``, return the rows.

    Runs are trained seed-major (every variant for the first seed, then the next seed), so an
    interrupted grid still covers every variant; rows come back in grid order (variant-major), then the
    baseline rows (``kind="baseline"``). The CSV is rewritten after every run. Files written:
    ``leaderboard[-name].csv``, ``leaderboard[-name].md`` and ``leaderboard[-name]-<metric>.png``
    (see :mod:`pairlab.compare.leaderboard`). Run directories go to ``runs_dir`` (default
    ``runs/compare[-name]``).
    """
    from pairlab.compare.leaderboard import write_csv, write_leaderboard

    variants = list(variants)
    if not variants:
        raise ValueError("compare needs at least one variant")
    check_unique([v if isinstance(v, Variant) else Variant(str(v)) for v in variants])
    seeds = parse_seeds(seeds)
    base = as_base_dict(base_config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "leaderboard" + (f"-{name}" if name else "")
    runs = Path(runs_dir) if runs_dir is not None else Path("runs") / ("compare-" + name if name else "compare")
    check_names(base, variants)
    plan = [(v, s) for s in seeds for v in variants]  # seed-major: an interrupted grid covers every variant
    rows: list[dict[str, Any]] = []

    from pairlab.train.tracking import show_progress

    progress = None
    if show_progress(quiet):  # a bar only on a terminal; plain log lines otherwise (none with quiet)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]compare"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[current]}"), TimeElapsedColumn())
        task = progress.add_task("compare", total=len(plan), current="")
        progress.start()
    if progress is not None:
        say = progress.console.print
    else:
        from rich import print as rich_print  # strips the markup when stdout is not a terminal

        say = (lambda *_a, **_k: None) if quiet else rich_print
    try:
        for v, seed in plan:
            label = f"{v.name} seed {seed}"
            if progress is not None:
                progress.update(task, current=label)
            try:
                cfg = run_config(base, v, seed, runs)
            except ValueError as e:
                rows.append(make_row(v.name, seed, None, error=f"config rejected: {e}"))
                say(f"[yellow]skip[/] {label}: config rejected")
                if progress is not None:
                    progress.advance(task)
                continue
            run_dir = Path(cfg.runs_dir) / cfg.name
            state = "new" if rerun else run_state(cfg)
            if state == "done":
                metrics = json.loads((run_dir / "metrics.json").read_text())
                rows.append(make_row(v.name, seed, metrics, run_dir=str(run_dir), reused=True))
                say(f"reuse {label}: {run_dir}")
            else:
                t0 = time.perf_counter()
                be = backend or backend_for(cfg.dataset)
                try:
                    metrics = be.train(cfg, resume=state == "partial", overwrite=state != "partial", quiet=True)
                    rows.append(make_row(v.name, seed, metrics, run_dir=str(run_dir)))
                    knn = metrics.get("knn_acc")
                    say(f"done {label} in {time.perf_counter() - t0:.0f}s"
                        + (f": kNN {knn:.4f}" if isinstance(knn, float) else ""))
                except Exception as e:  # a failing run is a row; KeyboardInterrupt still stops the grid
                    rows.append(make_row(v.name, seed, None, error=_error_text(e), run_dir=str(run_dir)))
                    say(f"[red]fail[/] {label}: {_error_text(e)}")
            if progress is not None:
                progress.advance(task)
            write_csv(sorted_rows(rows, variants), out_dir / f"{stem}.csv")  # partial results survive a kill
        base_rows: list[dict[str, Any]] = []
        if baselines:
            if progress is not None:
                progress.update(task, current="baselines (raw features, random init)")
            try:
                cfg0 = make_config(merge(base, {"runs_dir": str(runs)}), source="base config")
                brows = baseline_rows(cfg0, seeds, backend or backend_for(cfg0.dataset), runs / "baselines.json")
                base_rows = [make_row(r["variant"], r["seed"], r, kind="baseline") for r in brows]
            except Exception as e:
                base_rows = [make_row("baselines", None, None, error=_error_text(e), kind="baseline")]
    finally:
        if progress is not None:
            progress.stop()
    rows = sorted_rows(rows, variants) + base_rows
    write_leaderboard(rows, out_dir, name=name, command=command, base=base, variants=variants, seeds=seeds,
                      notes=notes, title=title, plot=plots)
    from pairlab.report.html import write_compare_report

    write_compare_report(out_dir, name, title=title, command=command)
    return rows


def sorted_rows(rows: Sequence[dict[str, Any]], variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """Rows in grid order: variant-major (the variants' order), then seed."""
    pos = {v.name: i for i, v in enumerate(variants)}
    return sorted(rows, key=lambda r: (pos.get(r["variant"], len(pos)), r["seed"] if r["seed"] is not None else -1))


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
