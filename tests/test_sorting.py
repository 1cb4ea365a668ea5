"""Tests of pairlab.sorting against the diffsort package (oracle) and sorting-network properties."""

import itertools

import pytest
import torch

from pairlab.sorting import DISTRIBUTIONS, NETWORKS, diff_sort, network_layers

diffsort = pytest.importorskip("diffsort")


def _oracle(x: torch.Tensor, network: str, steepness: float, distribution: str):
    net = diffsort.DiffSortNet(network, x.shape[-1], steepness=steepness, distribution=distribution)
    net.sorting_network = [[m.to(x.dtype) for m in ms] for ms in net.sorting_network]
    return net(x)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("n", [2, 3, 6, 7, 11])
def test_matches_diffsort_value_and_grad(network, distribution, n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(5, n, dtype=torch.float64, generator=g, requires_grad=True)
    xs, perm = diff_sort(x, network, 2.5, distribution)
    ys, qerm = _oracle(x, network, 2.5, distribution)
    torch.testing.assert_close(xs, ys, rtol=0, atol=1e-12)
    torch.testing.assert_close(perm, qerm, rtol=0, atol=1e-12)
    w = torch.randn(n, n, dtype=torch.float64, generator=g)
    (ga,) = torch.autograd.grad((perm * w).sum() + xs.sum(), x)
    (gb,) = torch.autograd.grad((qerm * w).sum() + ys.sum(), x)
    # diffsort's Gaussian CDF has a hand-written backward that keeps sigma in float32
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-6 if distribution == "gaussian" else 1e-10)


@pytest.mark.parametrize("network", NETWORKS)
def test_doubly_stochastic_and_sorted_at_high_steepness(network):
    x = torch.randn(8, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xs, perm = diff_sort(x, network, steepness=1e4)
    torch.testing.assert_close(perm.sum(-1), torch.ones(8, 9, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(perm.sum(-2), torch.ones(8, 9, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(xs, x.sort(-1).values, rtol=0, atol=1e-3)
    torch.testing.assert_close(torch.einsum("bn,bnr->br", x, perm), xs, rtol=0, atol=1e-12)


def test_hard_networks_sort_every_01_input():
    # zero-one principle: a comparator network sorts all inputs iff it sorts all 0/1 inputs
    for network, n in itertools.product(NETWORKS, [2, 3, 5, 6, 8]):
        layers = network_layers(network, n)
        for bits in itertools.product([0, 1], repeat=n):
            w = list(bits)
            for layer in layers:
                new = list(w)
                for a, b, lo, hi in layer:
                    new[lo], new[hi] = min(w[a], w[b]), max(w[a], w[b])
                w = new
            assert w == sorted(bits), (network, n, bits, w)


def test_permuting_inputs_permutes_rows():
    x = torch.tensor([[0.9, -0.3, 0.5, 0.1]], dtype=torch.float64)
    _, perm = diff_sort(x, steepness=100.0)
    pi = torch.tensor([2, 0, 3, 1])
    _, perm2 = diff_sort(x[:, pi], steepness=100.0)
    torch.testing.assert_close(perm2[0], perm[0][pi], rtol=0, atol=2e-2)  # soft, so only approximately


def test_appendix_orientation():
    xs, perm = diff_sort(torch.tensor([[0.9, -0.3, 0.5, 0.1]], dtype=torch.float64), steepness=100.0)
    torch.testing.assert_close(xs[0], torch.tensor([-0.294, 0.106, 0.497, 0.890], dtype=torch.float64),
                               rtol=0, atol=2e-3)
    assert perm[0, 0, 3] > 0.98  # 0.9 lands at the top rank


def test_bad_input():
    with pytest.raises(ValueError, match="network"):
        diff_sort(torch.randn(2, 3), network="merge")
    with pytest.raises(ValueError, match="distribution"):
        diff_sort(torch.randn(2, 3), distribution="optimal")
    with pytest.raises(ValueError, match="steepness"):
        diff_sort(torch.randn(2, 3), steepness=0.0)
    with pytest.raises(ValueError, match="NaN"):
        diff_sort(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating"):
        diff_sort(torch.tensor([[1, 2]]))


def test_half_precision_computes_in_float32():
    xs, perm = diff_sort(torch.randn(2, 4).half())
    assert xs.dtype == torch.float32 and perm.dtype == torch.float32
