"""Grouped hard-negative batches: composition, score-proportional frequencies, determinism, bad input."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.candidates.grouped import GroupedHardNegativeBatchSampler


def _groups() -> tuple[list, list[float]]:
    groups = [f"g{i // 4}" for i in range(40)] + [None] * 30  # 10 groups of 4 variations + 30 fillers
    scores = [float(i % 4) for i in range(40)] + [0.0] * 30
    return groups, scores


def test_batches_hold_groups_together_with_fillers() -> None:
    groups, scores = _groups()
    s = GroupedHardNegativeBatchSampler(groups, scores, groups_per_batch=3, per_group=2, fillers_per_group=2,
                                        num_batches=20)
    for batch in s:
        assert len(batch) == 3 * (2 + 2) and len(set(batch)) == len(batch)
        members = [i for i in batch if i < 40]
        per = {}
        for i in members:
            per.setdefault(groups[i], []).append(i)
        assert len(per) == 3 and all(len(v) == 2 for v in per.values())
        assert sum(1 for i in batch if i >= 40) == 6


def test_member_frequencies_follow_score_minus_min_plus_eps() -> None:
    groups, scores = _groups()
    s = GroupedHardNegativeBatchSampler(groups, scores, groups_per_batch=10, per_group=1, fillers_per_group=0,
                                        num_batches=1200, seed=1)
    counts = torch.zeros(4)
    for batch in s:
        for i in batch:
            counts[i % 4] += 1
    expected = torch.tensor([0.5, 1.5, 2.5, 3.5]) / 8.0
    assert torch.allclose(s.group_probabilities(0).float(), expected)
    assert torch.allclose(counts / counts.sum(), expected, atol=0.015)  # 12000 draws: sd ~ 0.005


def test_small_groups_taken_whole_fillers_from_outside_and_seeded() -> None:
    groups = ["a", "a", "b", "c", "c", "c", "d"]
    s = GroupedHardNegativeBatchSampler(groups, groups_per_batch=2, per_group=2, fillers_per_group=1,
                                        num_batches=5, seed=3)
    b1, b2 = list(s), list(GroupedHardNegativeBatchSampler(groups, groups_per_batch=2, per_group=2,
                                                           fillers_per_group=1, num_batches=5, seed=3))
    assert b1 == b2
    for batch in b1:
        chosen = {groups[i] for i in batch[:-2]} | {groups[i] for i in batch[:-2]}
        assert len(set(batch)) == len(batch)
        assert all(groups[i] not in chosen for i in batch[-2:]) or len(chosen) > 2
    s.set_epoch(1)
    assert list(s) != b1


def test_registry_and_bad_inputs() -> None:
    s = registry.build("candidates", "grouped")
    assert (s.groups_per_batch, s.per_group, s.fillers_per_group) == (20, 2, 8)
    with pytest.raises(ValueError, match="bind"):
        list(s)
    with pytest.raises(ValueError, match="only 2 groups"):
        s.bind(["a", "b"])
    with pytest.raises(ValueError, match="per_group"):
        GroupedHardNegativeBatchSampler(per_group=0)
    with pytest.raises(ValueError, match="scores"):
        GroupedHardNegativeBatchSampler(["a"] * 3, scores=[1.0], groups_per_batch=1)
