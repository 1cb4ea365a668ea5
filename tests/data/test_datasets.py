from pathlib import Path

import pytest
import torch

from pairlab import registry
from pairlab.data.datasets import ImageData, digits, fmnist, load_dataset, to_float

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="apt package dataset-fashion-mnist not installed")


def test_registered_under_datasets():
    assert {"fmnist", "digits"} <= set(registry.available("datasets"))
    assert registry.get("datasets", "digits").obj is digits


def test_digits_shapes_labels_and_disjoint_split():
    tr, te = digits("train"), digits("test")
    assert tr.x.shape == (1438, 1, 28, 28) and te.x.shape == (359, 1, 28, 28)
    assert tr.x.dtype == torch.uint8 and tr.labels.dtype == torch.int64
    assert set(tr.labels.tolist()) == set(range(10)) == set(te.labels.tolist())
    # stratified 80/20: every class has ~20% of its images in the test split
    counts = te.labels.bincount() / (te.labels.bincount() + tr.labels.bincount())
    assert torch.allclose(counts, torch.full((10,), 0.2), atol=0.01)
    # no test image is also a training image (compare the 8x8 originals)
    small_tr = digits("train", size=8).x.flatten(1)
    small_te = digits("test", size=8).x.flatten(1)
    from sklearn.datasets import load_digits

    n = load_digits().images.shape[0]
    assert small_tr.shape[0] + small_te.shape[0] == n


def test_digits_size_8_matches_sklearn_values():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = digits("train", size=8).x
    ref = {tuple((torch.from_numpy(im) / 16 * 255).round().to(torch.uint8).flatten().tolist()) for im in d.images}
    assert all(tuple(row.tolist()) in ref for row in x.flatten(1)[:50])


def test_bad_split_and_data_dir():
    with pytest.raises(ValueError, match="split"):
        digits("valid")
    with pytest.raises(ValueError, match="data_dir"):
        digits("train", data_dir="/tmp")


def test_missing_fmnist_dir_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fmnist("train", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_dataset("fmnist", "test", tmp_path)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="digits"):
        load_dataset("cifar10")


@needs_fmnist
def test_fmnist_shapes_and_labels():
    tr, te = fmnist("train"), fmnist("test")
    assert tr.x.shape == (60000, 1, 28, 28) and te.x.shape == (10000, 1, 28, 28)
    assert tr.labels.bincount().tolist() == [6000] * 10 and te.labels.bincount().tolist() == [1000] * 10
    assert len(tr.classes) == 10


def test_subset_and_to_float():
    d = ImageData(torch.arange(12, dtype=torch.uint8).reshape(3, 1, 2, 2), torch.tensor([0, 1, 2]), ("a", "b", "c"))
    assert len(d.subset(2)) == 2 and d.subset(None) is d and d.subset(10) is d
    f = to_float(torch.tensor([0, 255], dtype=torch.uint8))
    assert f.dtype == torch.float32 and f.tolist() == [0.0, 1.0]
