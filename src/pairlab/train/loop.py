"""The training loop: views -> encoder -> head -> objective, AdamW + warm-up + cosine, checkpoints, eval.

One step (``encode`` includes the augmentation, so gradient caching can replay it from the RNG state)::

    encode(x [b, C, H, W]) = model(views(x)) -> z [b, K, D]
    loss = obj(z, labels=labels)            # objective meta input == "views"
    loss = obj(z[:, 0], z[:, 1])            # objective meta input == "pair"

Data order: epoch ``e`` uses ``randperm(N)`` from a generator seeded by ``(seed, e)``, sharded by rank
(``perm[rank::world]``), last incomplete batch dropped; so a resumed run recomputes the same order and
skips the steps already done. Checkpoints (atomic; end of every epoch and every ``checkpoint_every`` steps)
hold model, objective, optimiser, scheduler, torch RNG state, epoch, step and the loss history; a run
resumed from one continues exactly where it stopped (bit-identical weights in deterministic mode).

torchrun: with ``WORLD_SIZE > 1`` the gloo process group is initialised, data are sharded by rank, the
model is wrapped in DDP, and only rank 0 writes the run directory and prints. Augmentation RNG is seeded
with ``seed + rank``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pairlab import registry
from pairlab.data.datasets import ImageData, load_dataset
from pairlab.data.user import build_views, data_options
from pairlab.data.views import Views
from pairlab.models.encoder import Encoder
from pairlab.train.checkpoint import (
    load_checkpoint,
    load_latest,
    previous_path,
    save_checkpoint,
    write_jsonl_atomic,
)
from pairlab.train.config import TrainConfig, dump_config, make_config, read_yaml

CHECKPOINT = "checkpoint.pt"
HIST_FILE = "score_hist.jsonl"  # = pairlab.report.html.SCORE_HIST


def build_model(cfg: TrainConfig, in_channels: int = 1, vector_dim: int | None = None) -> nn.Module:
    """The encoder, initialised from ``cfg.seed`` without touching the global RNG stream.

    With ``vector_dim`` (vector data ``[N, D]`` from ``npz:`` / ``parquet:``): :class:`pairlab.models.mlp.MLPEncoder`
    with backbone widths ``(model.hidden_dim, model.widths[-1])`` instead of the CNN.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        m = cfg.model
        if vector_dim is not None:
            from pairlab.models.mlp import MLPEncoder

            return MLPEncoder(vector_dim, (m.hidden_dim, m.widths[-1]), m.hidden_dim, m.proj_dim)
        return Encoder(in_channels, m.widths, m.blocks, m.hidden_dim, m.proj_dim, m.stem_stride)


def model_for(cfg: TrainConfig, x: torch.Tensor) -> nn.Module:
    """The encoder for data ``x``: the CNN for images ``[N, C, H, W]``, the MLP for vectors ``[N, D]``."""
    return build_model(cfg, x.shape[1], x.shape[1] if x.ndim == 2 else None)


def build_objective(cfg: TrainConfig, context: dict[str, Any] | None = None) -> tuple[nn.Module, str]:
    """Objective from the registry; ``cfg.temperature`` is passed when its constructor takes one.

    ``temperature: null`` in the config (``pairlab train --temperature default``) passes none, so every objective
    keeps its own (paper) default, e.g. SimLAP's 0.1; ``objective_args.temperature`` wins over both.

    Registry meta ``auto_args`` names constructor arguments filled (unless in ``objective_args``) from
    ``context`` (``num_classes``, ``num_samples`` from the dataset) or the config (``dim`` = ``model.proj_dim``,
    ``max_epochs`` = ``epochs``). Meta ``needs`` (``"index"``, ``"set_epoch"``) is kept on the objective as
    ``pairlab_needs`` for :func:`call_objective`.
    """
    entry = registry.get("objectives", cfg.objective)
    kwargs = dict(cfg.objective_args)
    try:
        params = inspect.signature(entry.obj).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}
    if cfg.temperature is not None and "temperature" in params and "temperature" not in kwargs:
        kwargs["temperature"] = cfg.temperature
    auto = {"dim": cfg.model.proj_dim, "max_epochs": cfg.epochs, **(context or {})}
    for key in entry.meta.get("auto_args", ()):
        if key in kwargs or key not in params:
            continue
        if key not in auto:
            raise ValueError(f"objective {cfg.objective!r} needs {key!r}: set it in objective_args "
                             f"(it is filled from the dataset only by pairlab train)")
        kwargs[key] = auto[key]
    try:
        obj = entry.obj(**kwargs)
    except TypeError as e:
        raise ValueError(f"cannot build objective {cfg.objective!r} with objective_args {kwargs}: {e}") from None
    obj.pairlab_needs = tuple(entry.meta.get("needs", ()))
    kind = entry.meta.get("input", "views")
    if kind not in ("views", "pair", "labels"):
        raise ValueError(
            f"objective {cfg.objective!r} has input={kind!r}; the training loop supports 'views', 'pair', 'labels'"
        )
    if (cfg.candidates is not None or cfg.weights is not None) and kind != "views":
        raise ValueError(f"candidates/weights need a 'views' objective (ntxent, supcon, dcl, ...); "
                         f"{cfg.objective!r} has input={kind!r}")
    if kind == "pair" and cfg.views != 2:
        raise ValueError(f"objective {cfg.objective!r} takes a pair of views: use --views 2, got {cfg.views}")
    return obj, kind


def call_objective(
    obj: nn.Module, kind: str, z: torch.Tensor, labels: torch.Tensor, *, index: torch.Tensor | None = None,
    epoch: int | None = None, **kwargs: Any,
) -> torch.Tensor:
    """Call an objective by its registered ``input`` kind (``kwargs``: extra columns / weights, views only).

    ``index`` (dataset indices ``[B]``) is passed to objectives whose meta ``needs`` it (DBPM's memory), and
    ``obj.set_epoch(epoch)`` is called when ``epoch`` changes for those that need ``"set_epoch"``.
    """
    needs = getattr(obj, "pairlab_needs", ())
    if "set_epoch" in needs and epoch is not None and getattr(obj, "pairlab_epoch", None) != epoch:
        obj.set_epoch(int(epoch))
        obj.pairlab_epoch = epoch
    if "index" in needs:
        if index is None:
            raise ValueError(f"objective {type(obj).__name__} needs index=: the dataset indices of the batch [B]")
        kwargs["index"] = index
    if kind == "pair":
        return obj(z[:, 0], z[:, 1])
    if kind == "labels":  # margin losses: every view is an embedding labelled by its class
        return obj(z.flatten(0, 1), labels.repeat_interleave(z.shape[1]))
    return obj(z, labels=labels, **kwargs)


def build_pair_components(
    cfg: TrainConfig, num_samples: int, objective: nn.Module | None = None
) -> tuple[nn.Module | None, nn.Module | None]:
    """The configured candidates generator and weights component (``None`` when not set).

    Constructor defaults from the run: ``dim``, ``num_samples``, ``max_epochs`` (= epochs) and ``loss`` (the
    run's ``objective``, e.g. XBM); lifecycle and rules in :mod:`pairlab.train.components`.
    """
    from pairlab.train.components import build_components

    defaults: dict[str, Any] = {"dim": cfg.model.proj_dim, "num_samples": num_samples, "max_epochs": cfg.epochs}
    if objective is not None:
        defaults["loss"] = objective
    return build_components(cfg.candidates, cfg.candidates_args, cfg.weights, cfg.weights_args, defaults)


def _rows_at(state: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of ``path`` as of checkpoint ``state``: kept in the checkpoint (``epoch_rows`` for
    ``metrics.jsonl``, ``hist_rows`` for the histograms); a checkpoint written before they were kept falls back to
    the file's rows up to the checkpoint's step (one per epoch)."""
    key = "hist_rows" if path.name == HIST_FILE else "epoch_rows"
    if key in state:
        return [dict(r) for r in state[key]]
    from pairlab.report.html import last_per_epoch, read_jsonl

    return [r for r in last_per_epoch(read_jsonl(path)) if int(r.get("step", 0)) <= int(state["step"])]


def lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices/filters only (not on biases, norms, temperatures); shared parameters once."""
    decay, no_decay, seen = [], [], set()
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _setup_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def prepare_run_dir(cfg: TrainConfig, resume: bool, overwrite: bool, rank: int = 0) -> Path:
    run_dir = Path(cfg.runs_dir) / cfg.name
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise ValueError(
                f"run directory {str(run_dir)!r} already exists; pass --overwrite to replace it, "
                "--resume to continue it, or --name for a new run"
            )
        if rank == 0:
            shutil.rmtree(run_dir)
    return run_dir


def resolve_resume_config(cfg: TrainConfig) -> TrainConfig:
    """On ``--resume``, the run directory's saved config wins (the run must continue as it started)."""
    saved = Path(cfg.runs_dir) / cfg.name / "config.yaml"
    if saved.is_file():
        data = read_yaml(saved)
        data["runs_dir"] = cfg.runs_dir
        return make_config(data, source=str(saved))
    return cfg


class _Printer:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    evaluate_at_end: bool = True,
    _stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run ``runs_dir/name``; returns the final metrics (also in ``metrics.json``).

    ``_stop_after_steps`` ends the process-local run after that many steps *without* a final checkpoint
    (a stand-in for a killed job, used by the resume tests); it then returns ``{"stopped_at": step}``.
    """
    if cfg.dataset.startswith("csv:"):  # text: SimCSE fine-tuning of MiniLM (pairlab.data.user.train_text)
        from pairlab.data.user import train_text

        return train_text(cfg, overwrite=overwrite, quiet=quiet, resume=resume)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()
    rank, world = _setup_distributed()
    if resume:
        cfg = resolve_resume_config(cfg)
    run_dir = prepare_run_dir(cfg, resume, overwrite, rank)
    if world > 1:
        dist.barrier()
    is_main = rank == 0
    show = is_main and not quiet
    say = _Printer(not show)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = torch.device(cfg.device)

    full_train = load_dataset(cfg.dataset, "train", cfg.data_dir, **data_options(cfg))
    train_data = full_train.subset(cfg.train_subset)
    test_data = load_dataset(cfg.dataset, "test", cfg.data_dir, **data_options(cfg))
    model = model_for(cfg, train_data.x).to(device)
    obj, kind = build_objective(cfg, {"num_classes": len(train_data.classes), "num_samples": len(train_data)})
    obj = obj.to(device)
    from pairlab.train.components import PairComponents, SetupContext

    comps = PairComponents(*build_pair_components(cfg, len(train_data), obj)).to(device)
    if comps.active:  # once, before training, with the initial (random-init) encoder (components.py)
        comps.setup(SetupContext(model, train_data.x, train_data.labels, len(train_data), cfg.model.proj_dim,
                                 obj, cfg.seed, device))
    views = build_views(cfg, train_data)  # image Views, or VectorViews for [N, D] data
    hist_probe = None  # per-epoch pos/neg score histograms of a fixed held-out batch (RUN/score_hist.jsonl)
    if is_main and len(test_data) >= 2:
        from pairlab.report.html import EpochHistograms

        hist_probe = EpochHistograms(test_data.x, views, cfg.seed)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)

    n_local = len(train_data) // world
    spe = n_local // cfg.batch_size
    if spe < 1:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the {n_local} training images per rank; lower --batch-size"
        )
    total = spe * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, spe * cfg.epochs)
    opt = torch.optim.AdamW(param_groups([model, obj, comps], cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(cfg.warmup_frac * total)))

    step, history = 0, []
    epoch_rows: list[dict[str, Any]] = []  # metrics.jsonl / score_hist.jsonl rows, kept in the checkpoint too
    hist_rows: list[dict[str, Any]] = []
    ckpt_path = run_dir / CHECKPOINT
    torch.manual_seed(cfg.seed + rank)
    if resume and (ckpt_path.is_file() or previous_path(ckpt_path).is_file()):
        state, _ = load_latest(ckpt_path)  # falls back to the previous checkpoint if this one is damaged
        model.load_state_dict(state["model"])
        obj.load_state_dict(state["objective"])
        if "components" in state:
            comps.load_state_dict(state["components"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        step, history = int(state["step"]), list(state["history"])
        epoch_rows, hist_rows = _rows_at(state, run_dir / "metrics.jsonl"), _rows_at(state, run_dir / HIST_FILE)
        say(f"resumed {run_dir} at step {step}/{total}")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
    from pairlab.train.tracking import RunLogger  # TensorBoard / CSV / mlflow (rank 0 only)

    tlog = RunLogger(run_dir, cfg.loggers, config=cfg.model_dump(mode="json"), enabled=is_main, start_step=step,
                     run_name=cfg.name)
    if is_main and step > 0:  # the per-epoch files as of the checkpoint: rows lost to a kill come back
        from pairlab.report.html import read_jsonl

        logged = {r.get("epoch") for r in read_jsonl(run_dir / "metrics.jsonl")}
        write_jsonl_atomic(run_dir / "metrics.jsonl", epoch_rows)
        if hist_probe is not None:
            write_jsonl_atomic(run_dir / HIST_FILE, hist_rows)
        for r in epoch_rows:
            if r.get("epoch") not in logged:
                tlog.log_epoch(r)

    def checkpoint() -> None:
        rng = torch.get_rng_state()
        if world > 1:
            rngs = [torch.empty_like(rng) for _ in range(world)]
            dist.all_gather(rngs, rng)
        else:
            rngs = [rng]
        if is_main:
            save_checkpoint({
                "model": model.state_dict(), "objective": obj.state_dict(), "optimizer": opt.state_dict(),
                "components": comps.state_dict(),
                "scheduler": sched.state_dict(), "rng": rngs, "step": step, "epoch": step // spe,
                "history": history, "epoch_rows": epoch_rows, "hist_rows": hist_rows,
                "config": cfg.model_dump(mode="json"),
            }, ckpt_path)

    def encode(x: torch.Tensor) -> torch.Tensor:
        v = views(x)  # [b, K, C, H, W], no grad
        b, k = v.shape[:2]
        return net(v.reshape(b * k, *v.shape[2:]).to(device)).reshape(b, k, -1)

    progress = None
    if show and sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"),
                            TimeRemainingColumn())
        task = progress.add_task("train", total=total, completed=step, loss=float("nan"), ips=0.0)
        progress.start()
    t_train = time.perf_counter()
    try:
        while step < total:
            epoch, start_i = divmod(step, spe)
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            perm = torch.randperm(len(train_data), generator=g)[rank::world][: spe * cfg.batch_size]
            ep_losses: list[float] = []
            t_ep = time.perf_counter()
            for i in range(start_i, spe):
                if step >= total:
                    break
                t0 = time.perf_counter()
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x, labels = train_data.x[idx], train_data.labels[idx].to(device)
                net.train()
                opt.zero_grad(set_to_none=True)

                seen: dict[str, torch.Tensor] = {}

                def loss_fn(
                    z: torch.Tensor, labels: torch.Tensor = labels, idx: torch.Tensor = idx, epoch: int = epoch,
                    seen: dict[str, torch.Tensor] = seen,
                ) -> torch.Tensor:
                    seen["z"] = z.detach()
                    if comps.active:
                        return comps.loss(obj, kind, z, labels, idx.to(z.device), epoch)
                    return call_objective(obj, kind, z, labels, index=idx.to(z.device), epoch=epoch)

                if cfg.grad_cache_chunk:
                    from pairlab.gradcache import grad_cache_step

                    loss = grad_cache_step(encode, x, loss_fn, cfg.grad_cache_chunk, model=net)
                else:
                    loss = loss_fn(encode(x))
                    loss.backward()
                if world > 1:  # objective parameters (e.g. a learnable temperature) live outside DDP
                    from pairlab import distributed

                    distributed.average_gradients(list(obj.parameters()))
                lr_step = opt.param_groups[0]["lr"]  # the learning rate this step uses
                opt.step()
                sched.step()
                if comps.active and "z" in seen:
                    comps.update(seen["z"], labels, idx.to(device), epoch)
                step += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"loss became {lv} at step {step}; lower --lr or check the objective")
                history.append(lv)
                tlog.log_step(step, epoch + 1, loss=lv, lr=lr_step)
                ep_losses.append(lv)
                if progress is not None:
                    progress.update(task, completed=step, loss=lv, ips=len(idx) / max(time.perf_counter() - t0, 1e-9))
                if _stop_after_steps is not None and step >= _stop_after_steps:
                    return {"stopped_at": step}
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step % spe != 0:
                    checkpoint()
            if step % spe == 0 or step >= total:
                # the epoch's rows go into the checkpoint first, then the files are rewritten from them: a kill
                # in between loses nothing (--resume rewrites them from the checkpoint)
                if is_main:
                    dt = time.perf_counter() - t_ep
                    ep_hist = history[epoch * spe : step]  # the whole epoch, also when it was resumed mid-way
                    row = {
                        "epoch": epoch + 1, "step": step, "loss": sum(ep_hist) / max(len(ep_hist), 1),
                        "lr": sched.get_last_lr()[0], "images_per_s": len(ep_losses) * cfg.batch_size * world / dt,
                        "temperature": getattr(getattr(obj, "temperature", None), "value", None),
                        "epoch_s": dt,
                        **{k: v for k, v in getattr(obj, "last_stats", {}).items() if isinstance(v, (int, float))},
                        **comps.last_stats,
                    }
                    row = json.loads(json.dumps(row))  # plain Python values: the checkpoint loads weights-only
                    epoch_rows.append(row)
                    if hist_probe is not None:
                        hist_rows.append(json.loads(json.dumps(hist_probe.row(model, epoch + 1, step, device))))
                checkpoint()
                if is_main:
                    write_jsonl_atomic(run_dir / "metrics.jsonl", epoch_rows)
                    if hist_probe is not None:
                        write_jsonl_atomic(run_dir / HIST_FILE, hist_rows)
                    tlog.log_epoch(row)
                    if progress is None:
                        say(f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} loss {row['loss']:.4f} "
                            f"{row['images_per_s']:.0f} img/s")
    finally:
        if progress is not None:
            progress.stop()
        if step < total or sys.exc_info()[0] is not None:  # failed or stopped early: no final metrics
            tlog.close(status="FAILED" if sys.exc_info()[0] is not None else "KILLED")
    train_s = time.perf_counter() - t_train
    train_cpu_s = time.process_time() - cpu_start

    metrics: dict[str, Any] = {"run_dir": str(run_dir), "steps": step, "train_s": train_s,
                               "train_cpu_s": train_cpu_s}
    try:
        if evaluate_at_end and is_main:
            say("evaluating (kNN + linear probe: learned, raw pixels, random init) ...")
            metrics.update(evaluate_run(cfg, model, full_train, test_data, views, run_dir, history,
                                        device=str(device), quiet=not show))
    except BaseException:
        tlog.close(status="FAILED")
        raise
    if world > 1:
        dist.barrier()
    metrics["wall_s"] = time.perf_counter() - t_start
    metrics["cpu_s"] = time.process_time() - cpu_start  # CPU time of this process (all threads)
    metrics["load_avg_start"] = list(load_start)
    metrics["load_avg_end"] = list(os.getloadavg())
    metrics["cpu_count"] = os.cpu_count()
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["world_size"] = world
    metrics["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    tlog.log_final(metrics, [*sorted(run_dir.glob("*.png")), run_dir / "metrics.csv"])
    tlog.close()
    if is_main:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        from pairlab.report.html import write_run_report

        write_run_report(run_dir, plots=cfg.eval.plots)
    return metrics


def evaluate_run(
    cfg: TrainConfig,
    model: nn.Module,
    train_data: ImageData,
    test_data: ImageData,
    views: Views,
    run_dir: Path,
    history: list[float],
    device: str = "cpu",
    quiet: bool = False,
) -> dict[str, Any]:
    """Frozen-feature evaluation with baselines, plus plots in ``run_dir`` (progress bar unless ``quiet``)."""
    from pairlab.data import user
    from pairlab.train.evaluate import evaluate

    if user.is_vector(train_data) or user.is_unlabelled(train_data):  # vector views / geometry-only evaluation
        evaluate = user.evaluate
    t0, c0 = time.perf_counter(), time.process_time()
    metrics, arrays = evaluate(model, train_data, test_data, cfg.eval, views=views,
                               random_model=model_for(cfg, train_data.x).to(device),
                               seed=cfg.seed, device=device, quiet=quiet)
    metrics["eval_s"] = time.perf_counter() - t0
    metrics["eval_cpu_s"] = time.process_time() - c0
    if cfg.eval.plots:
        from pairlab.report.plots import write_plots

        metrics["plots"] = write_plots(run_dir, history, arrays, test_data.classes)
    return metrics


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, Encoder, dict[str, Any]]:
    """Config, model (weights from the checkpoint) and checkpoint state of a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    cfg = make_config(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    state = load_checkpoint(run_dir / CHECKPOINT)
    sd = state["model"]
    if "backbone.stem.0.weight" in sd:
        model = build_model(cfg, sd["backbone.stem.0.weight"].shape[1])
    else:  # vector data: MLPEncoder (pairlab.models.mlp)
        model = build_model(cfg, vector_dim=sd["backbone.0.weight"].shape[1])
    model.load_state_dict(state["model"])
    return cfg, model, state


def evaluate_saved_run(run_dir: str | os.PathLike, quiet: bool = False) -> dict[str, Any]:
    """Re-evaluate a run's checkpoint (``pairlab eval RUN_DIR``); updates ``metrics.json``."""
    run_dir = Path(run_dir)
    cfg, model, state = load_run(run_dir)
    t0 = time.perf_counter()
    train_data = load_dataset(cfg.dataset, "train", cfg.data_dir, **data_options(cfg))
    test_data = load_dataset(cfg.dataset, "test", cfg.data_dir, **data_options(cfg))
    views = build_views(cfg, train_data)
    metrics = evaluate_run(cfg, model, train_data, test_data, views, run_dir, list(state["history"]), quiet=quiet)
    metrics.update({"run_dir": str(run_dir), "steps": int(state["step"]), "wall_s": time.perf_counter() - t0,
                    "load_avg_end": list(os.getloadavg())})
    path = run_dir / "metrics.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(metrics)
    path.write_text(json.dumps(old, indent=2))
    from pairlab.report.html import write_run_report

    write_run_report(run_dir, plots=cfg.eval.plots)
    return old
