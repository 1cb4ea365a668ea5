import numpy as np
import pytest
import torch

from pairlab import registry
from pairlab.metrics.linear import fit_linear, linear_probe_accuracy, standardize


def test_standardize_uses_train_statistics():
    tr = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    te = torch.tensor([[2.0, 6.0]])
    a, b = standardize(tr, te)
    assert torch.allclose(a.mean(0), torch.zeros(2)) and torch.allclose(b, torch.tensor([[0.0, 1.0]]))


def test_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    l2 = 1e-2
    w, b = fit_linear(x, y, 3, l2=l2, max_iter=500)
    ref = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    ours = torch.softmax(x @ w.T + b, 1).numpy()
    assert np.allclose(ours, ref.predict_proba(x.numpy()), atol=2e-3)


def test_probe_accuracy_on_separable_data():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(4, 8, generator=g) * 5
    y = torch.randint(0, 4, (400,), generator=g)
    x = centers[y] + torch.randn(400, 8, generator=g)
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) == 1.0
    # random labels cannot be predicted above chance by much
    yr = torch.randint(0, 4, (400,), generator=g)
    assert linear_probe_accuracy(x[:300], yr[:300], x[300:], yr[300:]) < 0.45


def test_registered_and_validates():
    assert registry.get("metrics", "linear").obj is linear_probe_accuracy
    with pytest.raises(ValueError, match="train_y"):
        linear_probe_accuracy(torch.randn(4, 2), torch.zeros(3, dtype=torch.long), torch.randn(2, 2),
                              torch.zeros(2, dtype=torch.long))
