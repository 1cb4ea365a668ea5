"""pairlab.models.mlp.MLPEncoder: shapes, a hand-computed forward, bad input, the old import path."""

import pytest
import torch

from pairlab.models.mlp import MLPEncoder


def test_shapes_and_bad_input():
    enc = MLPEncoder(7, (32, 16), hidden_dim=20, proj_dim=5)
    x = torch.randn(6, 7)
    assert enc.features(x).shape == (6, 16) and enc(x).shape == (6, 5) and enc.feature_dim == 16
    with pytest.raises(ValueError, match=r"\[N, 7\]"):
        enc(torch.randn(6, 8))
    with pytest.raises(ValueError, match="in_dim"):
        MLPEncoder(0)
    with pytest.raises(ValueError, match="widths"):
        MLPEncoder(3, ())


def test_features_match_hand_computation_in_eval_mode():
    torch.manual_seed(0)
    enc = MLPEncoder(5, (4, 3), hidden_dim=6, proj_dim=2).double()
    for m in enc.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    enc.eval()
    x = torch.randn(8, 5, dtype=torch.float64)
    h = x
    lin = [m for m in enc.backbone if isinstance(m, torch.nn.Linear)]
    bns = [m for m in enc.backbone if isinstance(m, torch.nn.BatchNorm1d)]
    for li, bn in zip(lin, bns, strict=True):
        h = h @ li.weight.T
        h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        h = h.clamp_min(0)
    torch.testing.assert_close(enc.features(x), h)
    torch.testing.assert_close(enc(x), enc.head(h))


def test_old_import_path_is_the_same_class():
    from pairlab.data.user import MLPEncoder as Old

    assert Old is MLPEncoder
