"""N ranks == 1 big batch: loss and every parameter gradient, with DDP, for every distributed objective.

One spawn of 2 real processes (gloo, CPU, a file store, timeouts so a hang fails) runs every case; the
parent recomputes each case on a single process with the concatenated batch and compares in float64.
Rank batch sizes, and the number of anchors with a positive, differ between ranks on purpose.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pairlab import distributed
from pairlab.candidates.queue import Queue
from pairlab.objectives import DCL, CLIPLoss, InfoNCE, NTXent, SupCon

pytestmark = pytest.mark.distributed
WORLD = 2
ATOL = 1e-6


def _tiled_available() -> bool:
    from pairlab import kernels

    try:
        kernels.applies("tiled", 4, 4)
    except NotImplementedError:
        return False
    return True


TILED = _tiled_available()


# ----------------------------------------------------------------------------------------------- helpers
def split(x: torch.Tensor | None, parts: list[int], rank: int, world: int) -> torch.Tensor | None:
    """This rank's rows of a full batch (the whole batch on a single process)."""
    if x is None or world == 1:
        return x
    start = sum(parts[:rank])
    return x[start : start + parts[rank]]


def grads_of(*modules: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{i}.{n}": p.grad.detach().clone() for i, m in enumerate(modules) for n, p in m.named_parameters()
            if p.requires_grad}


# ----------------------------------------------------------------------------------------------- cases
def run_views(
    rank: int, world: int, make_obj: Callable[[], nn.Module], parts: list[int], k: int,
    labels: torch.Tensor | None = None, steps: int = 1, queue: Queue | None = None, din: int = 5, d: int = 3,
) -> dict:
    """``steps`` SGD steps of a Linear encoder on ``[B, K, Din]`` views with a views objective."""
    g = torch.Generator().manual_seed(0)
    n = sum(parts)
    xs = [torch.randn(n, k, din, generator=g, dtype=torch.float64) for _ in range(steps)]
    torch.manual_seed(1)
    enc = nn.Linear(din, d).double()
    obj = make_obj()
    model = DDP(enc) if world > 1 else enc
    opt = torch.optim.SGD(list(enc.parameters()) + list(obj.parameters()), lr=0.5)
    lab = split(labels, parts, rank, world)
    out: dict = {"losses": [], "grads": [], "queues": []}
    for t in range(steps):
        z = model(split(xs[t], parts, rank, world))
        kw = {}
        if queue is not None and len(queue):
            kw["extra"] = queue.negatives()
            if queue.with_labels:
                kw["extra_labels"] = queue.negative_labels()
        loss = obj(z, lab, **kw)
        opt.zero_grad()
        loss.backward()
        distributed.average_gradients(obj.parameters())  # parameters outside DDP (learnable temperature)
        out["losses"].append(loss.detach())
        out["grads"].append(grads_of(enc, obj))
        if queue is not None:
            queue.enqueue(z[:, 0].detach(), lab if queue.with_labels else None)
            out["queues"].append((queue.negatives(ordered=True), queue.negative_labels(ordered=True)
                                  if queue.with_labels else None))
        opt.step()
    return out


class Towers(nn.Module):
    def __init__(self, da: int, db: int, d: int):
        super().__init__()
        self.a, self.b = nn.Linear(da, d), nn.Linear(db, d)

    def forward(self, xa, xb):
        return self.a(xa), self.b(xb)


def run_clip(rank: int, world: int, parts: list[int], learnable: bool, backend: str = "dense") -> dict:
    g = torch.Generator().manual_seed(0)
    n = sum(parts)
    xa, xb = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    towers = Towers(5, 4, 3).double()
    obj = CLIPLoss(0.2, learnable_temperature=learnable, backend=backend)
    model = DDP(towers) if world > 1 else towers
    a, b = model(split(xa, parts, rank, world), split(xb, parts, rank, world))
    loss = obj(a, b)
    loss.backward()
    distributed.average_gradients(obj.parameters())
    return {"losses": [loss.detach()], "grads": [grads_of(towers, obj)], "queues": []}


def run_infonce_inbatch(rank: int, world: int, parts: list[int]) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(parts), 2, 5, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    enc = nn.Linear(5, 3).double()
    model = DDP(enc) if world > 1 else enc
    z = model(split(x, parts, rank, world))
    loss = InfoNCE(0.3)(z[:, 0], z[:, 1])
    loss.backward()
    return {"losses": [loss.detach()], "grads": [grads_of(enc)], "queues": []}


# labels: rank 0 has 6 anchors with a positive; rank 1 (labels 3..8, unique, absent on rank 0) has none
LAB_NONE = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8])
# rank 1 has exactly one anchor with a positive (label 0 also on rank 0)
LAB_ONE = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 0, 8])

CASES: dict[str, Callable[[int, int], dict]] = {
    "ntxent": lambda r, w: run_views(r, w, lambda: NTXent(0.5), [4, 4], 2),
    "ntxent_uneven_batch_k3_learnable_tau": lambda r, w: run_views(
        r, w, lambda: NTXent(0.5, learnable_temperature=True), [5, 2], 3),
    "supcon_mean_log_rank1_without_positive": lambda r, w: run_views(
        r, w, lambda: SupCon(0.5, "mean_log"), [6, 6], 1, LAB_NONE),
    "supcon_log_mean_uneven_positives": lambda r, w: run_views(
        r, w, lambda: SupCon(0.5, "log_mean"), [6, 6], 1, LAB_ONE),
    "supcon_mean_log_uneven_positives": lambda r, w: run_views(
        r, w, lambda: SupCon(0.5, "mean_log"), [6, 6], 1, LAB_ONE),
    "supcon_k2_uneven_batch": lambda r, w: run_views(
        r, w, lambda: SupCon(0.5, "log_mean"), [5, 3], 2, torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])),
    "dcl": lambda r, w: run_views(r, w, lambda: DCL(0.5), [4, 4], 2),
    "dcl_labels": lambda r, w: run_views(r, w, lambda: DCL(0.5), [4, 3], 2, torch.tensor([0, 1, 2, 0, 1, 2, 3])),
    "clip_learnable_tau_uneven_batch": lambda r, w: run_clip(r, w, [4, 3], True),
    "infonce_inbatch": lambda r, w: run_infonce_inbatch(r, w, [4, 4]),
    "ntxent_queue_3_steps": lambda r, w: run_views(
        r, w, lambda: NTXent(0.5), [3, 2], 2, steps=3, queue=Queue(6, 3, init="empty", dtype=torch.float64)),
    "supcon_queue_labels_2_steps": lambda r, w: run_views(
        r, w, lambda: SupCon(0.5), [4, 3], 2, torch.tensor([0, 1, 2, 0, 1, 3, 3]), steps=2,
        queue=Queue(5, 3, with_labels=True, dtype=torch.float64)),
}
if TILED:
    CASES.update({
        "ntxent_tiled": lambda r, w: run_views(r, w, lambda: NTXent(0.5, backend="tiled"), [4, 4], 2),
        "supcon_tiled_uneven_positives": lambda r, w: run_views(
            r, w, lambda: SupCon(0.5, "mean_log", backend="tiled"), [6, 6], 1, LAB_ONE),
        "dcl_tiled": lambda r, w: run_views(r, w, lambda: DCL(0.5, backend="tiled"), [5, 3], 2),
        "clip_tiled": lambda r, w: run_clip(r, w, [4, 3], True, backend="tiled"),
    })


def gather_case(rank: int, world: int) -> dict:
    """gather_with_grad (uneven sizes) and torch's all_gather: forward rows and summed backward."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ws = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(world)]
    local = split(x, [3, 2], rank, world).clone().requires_grad_()
    y = distributed.gather_with_grad(local)
    (y * ws[rank]).sum().backward()
    from torch.distributed.nn.functional import all_gather

    x2 = x[:4]
    local2 = split(x2, [2, 2], rank, world).clone().requires_grad_()
    y2 = torch.cat(all_gather(local2))
    (y2 * ws[rank][:4]).sum().backward()
    return {"y": y.detach(), "grad": local.grad, "y_torch": y2.detach(), "grad_torch": local2.grad}


def no_positive_case(rank: int, world: int) -> dict:
    """No anchor on any rank has a positive: every rank raises (no hang); 'zero' gives 0 everywhere."""
    z = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(3) + 3 * rank
    try:
        SupCon(0.5)(z, labels)
        raised = False
    except ValueError as e:
        raised = "any rank" in str(e)
    zero = SupCon(0.5, on_no_positive="zero")(z, labels)
    zero.backward()
    return {"raised": raised, "zero": zero.detach(), "grad": z.grad}


def local_only_case(rank: int, world: int) -> dict:
    """Only rank 1 computes a loss inside local_only(): no collective, so no hang; a local value."""
    z = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    if rank != 1:
        return {}
    with distributed.local_only():
        assert not distributed.is_active()
        return {"z": z, "loss": NTXent(0.5)(z)}


def worker(rank: int, world: int) -> dict:
    res = {name: fn(rank, world) for name, fn in CASES.items()}
    res["__gather__"] = gather_case(rank, world)
    res["__no_positive__"] = no_positive_case(rank, world)
    res["__local_only__"] = local_only_case(rank, world)
    res["__active_after__"] = distributed.is_active()
    return res


# ----------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    """One spawn of 2 gloo ranks running every case (a hang fails after the timeout)."""
    return distributed.launch(worker, WORLD, timeout=90)


def assert_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(got.to(ref.dtype), ref, atol=ATOL, rtol=1e-6, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name", list(CASES))
def test_ranks_equal_single_process_big_batch(ranks: list[dict], name: str) -> None:
    ref = CASES[name](0, 1)
    for t, ref_loss in enumerate(ref["losses"]):
        # each rank returns its share of the global mean: their average is the big-batch loss
        mean_loss = sum(r[name]["losses"][t] for r in ranks) / len(ranks)
        assert_close(mean_loss, ref_loss, f"{name} step {t} loss")
        for rk, r in enumerate(ranks):
            assert set(r[name]["grads"][t]) == set(ref["grads"][t])
            for p, gref in ref["grads"][t].items():
                assert_close(r[name]["grads"][t][p], gref, f"{name} step {t} rank {rk} grad {p}")
    for t, (qref, lref) in enumerate(ref["queues"]):
        q0, lab0 = ranks[0][name]["queues"][t]
        for rk, r in enumerate(ranks):  # the queue is identical on every rank, and equals the 1-process one
            q, lab = r[name]["queues"][t]
            assert torch.equal(q, q0), f"{name} step {t} rank {rk} queue differs from rank 0's"
            assert_close(q, qref, f"{name} step {t} rank {rk} queue")
            if lref is not None:
                assert torch.equal(lab, lref) and torch.equal(lab, lab0)


def test_uneven_cases_are_really_uneven() -> None:
    """The per-rank means differ from the global one (otherwise the rescaling would be untested)."""
    labels = LAB_ONE
    z = torch.randn(12, 1, 3, dtype=torch.float64)
    obj = SupCon(0.5)
    obj(z[6:], labels[6:], extra=z[:6, 0], extra_labels=labels[:6])
    assert obj.last_stats["anchors_used"] == 1.0
    obj(z, labels)
    assert obj.last_stats["anchors_used"] == 7.0


def test_gather_with_grad_sums_gradients_over_ranks(ranks: list[dict]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ws = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(WORLD)]
    total = ws[0] + ws[1]
    for rk, r in enumerate(ranks):
        res = r["__gather__"]
        assert torch.equal(res["y"], x)
        sl = slice(0, 3) if rk == 0 else slice(3, 5)
        torch.testing.assert_close(res["grad"], total[sl])
        # torch.distributed.nn.functional.all_gather also sums (checked, equal sizes only)
        assert torch.equal(res["y_torch"], x[:4])
        torch.testing.assert_close(res["grad_torch"], total[:4][2 * rk : 2 * rk + 2])


def test_no_positive_on_any_rank_raises_everywhere(ranks: list[dict]) -> None:
    for r in ranks:
        res = r["__no_positive__"]
        assert res["raised"] is True
        assert float(res["zero"]) == 0.0
        assert torch.equal(res["grad"], torch.zeros_like(res["grad"]))


def test_local_only_on_one_rank(ranks: list[dict]) -> None:
    res = ranks[1]["__local_only__"]
    torch.testing.assert_close(res["loss"], NTXent(0.5)(res["z"]))
    assert all(r["__active_after__"] for r in ranks)


def test_single_process_helpers_are_identity() -> None:
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x and distributed.gather_no_grad(x) is x
    assert distributed.sizes(3) == [3] and distributed.offset(3) == 0
    loss = torch.tensor(2.0)
    assert distributed.global_mean(loss, 4) == (loss, 4.0)
    assert distributed.world_size() == 1 and distributed.rank() == 0
