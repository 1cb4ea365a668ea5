"""The SoftREPA Fashion-MNIST check: its batch and statistics helpers.

The real run is in benchmarks/softrepa.py; it does not (yet) show a clear rank gain (see results/softrepa.md),
so no slow test asserts one."""

from __future__ import annotations

import torch

from pairlab.generative.softrepa_check import _grid_batches, class_prompts, rank_stats


def test_grid_batches_hold_distinct_classes_with_their_prompts():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 10
    x = y.float().reshape(40, 1, 1, 1).expand(40, 1, 2, 2)
    tokens = torch.arange(10.0).reshape(10, 1, 1).expand(10, 3, 4)
    mask = torch.ones(10, 3, dtype=torch.bool)
    it = _grid_batches(x, y, tokens, mask, 8, g)
    for _ in range(5):
        xb, (tb, mb) = next(it)
        cls = xb[:, 0, 0, 0].long()
        assert len(set(cls.tolist())) == 8  # distinct classes: no false negatives in the B x B grid
        assert torch.equal(tb[:, 0, 0].long(), cls) and mb.shape == (8, 3)


def test_rank_stats_and_prompts():
    s = rank_stats(torch.tensor([1, 1, 2, 4]), 5)
    assert s["mean_rank"] == 2.0 and s["top1"] == 0.5 and s["top3"] == 0.75 and s["hist"] == [2, 1, 0, 1, 0]
    p = class_prompts()
    assert len(p) == 10 and p[0] == "a photo of a t-shirt/top" and p[9] == "a photo of a ankle boot"
