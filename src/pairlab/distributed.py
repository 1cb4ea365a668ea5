"""torch.distributed helpers: gather with gradient, rank-aware ids, global means (DESIGN §4).

The contract that makes ``N ranks == 1 big batch`` hold, for the loss *and* every parameter gradient,
under DDP's gradient averaging (``grad = (1/W) sum_r dL_r/dtheta``):

1. **Anchors stay local, candidates are gathered with gradient** (:func:`gather_with_grad`). The
   backward of the gather *sums* over ranks the gradients that every rank's loss sends to this rank's
   rows (an ``all_reduce(SUM)`` of the gathered gradient, then this rank's slice). Rank ``r``'s local
   gradient is then ``d(sum_s L_s)/dtheta`` restricted to its own rows; DDP's average makes it
   ``d((1/W) sum_s L_s)/dtheta``.
2. **Each rank's loss is its share of the global mean** (:func:`global_mean`): a loss that is a mean
   over ``n_r`` local items (anchors with a positive, pairs) is rescaled to
   ``loss_r * W * n_r / N`` with ``N = sum_r n_r`` (an all-reduced count, no gradient). Then
   ``(1/W) sum_r loss_r = (sum of all per-item losses) / N``, the single-process mean, even when ranks
   have different numbers of used anchors (SupCon with uneven positives) or batch sizes. When every rank
   has the same count the factor is exactly 1.

No factor of the world size appears anywhere: the gradient reaching the parameters is the gradient of
the global mean, not ``W`` times it (open_clip #616/#894, lightly #1920/#1977, PML #363 in
``specs/prior-art.md`` §3). The *value* returned on each rank is that rank's share; the global loss is
the mean of the per-rank values (``all_reduce(loss) / W``), which is what a training loop should log.

Ranks may pass different batch sizes (first dim); rows are concatenated in rank order and
:func:`offset` gives the index of this rank's first row in the gathered tensor (the self-pair offset
and the id offset). Every function is the identity on a single process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

_local = threading.local()


def is_active() -> bool:
    """Whether a process group with more than one rank is initialised (and not inside :func:`local_only`)."""
    if getattr(_local, "depth", 0) > 0:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside this block every helper acts as on a single process (no collective, no rescaling).

    Every objective is a collective when several ranks are initialised, so computing a loss on one
    rank only (evaluation on rank 0, a diagnostic) would hang; wrap such code in ``local_only()``.
    """
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def sizes(n: int, device: torch.device | str | None = None) -> list[int]:
    """First-dim sizes of all ranks (one tiny all-gather); ``[n]`` on a single process."""
    if not is_active():
        return [n]
    t = torch.tensor([int(n)], dtype=torch.long, device=device)
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [int(v) for v in torch.cat(out).tolist()]  # one host sync


def offset(n: int, all_sizes: list[int] | None = None, device: torch.device | str | None = None) -> int:
    """Index of this rank's first row in a rank-ordered gather (``sum`` of the previous ranks' sizes)."""
    if not is_active():
        return 0
    all_sizes = sizes(n, device) if all_sizes is None else all_sizes
    return sum(all_sizes[: rank()])


def _gather(x: torch.Tensor, all_sizes: list[int]) -> torch.Tensor:
    """Rank-ordered concatenation of ``x`` (first dims given by ``all_sizes``), no autograd."""
    x = x.contiguous()
    m = max(all_sizes)
    if x.shape[0] < m:  # pad so every rank sends the same shape; padding is sliced away below
        x = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
    out = [torch.empty_like(x) for _ in all_sizes]
    dist.all_gather(out, x)
    return torch.cat([o[:s] for o, s in zip(out, all_sizes, strict=True)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's rows.

    ``torch.distributed.nn.functional.all_gather`` does the same sum (reduce-scatter / all-to-all) but
    needs equal shapes; this one handles uneven sizes and costs one ``all_reduce`` in backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, all_sizes: list[int]) -> torch.Tensor:  # type: ignore[override]
        ctx.all_sizes = all_sizes
        ctx.start = sum(all_sizes[: rank()])
        return _gather(x, all_sizes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        n = ctx.all_sizes[rank()]
        return g[ctx.start : ctx.start + n], None


def gather_with_grad(x: torch.Tensor, all_sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order), differentiable; identity on 1 rank.

    The backward gives this rank's rows the *sum* over ranks of the gradients they receive (see the
    module docstring: with DDP averaging this is the big-batch gradient). Ranks may have different
    first-dim sizes (pass ``all_sizes`` from :func:`sizes` to skip the size exchange); other dims must
    match. Every rank must call it, and every rank must backpropagate through the result.
    """
    if not is_active():
        return x
    all_sizes = sizes(x.shape[0], x.device) if all_sizes is None else all_sizes
    return _GatherWithGrad.apply(x, all_sizes)


def gather_no_grad(x: torch.Tensor, all_sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order) without gradient (ids, labels, queue keys)."""
    if not is_active():
        return x
    all_sizes = sizes(x.shape[0], x.device) if all_sizes is None else all_sizes
    with torch.no_grad():
        return _gather(x.detach(), all_sizes)


def all_reduce_sum(value: float | int, device: torch.device | str | None = None) -> float:
    """Sum a Python number over ranks (no gradient); the number itself on a single process."""
    if not is_active():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def global_mean(loss: torch.Tensor, n_local: float | int) -> tuple[torch.Tensor, float]:
    """Rescale this rank's mean over ``n_local`` items into its share of the global mean.

    Returns ``(loss * W * n_local / N, N)`` with ``N`` the count summed over ranks, so that the
    average over ranks of the returned values (and, under DDP, of their gradients) is the mean over
    all ``N`` items. If ``N == 0`` the loss is returned times zero (still graph-connected, so every
    rank's backward runs the same collectives) and the caller decides whether to raise.
    Identity on a single process.
    """
    if not is_active():
        return loss, float(n_local)
    n_global = all_reduce_sum(n_local, loss.device)
    if n_global == 0:
        return loss * 0.0, 0.0
    return loss * (world_size() * float(n_local) / n_global), n_global


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in place, for parameters outside DDP (e.g. a learnable temperature).

    A parameter that is missing a gradient on this rank contributes zeros, so every rank runs the same
    collectives. Identity on a single process.
    """
    if not is_active():
        return
    w = world_size()
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(w)


# ----------------------------------------------------------------------------------------------- local launch
def _resolve(ref: tuple[str, str | None, str]):
    """The function named by ``(module, file, qualname)``, importing the module from its file if needed.

    Test modules collected with pytest's importlib mode are not importable by name in a fresh process.
    """
    import importlib
    import importlib.util
    import os
    import sys

    modname, path, qualname = ref
    mod = sys.modules.get(modname)
    if mod is None:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            mod = None
        same = mod is not None and path is not None and os.path.samefile(getattr(mod, "__file__", "") or path, path)
        if (mod is None or not same) and path is not None:
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
    if mod is None:
        raise ImportError(f"cannot import {modname!r} to run {qualname!r}")
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _launch_entry(ref, rank: int, world: int, backend: str, store: str, timeout: float, args: tuple, out: str) -> None:
    import os
    import traceback
    from datetime import timedelta

    torch.set_num_threads(1)
    fn = _resolve(ref)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout))
    try:
        res = {"result": fn(rank, world, *args)}
    except BaseException:  # noqa: BLE001 - reported to the parent
        res = {"error": traceback.format_exc()}
    torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def launch(fn, world_size: int = 2, *, args: tuple = (), backend: str = "gloo", timeout: float = 300.0) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh local processes; return each rank's result.

    Each process has an initialised process group (``backend``, a file store, collectives time out
    after ``timeout`` seconds) and one intra-op thread. ``fn`` must be importable by name (a module-level
    function) and return something ``torch.save`` can write. Meant for tests and small checks
    ("N ranks == 1 big batch") on CPU with gloo. Raises ``RuntimeError`` with the rank's traceback if a
    rank fails, ``TimeoutError`` if a rank does not finish within ``2 * timeout`` seconds.
    """
    import os
    import tempfile

    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    import sys

    mod = sys.modules.get(fn.__module__)
    ref = (fn.__module__, getattr(mod, "__file__", None), fn.__qualname__)
    if "<locals>" in fn.__qualname__ or fn.__name__ == "<lambda>":
        raise ValueError(f"fn must be a module-level function (spawned processes import it), got {fn.__qualname__}")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pairlab-launch-") as tmp:
        store = os.path.join(tmp, "store")
        procs = [ctx.Process(target=_launch_entry, args=(ref, r, world_size, backend, store, timeout, args, tmp))
                 for r in range(world_size)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(2 * timeout)
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        # report the root cause first: a rank that died without a result, else a rank that raised
        dead = [r for r in range(world_size) if r not in hung and not os.path.exists(os.path.join(tmp, f"rank{r}.pt"))]
        then = f"; ranks {hung} then hung and were killed after {2 * timeout}s" if hung else ""
        if dead:
            codes = ", ".join(f"rank {r} exited with code {procs[r].exitcode}" for r in dead)
            raise RuntimeError(f"{codes} and wrote no result (the other ranks' collectives then fail){then}")
        done = {r: torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False)
                for r in range(world_size) if r not in hung}
        failed = [r for r, res in done.items() if "error" in res]
        if failed:
            raise RuntimeError("\n".join(f"rank {r} failed:\n{done[r]['error']}" for r in failed) + then)
        if hung:
            raise TimeoutError(f"ranks {hung} did not finish within {2 * timeout}s (a collective hung?)")
        results = []
        for r in range(world_size):
            res = done[r]
            results.append(res["result"])
        return results
