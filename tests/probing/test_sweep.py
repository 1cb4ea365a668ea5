import pytest
import torch

from pairlab.probing.sweep import ccs_layer_sweep


def test_sweep_finds_the_informative_layer():
    g = torch.Generator().manual_seed(0)
    n, d = 120, 8
    s = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    dt = torch.zeros(d)
    dt[0] = 1.0
    noise = lambda: torch.randn(n, d, generator=g)  # noqa: E731
    # layer 0: pure noise; layer 1: planted truth direction
    hp = torch.stack([noise(), noise() + 3 * s[:, None] * dt])
    hn = torch.stack([noise(), noise() - 3 * s[:, None] * dt])
    y = (s > 0).long()
    rows = ccs_layer_sweep(hp, hn, y, torch.arange(60), torch.arange(60, n), orient_idx=torch.arange(8),
                           layer_names=[5, 9], nepochs=100, ntries=2, lr=1e-2)
    assert [r["layer"] for r in rows] == [5, 9]
    assert rows[1]["sign_free_accuracy"] >= 0.95 and rows[0]["sign_free_accuracy"] < 0.75
    assert rows[1]["accuracy"] == pytest.approx(rows[1]["sign_free_accuracy"])  # oriented by 8 labels
    no_orient = ccs_layer_sweep(hp[1:], hn[1:], y, torch.arange(60), torch.arange(60, n), nepochs=50, ntries=1)
    assert no_orient[0]["accuracy"] is None and not no_orient[0]["sign_resolved"]


def test_errors():
    x = torch.randn(2, 10, 4)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[L, N, D\]"):
        ccs_layer_sweep(x[0], x[0], y, [0], [1])
    with pytest.raises(ValueError, match="test_idx"):
        ccs_layer_sweep(x, x, y, [0, 1], [10])
    with pytest.raises(ValueError, match="layer_names"):
        ccs_layer_sweep(x, x, y, [0, 1], [2, 3], layer_names=[1])
