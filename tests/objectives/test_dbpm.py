"""DBPM objective: brute-force per-sample NT-Xent with memory weights; bad-pair detection on a toy."""

import math

import pytest
import torch

from pairlab import registry
from pairlab.objectives.dbpm import DBPM, per_sample_ntxent


def _ref_per_sample(z, tau):
    """Spec §15(b): l_i = 1/2 sum_v -log(pos_i / (pos_i + neg_i^(v))), negatives = 2B-2 other rows."""
    b = z.shape[0]
    x = z / z.norm(dim=-1, keepdim=True)
    out = []
    for i in range(b):
        pos = torch.exp((x[i, 0] * x[i, 1]).sum() / tau)
        terms = []
        for v in range(2):
            neg = sum(torch.exp((x[i, v] * x[j, u]).sum() / tau) for j in range(b) for u in range(2) if j != i)
            terms.append(-torch.log(pos / (pos + neg)))
        out.append(0.5 * (terms[0] + terms[1]))
    return torch.stack(out)


def test_per_sample_loss_matches_reference():
    z = torch.randn(6, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    got = per_sample_ntxent(z, torch.tensor(1 / 0.2, dtype=torch.float64))
    want = _ref_per_sample(z, 0.2)
    torch.testing.assert_close(got, want)
    w = torch.rand(6, dtype=torch.float64)
    (g1,) = torch.autograd.grad((w * got).sum(), z)
    (g2,) = torch.autograd.grad((w * want).sum(), z)
    torch.testing.assert_close(g1, g2)


def test_weighted_loss_value_and_grad_after_warmup():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    obj = DBPM(num_samples=8, max_epochs=5, warm_epochs=1, beta_np=1.0, beta_fp=1.0)
    hist = torch.tensor([0.5, 2, 2, 2, 2, 2, 2, 3.5], dtype=torch.float64)
    obj.memory.record(torch.arange(8), hist, epoch=0)
    obj.set_epoch(1)
    assert obj.memory.noisy[0] and obj.memory.faulty[7]
    loss = obj(z, index=torch.arange(8))
    ref = _ref_per_sample(z, 0.2)
    mu, sigma = hist.mean(), hist.std(unbiased=False)
    w = torch.ones(8, dtype=torch.float64)
    for i in (0, 7):
        w[i] = math.exp(-float(ref[i] - mu) ** 2 / (2 * float(sigma) ** 2))
    want = (w * ref).mean()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(torch.autograd.grad(loss, z)[0], torch.autograd.grad(want, z)[0])
    # training mode recorded the unweighted losses for this epoch
    torch.testing.assert_close(obj.memory.memory[:, 1], ref.detach())


def _toy(n=240, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length)
    cls = torch.arange(n) % 3
    freq = torch.tensor([2.0, 4.0, 7.0])[cls]
    phase = torch.rand(n, generator=g) * 6.28
    x = torch.sin(6.28 * freq[:, None] * t + phase[:, None])
    return x, cls, g


@pytest.mark.slow
def test_flags_injected_noisy_and_faulty_pairs():
    """Spec §15(d)1: after warm-up, NP/FP precision > 0.5 for injected noisy/faulty pairs (directional)."""
    torch.manual_seed(0)
    x, cls, g = _toy()
    n = x.shape[0]
    perm = torch.randperm(n, generator=g)
    noisy, faulty = perm[:12], perm[12:24]
    fixed_noise = 3 * torch.randn(12, x.shape[1], generator=g)
    enc = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    # the injected faulty pairs inflate sigma, so the easy side needs a lower beta than the paper's 2
    obj = DBPM(num_samples=n, max_epochs=12, warm_epochs=8, beta_np=0.8, beta_fp=1.5)
    for epoch in range(9):
        obj.set_epoch(epoch)
        for idx in torch.randperm(n, generator=g).split(60):
            v1 = x[idx] * (1 + 0.1 * torch.randn(len(idx), 1)) + 0.1 * torch.randn(len(idx), x.shape[1])
            v2 = x[idx] * (1 + 0.1 * torch.randn(len(idx), 1)) + 0.1 * torch.randn(len(idx), x.shape[1])
            for j, i in enumerate(idx.tolist()):
                hit = (noisy == i).nonzero()
                if len(hit):
                    v1[j] = v2[j] = fixed_noise[int(hit[0, 0])]
                if (faulty == i).any():
                    v2[j] = torch.randn(x.shape[1], generator=g)
            loss = obj(torch.stack([enc(v1), enc(v2)], 1), index=idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
    np_set, fp_set = obj.memory.noisy.nonzero().flatten(), obj.memory.faulty.nonzero().flatten()
    assert len(np_set) and len(fp_set)
    prec_np = sum(int((noisy == i).any()) for i in np_set.tolist()) / len(np_set)
    prec_fp = sum(int((faulty == i).any()) for i in fp_set.tolist()) / len(fp_set)
    print(f'DBPM toy: NP precision {prec_np:.2f} ({len(np_set)}), FP precision {prec_fp:.2f} ({len(fp_set)})')
    assert prec_np > 0.5 and prec_fp > 0.5, (prec_np, prec_fp)


def test_registry_and_bad_input():
    obj = registry.build("objectives", "dbpm", num_samples=10)
    assert isinstance(obj, DBPM) and registry.get("objectives", "dbpm").meta["input"] == "views"
    with pytest.raises(ValueError, match="index"):
        obj(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="index"):
        obj(torch.randn(4, 2, 3), index=torch.arange(3))
    with pytest.raises(ValueError, match="K >= 2"):
        obj(torch.randn(4, 1, 3), index=torch.arange(4))
    with pytest.raises(ValueError, match="NaN"):
        obj(torch.full((4, 2, 3), float("inf")), index=torch.arange(4))


TINY_RUN = """
dataset: digits
epochs: 2
batch_size: 64
train_subset: 128
max_steps: 3
model: {widths: [8, 16], hidden_dim: 32, proj_dim: 16}
eval: {linear_max_iter: 30, geometry_samples: 64, plots: false}
"""


@pytest.mark.slow  # ~10-25 s: a real CLI run (training, evaluation, checkpoint)
def test_pairlab_train_passes_indices_and_epochs(tmp_path):
    """`pairlab train --objective dbpm`: the loop fills num_samples / max_epochs, passes the batch's dataset
    indices (every index of epoch 0 lands in memory column 0) and calls set_epoch (epoch 1 uses column 1)."""
    import json

    from pairlab.cli import main
    from pairlab.train.checkpoint import load_checkpoint

    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_RUN + "objective_args: {warm_epochs: 1}\n")
    rc = main(["train", "--config", str(cfg), "--objective", "dbpm", "--runs-dir", str(tmp_path), "--name", "d",
               "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["steps"] == 3 and all(math.isfinite(m[k]) for k in ("linear_acc", "knn_acc", "alignment"))
    mem = load_checkpoint(tmp_path / "d" / "checkpoint.pt")["objective"]
    assert mem["memory.memory"].shape == (128, 2)  # num_samples = train subset, max_epochs = epochs
    assert torch.isfinite(mem["memory.memory"][:, 0]).all()  # 2 steps x 64: each index seen once
    assert int(torch.isfinite(mem["memory.memory"][:, 1]).sum()) == 64  # one step of epoch 1
    assert torch.isfinite(mem["memory.mu"]) and float(mem["memory.sigma"]) > 0  # set_epoch(1) after warm-up


def test_loop_helpers_pass_index_and_set_epoch():
    """build_objective fills num_samples / max_epochs; call_objective passes index and calls set_epoch on change."""
    from pairlab.train.config import make_config
    from pairlab.train.loop import build_objective, call_objective

    obj, kind = build_objective(make_config({"objective": "dbpm", "epochs": 3, "objective_args": {"warm_epochs": 1}}),
                                {"num_samples": 8})
    assert obj.memory.memory.shape == (8, 3) and obj.pairlab_needs == ("index", "set_epoch")
    torch.manual_seed(0)
    z, lab = torch.randn(8, 2, 16), torch.zeros(8, dtype=torch.long)
    call_objective(obj, kind, z[:4], lab[:4], index=torch.tensor([7, 5, 3, 1]), epoch=0)
    call_objective(obj, kind, z[4:], lab[4:], index=torch.tensor([6, 4, 2, 0]), epoch=0)
    with torch.no_grad():  # each batch's losses land in the rows of its own dataset indices
        ref = torch.cat([per_sample_ntxent(z[:4], obj.temperature.scale()),
                         per_sample_ntxent(z[4:], obj.temperature.scale())])
    torch.testing.assert_close(obj.memory.memory[[7, 5, 3, 1, 6, 4, 2, 0], 0].float(), ref)
    assert obj.memory.epoch == 0 and torch.isnan(obj.memory.mu)
    call_objective(obj, kind, z[:4], lab[:4], index=torch.tensor([0, 1, 2, 3]), epoch=1)  # new epoch -> set_epoch
    assert obj.memory.epoch == 1 and torch.isfinite(obj.memory.mu)
    assert int(torch.isfinite(obj.memory.memory[:, 1]).sum()) == 4
    with pytest.raises(ValueError, match="index"):  # a missing index is a clear error, not an unweighted loss
        call_objective(obj, kind, z[:4], lab[:4])
    with pytest.raises(ValueError, match="num_samples"):
        build_objective(make_config({"objective": "dbpm"}))
