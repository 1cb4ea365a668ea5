import pytest
import torch

from pairlab.data.views import AugmentConfig, Views


def test_shape_dtype_range_and_layout():
    x = (torch.rand(6, 1, 28, 28) * 255).to(torch.uint8)
    v = Views(28, k=3)(x)
    assert v.shape == (6, 3, 1, 28, 28) and v.dtype == torch.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0


def test_views_differ_and_seed_determinism():
    x = (torch.rand(8, 1, 28, 28) * 255).to(torch.uint8)
    views = Views(28, k=2)
    torch.manual_seed(3)
    a = views(x)
    torch.manual_seed(3)
    b = views(x)
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 0], a[:, 1])
    torch.manual_seed(4)
    assert not torch.equal(views(x), a)


def test_identity_config_returns_the_image():
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, affine_p=0, noise_p=0, erase_p=0,
                        jitter_p=0)
    x = torch.rand(4, 1, 28, 28)
    v = Views(28, k=2, config=cfg)(x)
    assert torch.allclose(v[:, 0], x, atol=1e-5) and torch.allclose(v[:, 1], x, atol=1e-5)


def test_flip_only_gives_image_or_mirror():
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.5, affine_p=0, noise_p=0,
                        erase_p=0, jitter_p=0)
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(0)
    v = Views(28, k=1, config=cfg)(x)[:, 0]
    same = (v - x).abs().flatten(1).amax(1) < 1e-5
    mirrored = (v - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 16


def test_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        Views(28, k=0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        Views(28)(torch.rand(28, 28))
    with pytest.raises(ValueError):
        AugmentConfig(flip_p=2.0)
    with pytest.raises(ValueError):
        AugmentConfig(colour_jitter=0.4)


def test_jitter_is_a_monotone_intensity_change_per_image():
    """Brightness/contrast jitter alone keeps each image's pixel order and changes its histogram."""
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, affine_p=0, noise_p=0, erase_p=0,
                        jitter_p=1.0, brightness=0.4, contrast=0.4)
    x = torch.rand(8, 1, 28, 28) * 0.5 + 0.25  # away from the clamp at 0 and 1
    torch.manual_seed(0)
    v = Views(28, k=2, config=cfg)(x)
    for b in range(8):
        order = x[b].flatten().argsort()
        for k in range(2):
            assert bool((v[b, k].flatten()[order].diff() >= -1e-6).all())  # non-decreasing along x's order
    assert (v[:, 0] - x).abs().amax() > 0.02 and (v[:, 0] - v[:, 1]).abs().amax() > 0.02
    assert AugmentConfig().jitter_p == 0.8  # on by default: without it the FMNIST features fall below random init
