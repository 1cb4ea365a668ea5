import pytest
import torch

from pairlab.models.encoder import Encoder, ProjectionHead, SmallResNet


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_shapes(stem_stride):
    m = Encoder(1, widths=(8, 16, 24), blocks=1, hidden_dim=32, proj_dim=12, stem_stride=stem_stride)
    x = torch.rand(5, 1, 28, 28)
    assert m.features(x).shape == (5, 24) and m(x).shape == (5, 12) and m.feature_dim == 24
    assert SmallResNet(3, (4, 8), 2)(torch.rand(2, 3, 8, 8)).shape == (2, 8)


def test_forward_is_head_of_features():
    torch.manual_seed(0)
    m = Encoder(1, widths=(8, 16)).eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(m(x), m.head(m.features(x)))


def test_gradients_reach_every_parameter():
    m = Encoder(1, widths=(8, 16))
    m(torch.rand(4, 1, 28, 28)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        SmallResNet(1, (8,))(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="widths"):
        SmallResNet(1, ())
    with pytest.raises(ValueError, match="stem_stride"):
        SmallResNet(1, (8,), stem_stride=3)
    with pytest.raises(ValueError, match="h"):
        ProjectionHead(8)(torch.rand(2, 3, 8))
