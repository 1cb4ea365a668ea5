"""pairlab.train.evaluate: the geometry pass uses the run's own views class (image or vector) with K=2."""

import pytest
import torch

from pairlab.data.datasets import ImageData
from pairlab.data.user import VectorViews
from pairlab.data.views import AugmentConfig, Views
from pairlab.metrics.geometry import alignment, uniformity
from pairlab.models.mlp import MLPEncoder
from pairlab.train.config import EvalConfig
from pairlab.train.evaluate import evaluate, geometry, two_views


def _drawn(views, x, seed=3):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return views(x)


@pytest.mark.parametrize("make,x", [
    (lambda k: Views(12, k, AugmentConfig(erase_p=0.5, noise_p=1.0)), torch.randint(0, 255, (5, 1, 12, 12),
                                                                                    dtype=torch.uint8)),
    (lambda k: VectorViews(k, noise_std=0.3, mask_p=0.4), torch.randn(5, 7)),
], ids=["image", "vector"])
def test_two_views_is_the_same_class_and_settings_with_k_2(make, x):
    v4 = make(4)
    two = two_views(v4)
    assert type(two) is type(v4) and two.k == 2 and v4.k == 4  # the run's views are left alone
    torch.testing.assert_close(_drawn(two, x), _drawn(make(2), x), rtol=0, atol=0)  # same draws as a fresh K=2
    assert two_views(make(2)).k == 2
    with pytest.raises(TypeError, match="views"):
        two_views(object())


def test_evaluate_vector_data_with_vector_views_matches_reference():
    torch.manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.randn(40, 6) + 3.0 * y[:, None].float()
    train, test = ImageData(x[:30], y[:30], ("a", "b")), ImageData(x[30:], y[30:], ("a", "b"))
    model = MLPEncoder(6, (16, 8), 16, 4).eval()
    cfg = EvalConfig(baselines=False, plots=False, geometry_samples=8, linear_max_iter=20)
    views = VectorViews(4, noise_std=0.2, mask_p=0.1)
    m, arrays = evaluate(model, train, test, cfg, views=views, seed=5, quiet=True)
    v = _drawn(VectorViews(2, noise_std=0.2, mask_p=0.1), x[30:38], seed=5)  # reference: the K=2 draw, by hand
    with torch.no_grad():
        z1, z2 = model(v[:, 0]), model(v[:, 1])
    assert m["alignment"] == pytest.approx(alignment(z1, z2, alpha=2.0), rel=1e-6)
    assert m["uniformity"] == pytest.approx((uniformity(z1, t=2.0) + uniformity(z2, t=2.0)) / 2, rel=1e-6)
    assert "pos_scores" in arrays and arrays["pos_scores"].shape == (8,)
    g, _ = geometry(model, x[30:38], views, seed=5)
    assert g["alignment"] == m["alignment"]
