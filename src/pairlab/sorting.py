"""Differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022), used by GroCo.

A sorting network is a fixed sequence of layers of comparators on ``n`` wires. A comparator on wires
``(a, b)`` (``a < b``) is relaxed: with ``v = steepness * (x_b - x_a)`` and ``alpha = F(v)`` for a CDF ``F``::

    min = alpha * x_a + (1 - alpha) * x_b        max = (1 - alpha) * x_a + alpha * x_b

The same convex mixing is applied to the columns of a relaxed permutation matrix ``P`` that starts as
the identity. The result satisfies ``x_sorted = x @ P``: ``P[e, r]`` is the probability that input element
``e`` lands at rank ``r`` (rank 0 = smallest). Rows and columns of ``P`` sum to 1.

Networks:
    - ``"odd_even"``: ``n`` layers; layer ``l`` compares ``(i, i+1)`` for ``i = l mod 2, l mod 2 + 2, ...``.
    - ``"bitonic"``: Batcher's bitonic network on ``2^ceil(log2 n)`` wires; the top ``2^k - n`` wires are
      virtual and comparators touching them are dropped (the convention of the ``diffsort`` package).

Relaxations ``F``: ``"cauchy"`` (``atan(v)/pi + 1/2``, GroCo's choice), ``"logistic"`` (``sigmoid(v)``),
``"gaussian"`` (``Phi(v)``), ``"reciprocal"`` (``(v / (2 + |v|) + 1) / 2``).

The implementation gathers wires by index instead of multiplying dense ``[n, n]`` routing matrices as the
``diffsort`` package does; the numbers are the same (tested against ``diffsort``).

Examples:
    >>> x = torch.tensor([[0.9, -0.3, 0.5, 0.1]])
    >>> xs, perm = diff_sort(x, steepness=100.0)     # xs ~ [[-0.29, 0.11, 0.50, 0.89]]
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from pairlab._validate import check_choice, check_embeddings, check_positive

NETWORKS = ("odd_even", "bitonic")
DISTRIBUTIONS = ("cauchy", "logistic", "gaussian", "reciprocal")

Comparator = tuple[int, int, int, int]  # (wire a, wire b, wire receiving the min, wire receiving the max)


@lru_cache(maxsize=128)
def network_layers(network: str, n: int) -> tuple[tuple[Comparator, ...], ...]:
    """The comparators of a sorting network on ``n`` wires, layer by layer (a < b; min/max destinations)."""
    check_choice("network", network, NETWORKS)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    layers: list[tuple[Comparator, ...]] = []
    if network == "odd_even":
        for layer in range(n):
            layers.append(tuple((i, i + 1, i, i + 1) for i in range(layer % 2, n - 1, 2)))
        return tuple(layers)
    blocks = math.ceil(math.log2(n)) if n > 1 else 0
    size = 2**blocks
    skip = size - n  # virtual wires 0..skip-1
    for block in range(blocks):
        for step in range(block + 1):
            m = 2 ** (block - step)
            comps = []
            for start in range(0, size, 2 * m):
                for j in range(m):
                    a, b = start + j, start + j + m
                    if a < skip or b < skip:
                        continue  # a comparator touching a virtual wire is the identity on the real one
                    descending = (a // 2 ** (block + 1)) % 2 == 1
                    lo, hi = (b, a) if descending else (a, b)
                    comps.append((a - skip, b - skip, lo - skip, hi - skip))
            layers.append(tuple(comps))
    return tuple(layers)


def _layer_tensors(comps: tuple[Comparator, ...], n: int, device: torch.device):
    ia = torch.tensor([c[0] for c in comps], dtype=torch.long, device=device)
    ib = torch.tensor([c[1] for c in comps], dtype=torch.long, device=device)
    touched = {w for c in comps for w in c[:2]}
    passing = [w for w in range(n) if w not in touched]
    ip = torch.tensor(passing, dtype=torch.long, device=device)
    dest = [c[2] for c in comps] + [c[3] for c in comps] + passing
    inv = torch.argsort(torch.tensor(dest, dtype=torch.long, device=device))
    return ia, ib, ip, inv


def _alpha(v: torch.Tensor, distribution: str) -> torch.Tensor:
    if distribution == "cauchy":
        return torch.atan(v) / math.pi + 0.5
    if distribution == "logistic":
        return torch.sigmoid(v)
    if distribution == "gaussian":
        return 0.5 + 0.5 * torch.erf(v / math.sqrt(2.0))
    return 0.5 * (v / (2.0 + v.abs()) + 1.0)


def diff_sort(
    x: torch.Tensor,
    network: str = "odd_even",
    steepness: float = 10.0,
    distribution: str = "cauchy",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relaxed ascending sort of the last dim of ``x: [..., n]``.

    Returns ``(x_sorted [..., n], perm [..., n, n])`` with ``x_sorted = x @ perm`` (rows of ``perm`` are
    input elements, columns are ranks, rank 0 the smallest). Half-precision inputs are computed in float32.

    Args:
        network: ``"odd_even"`` or ``"bitonic"``.
        steepness: inverse temperature of the relaxation (> 0); large values approach the hard sort.
        distribution: ``"cauchy"``, ``"logistic"``, ``"gaussian"`` or ``"reciprocal"``.
    """
    check_choice("network", network, NETWORKS)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    steepness = check_positive("steepness", steepness)
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"x must be a tensor of shape [..., n] with at least 1 dim, got {getattr(x, 'shape', x)}")
    check_embeddings("x", x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x[None], 2, "[..., n]")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    n = x.shape[-1]
    perm = torch.eye(n, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n, n)
    for comps in network_layers(network, n):
        if not comps:
            continue
        ia, ib, ip, inv = _layer_tensors(comps, n, x.device)
        a, b = x[..., ia], x[..., ib]
        alpha = _alpha(steepness * (b - a), distribution)
        lo = alpha * a + (1 - alpha) * b
        hi = (1 - alpha) * a + alpha * b
        x = torch.cat([lo, hi, x[..., ip]], dim=-1)[..., inv]
        pa, pb = perm[..., ia], perm[..., ib]
        al = alpha.unsqueeze(-2)
        plo = al * pa + (1 - al) * pb
        phi = (1 - al) * pa + al * pb
        perm = torch.cat([plo, phi, perm[..., ip]], dim=-1)[..., inv]
    return x, perm
