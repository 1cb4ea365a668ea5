"""Neighbour positives: top-k vs brute force (self excluded), substitution rule, views plug into NT-Xent."""

from __future__ import annotations

import pytest
import torch

from pairlab import registry
from pairlab.candidates.neighbours import (
    NeighbourPositives,
    neighbour_table,
    search,
    substitute_with_neighbours,
)
from pairlab.objectives import NTXent


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_table_matches_brute_force_and_masks_self_with_duplicates() -> None:
    torch.manual_seed(0)
    e = torch.randn(20, 5, dtype=torch.float64)
    e[3] = e[7]  # duplicate rows: self must still be excluded, the duplicate found
    t = neighbour_table(e, k=3, backend="torch")
    en = _unit(e)
    for i in range(20):
        sims = sorted(((float(en[i] @ en[j]), j) for j in range(20) if j != i), reverse=True)
        got = sorted((float(en[i] @ en[j]) for j in t[i].tolist()), reverse=True)
        assert got == pytest.approx([v for v, _ in sims[:3]], abs=1e-12)  # ties (3 == 7) may swap ids
        assert i not in t[i].tolist()
    assert t[3, 0] == 7 and t[7, 0] == 3


def test_substitution_rate_and_pad() -> None:
    table = torch.tensor([[0, 0], [2, 3], [1, 3], [1, 2]])
    seq = torch.tensor([[0, 0, 1, 2, 3] * 200])
    g = torch.Generator().manual_seed(0)
    out = substitute_with_neighbours(seq, table, p=0.2, pad=0, generator=g)
    assert bool((out[seq == 0] == 0).all())
    changed = (out != seq) & (seq != 0)
    assert abs(float(changed.sum()) / float((seq != 0).sum()) - 0.2) < 0.04
    for a, b in zip(seq[changed].tolist(), out[changed].tolist(), strict=True):
        assert b in table[a].tolist()
    with pytest.raises(ValueError, match="p must"):
        substitute_with_neighbours(seq, table, p=1.5)


def test_neighbour_positives_appended_as_views() -> None:
    torch.manual_seed(1)
    index = torch.randn(30, 6)
    z = torch.randn(4, 2, 6, requires_grad=True)
    gen = NeighbourPositives(index, k=2, backend="torch")
    c = gen(z)
    q = _unit(_unit(z.detach()).mean(1))
    _, ids = search(index, q, 2, backend="torch")
    assert c.views.shape == (4, 4, 6)
    assert torch.equal(c.views[:, 2:], index[ids]) and torch.equal(c.views[:, :2], z)
    NTXent()(c.views_or(z), **c.objective_kwargs()).backward()
    assert torch.isfinite(z.grad).all()
    c2 = gen(index[:4, None, :].repeat(1, 2, 1), ids=torch.arange(4))  # own row excluded
    assert not bool((c2.views[:, 2:] == index[:4, None, :]).all(-1).any())


def test_registry_and_bad_inputs() -> None:
    gen = registry.build("candidates", "neighbours")
    with pytest.raises(ValueError, match="set_index"):
        gen(torch.randn(2, 2, 3))
    gen.set_index(torch.randn(5, 4))
    with pytest.raises(ValueError, match="dim"):
        gen(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="k must lie"):
        search(torch.randn(3, 2), torch.randn(1, 2), 3, exclude=torch.tensor([0]))
    with pytest.raises(ValueError, match="backend"):
        NeighbourPositives(backend="annoy")
