import math

import pytest
import torch

from pairlab import registry
from pairlab.metrics.knn import knn_accuracy, knn_predict


def brute_force_knn(train_x, train_y, test_x, k, t, c):
    """Reference: one loop per test point, float64, explicit sort and vote."""
    preds = []
    for q in test_x.double():
        sims = []
        for j, r in enumerate(train_x.double()):
            sims.append((float(q @ r / (q.norm() * r.norm())), j))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * c
        for s, j in sims[:k]:
            votes[int(train_y[j])] += math.exp(s / t)
        preds.append(max(range(c), key=lambda i: (votes[i], -i)))
    return torch.tensor(preds)


@pytest.mark.parametrize("k,t", [(1, 0.07), (5, 0.07), (20, 0.5), (60, 1.0)])
def test_matches_brute_force(k, t):
    g = torch.Generator().manual_seed(k)
    train_x, test_x = torch.randn(60, 7, generator=g), torch.randn(25, 7, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    pred = knn_predict(train_x, train_y, test_x, k=k, temperature=t, num_classes=4, chunk=7)
    assert torch.equal(pred, brute_force_knn(train_x, train_y, test_x, k, t, 4))


def test_accuracy_separable_and_weighting_matters():
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    train_y = torch.tensor([0, 1])
    assert knn_accuracy(train_x, train_y, torch.tensor([[1.0, 0.1], [0.2, 1.0]]), torch.tensor([0, 1]), k=2) == 1.0
    # 2 far neighbours of class 1 vs 1 close neighbour of class 0: weighted votes pick class 0 at low T
    tx = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    ty = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.3]])
    assert knn_predict(tx, ty, q, k=3, temperature=0.05).item() == 0
    assert knn_predict(tx, ty, q, k=3, temperature=100.0).item() == 1


def test_registered_and_validates():
    assert registry.get("metrics", "knn").obj is knn_accuracy
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.randn(2, 2), temperature=0.0)
    with pytest.raises(ValueError, match="test_x"):
        knn_predict(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.randn(2, 3))
