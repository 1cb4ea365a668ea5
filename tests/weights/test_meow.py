"""MEOW weights (spec unit example), weighted InfoNCE vs loop, ProtoNCE vs loop, AdaMEOW guard."""

from __future__ import annotations

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives import NTXent
from pairlab.weights.meow import (
    ClusterConsensusWeights,
    LearnedPairWeights,
    ProtoNCE,
    cluster_consensus_weights,
    concentration,
    proto_nce,
    spherical_kmeans,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_consensus_weights_spec_example() -> None:
    a = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]])
    w = cluster_consensus_weights(a)
    assert w[0].tolist() == [0, 0, 1, 2, 2, 2]
    assert bool((w.diagonal() == 0).all()) and torch.equal(w, w.T)


def test_kmeans_recovers_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = _unit(torch.randn(4, 8, generator=g))
    lab = torch.arange(40) % 4
    x = centres[lab] + 0.05 * torch.randn(40, 8, generator=g)
    _, assign = spherical_kmeans(x, 4, nredo=3)
    for c in range(4):
        assert assign[lab == c].unique().numel() == 1
    assert assign.unique().numel() == 4


def test_meow_weighted_infonce_equals_loop() -> None:
    g = torch.Generator().manual_seed(1)
    centres = _unit(torch.randn(3, 6, generator=g, dtype=torch.float64))
    lab = torch.arange(9) % 3
    z = centres[lab][:, None, :] + 0.3 * torch.randn(9, 2, 6, generator=g, dtype=torch.float64)
    w = ClusterConsensusWeights(num_clusters=(2, 3), nredo=2)
    w.prepare(z)
    tau = 0.4
    loss = NTXent(temperature=tau)(z, weights=w)
    flat = _unit(z.reshape(18, 6))
    aa, cc = w.assign_a, w.assign_c
    terms = []
    for r in range(18):
        ws = [2 - int((aa[:, r] == cc[:, j]).sum()) for j in range(18)]
        assert ws[r ^ 1] == 0  # the positive (same sample) is out of the partition, as MEOW
        den = sum(ws[j] * math.exp(float(flat[r] @ flat[j]) / tau) for j in range(18) if j != r)
        if den > 0:
            terms.append(-float(flat[r] @ flat[r ^ 1]) / tau + math.log(den))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-10)
    with pytest.raises(ValueError, match="prepare"):
        NTXent()(torch.randn(3, 2, 6), weights=w)


def test_proto_nce_equals_loop() -> None:
    torch.manual_seed(0)
    z = torch.randn(12, 4, dtype=torch.float64)
    cent, assign = spherical_kmeans(z, 3)
    zn = _unit(z)
    phi = concentration(zn, cent, assign, 0.4)
    assert float(phi.mean()) == pytest.approx(0.4)
    val = proto_nce(z, cent, assign, phi)
    ref = 0.0
    for i in range(12):
        logits = [float(zn[i] @ cent[c]) / float(phi[c]) for c in range(3)]
        ref += -logits[int(assign[i])] + math.log(sum(math.exp(x) for x in logits))
    assert val.item() == pytest.approx(ref / 12, rel=1e-10)
    assert torch.isfinite(ProtoNCE((3, 5))(z))


def test_adameow_guard_bounds_the_loss_and_faithful_form_degenerates() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 2, 4)
    losses = {}
    for guard in ("none", "normalize"):
        w = LearnedPairWeights(dim=4, guard=guard)
        vals = []
        for bias in (0.0, -5.0, -10.0):  # push every weight toward 0
            with torch.no_grad():
                w.second.bias.fill_(bias)
            w.prepare(z)
            vals.append(float(NTXent()(z, weights=w).detach()))
        losses[guard] = vals
    assert losses["none"][0] > losses["none"][1] > losses["none"][2] + 4  # falls without bound (~ log w)
    assert max(losses["normalize"]) - min(losses["normalize"]) < 0.2  # scale-free


def test_adameow_pair_weights_equal_mlp_on_sums_and_get_gradients() -> None:
    torch.manual_seed(1)
    w = LearnedPairWeights(dim=3, hidden=5, guard="none").double()
    a, c = torch.randn(4, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    mlp = torch.nn.Sequential(w.first, torch.nn.Tanh(), w.second, torch.nn.Sigmoid())
    ref = torch.stack([torch.stack([mlp(a[i] + c[j])[0] for j in range(6)]) for i in range(4)])
    assert torch.allclose(w.pair_weights(a, c), ref, atol=1e-12)
    z = torch.randn(4, 2, 3, dtype=torch.float64)
    w2 = LearnedPairWeights(dim=3)
    w2.prepare(z)
    NTXent()(z, weights=w2).backward()
    assert w2.first.weight.grad is not None and torch.isfinite(w2.first.weight.grad).all()


def test_registry_and_bad_arguments() -> None:
    assert registry.build("weights", "meow").num_clusters == (100, 300)
    assert registry.build("weights", "adameow").guard == "normalize"
    with pytest.raises(ValueError, match="num_clusters"):
        ClusterConsensusWeights(num_clusters=(0,))
    with pytest.raises(ValueError, match="guard"):
        LearnedPairWeights(guard="clip")
    with pytest.raises(ValueError, match="k must be"):
        spherical_kmeans(torch.randn(3, 2), 5)
