"""ContrastiveModule under Lightning's Trainer: logged metrics equal recomputed ones; 2-process DDP
with pairlab's gathered negatives equals the single-process big batch."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning")

from pairlab import NTXent  # noqa: E402
from pairlab.integrations.lightning import ContrastiveModule, OnlineEvaluation  # noqa: E402
from pairlab.metrics.knn import knn_accuracy  # noqa: E402
from pairlab.metrics.linear import linear_probe_accuracy  # noqa: E402


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    return x, torch.tensor(d.target)


def _noise_views(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x + 0.1 * torch.randn_like(x), x * (1 + 0.1 * torch.randn_like(x))], dim=1)


def _encoder():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))


def _trainer(**kw):
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_trains_and_logs_metrics_equal_to_recomputed():
    torch.manual_seed(0)
    x, y = _digits()
    tr, te = (x[:1200], y[:1200]), (x[1200:], y[1200:])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tr), batch_size=128, shuffle=True)
    module = ContrastiveModule(
        _encoder(),
        "ntxent",
        views=_noise_views,
        head=nn.Linear(32, 16),
        objective_kwargs={"temperature": 0.2},
        queue_size=256,
    )
    cb = OnlineEvaluation(tr, te)
    trainer = _trainer(max_epochs=2, callbacks=[cb])
    trainer.fit(module, loader)
    logged = trainer.callback_metrics
    module.eval()
    with torch.no_grad():
        ftr, fte = module.encoder(tr[0]), module.encoder(te[0])
    assert float(logged["eval/knn_acc"]) == pytest.approx(knn_accuracy(ftr, tr[1], fte, te[1]), abs=1e-6)
    assert float(logged["eval/linear_acc"]) == pytest.approx(linear_probe_accuracy(ftr, tr[1], fte, te[1]), abs=1e-6)
    assert float(logged["eval/knn_acc"]) > 0.8  # digits: learned features are useful
    assert len(cb.history) == 2 and "eval/uniformity" in cb.history[-1]
    assert len(module.queue) == 256  # queue filled with momentum keys
    assert torch.isfinite(logged["train/loss"])


def test_rejects_unknown_objective_and_bad_optimizer():
    with pytest.raises(ValueError, match="unknown objective"):
        ContrastiveModule(_encoder(), "nope")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ContrastiveModule(_encoder(), "ntxent", optimizer="lamb")


def _fixed_views(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 64, generator=g), torch.zeros(n, dtype=torch.long)


@pytest.mark.distributed
def test_ddp_two_processes_equal_single_big_batch():
    torch.manual_seed(0)
    enc = _encoder()
    v, y = _fixed_views()
    # single process, one SGD step on the full batch of 16 (views already made)
    ref = copy.deepcopy(enc)
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    loss = NTXent(0.2)(ref(v.flatten(0, 1)).reshape(16, 2, -1))
    loss.backward()
    opt.step()
    # two processes with 8 samples each, one SGD step; candidates gathered across ranks
    module = ContrastiveModule(
        copy.deepcopy(enc), "ntxent", objective_kwargs={"temperature": 0.2}, optimizer="sgd", lr=0.5, weight_decay=0.0
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(v, y), batch_size=8, shuffle=False)
    trainer = _trainer(max_steps=1, devices=2, strategy="ddp_spawn")
    trainer.fit(module, loader)
    for p_ref, p_ddp in zip(ref.parameters(), module.encoder.parameters(), strict=True):
        assert torch.allclose(p_ref, p_ddp, atol=1e-6), (p_ref - p_ddp).abs().max()
    # and the update is not the one a rank would make with only its local negatives
    local = copy.deepcopy(enc)
    NTXent(0.2)(local(v[::2].flatten(0, 1)).reshape(8, 2, -1)).backward()
    moved = [p.grad.abs().max() for p in local.parameters()]
    assert max(moved) > 0
