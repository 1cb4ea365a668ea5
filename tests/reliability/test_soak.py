"""Soak: 2,000 training steps on digits with the MoCo queue and MoCHi; memory must not grow and no NaN appears.

A small MLP encoder trains on the digits images pooled to 7 x 7 with two cheap views (random shifts plus pixel
noise), so the 2,000 steps fit the slow-test budget on a shared 2-core machine. The loss is NT-Xent whose extra
columns are a 128-key queue and MoCHi's synthetic hard negatives (``candidates/mochi``; if that component is not
registered, the queue alone). Every step's loss must be finite; at the end every parameter is finite. Resident
memory (``/proc/self/statm``) is sampled every 200 steps: after a 400-step warm-up no sample may exceed the
warm-up level by more than ``MAX_GROWTH_MB`` (a leak of one batch graph per step would add > 100 MB).
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from pairlab import registry
from pairlab.data.datasets import load_dataset, to_float
from pairlab.objectives import NTXent

STEPS = 2000
BATCH = 16
QUEUE = 128
MAX_GROWTH_MB = 25.0


def _views(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Two views per image ``[b, 1, 14, 14] -> [b, 2, 1, 14, 14]``: a random roll of up to 2 pixels plus noise."""
    out = []
    for _ in range(2):
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
        out.append(torch.roll(x, (dx, dy), dims=(-2, -1)) + 0.05 * torch.randn(x.shape, generator=g))
    return torch.stack(out, dim=1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_2000_steps_queue_mochi_no_leak_no_nan():
    torch.manual_seed(0)
    data = load_dataset("digits", "train")
    x_all = torch.nn.functional.avg_pool2d(to_float(data.x), 4)  # [N, 1, 7, 7]
    n = len(data)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    obj = NTXent(temperature=0.2)
    queue = registry.build("candidates", "queue", size=QUEUE, dim=8, seed=0)
    use_mochi = "mochi" in registry.available("candidates")
    gen = registry.build("candidates", "mochi", num_hard=16, num_mix=8, num_query_mix=4, queue=queue,
                         seed=0) if use_mochi else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    rss, losses, extra_cols = {}, [], set()
    for step in range(1, STEPS + 1):
        idx = torch.randint(0, n, (BATCH,), generator=g)
        v = _views(x_all[idx], g)
        b, k = v.shape[:2]
        z = model(v.reshape(b * k, *v.shape[2:])).reshape(b, k, -1)
        if gen is not None:
            c = gen(z)
            loss = obj(c.views_or(z), **c.objective_kwargs())
            extra_cols.add(c.num_extra)
        else:
            loss = obj(z, extra=queue.negatives())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if gen is not None:
            gen.update(z.detach())
        else:
            queue.enqueue(z[:, 1].detach())
        lv = float(loss.detach())
        assert math.isfinite(lv), f"loss {lv} at step {step}"
        losses.append(lv)
        del z, loss, v
        if step % 200 == 0:
            rss[step] = _rss_mb()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len(queue) == QUEUE
    if gen is not None:
        assert extra_cols == {QUEUE + 2 * BATCH * (8 + 4)}  # queue + per-anchor mixes, every step the same
    base = rss[400]
    growth = {s: round(v - base, 1) for s, v in rss.items() if s > 400}
    print(f"mochi={use_mochi} loss first/last 100: {sum(losses[:100]) / 100:.3f} / {sum(losses[-100:]) / 100:.3f}; "
          f"RSS at 400: {base:.0f} MB, growth after: {growth}")
    assert max(growth.values()) < MAX_GROWTH_MB, f"resident memory grew: {growth} MB"
