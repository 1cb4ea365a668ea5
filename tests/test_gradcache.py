"""GradCache == full-batch gradients (dropout and random augmentation replayed), and with 2 DDP ranks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pairlab import distributed
from pairlab.gradcache import grad_cache_step
from pairlab.objectives import CLIPLoss, NTXent, SupCon

ATOL = 1e-10


class Enc(nn.Module):
    def __init__(self, din: int = 6, d: int = 4, p: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(din, 8), nn.Tanh(), nn.Dropout(p), nn.Linear(8, d))

    def forward(self, x):
        return self.net(x)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random noise and a random crop of the feature window (torch RNG), per sample."""
    x = x + 0.1 * torch.randn_like(x)
    shift = torch.randint(0, 3, (x.shape[0],))
    return torch.stack([xi.roll(int(s), dims=-1) for xi, s in zip(x, shift, strict=True)])


def make(seed: int = 0, b: int = 7, k: int = 2, learnable: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, k, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (b,), generator=g)
    torch.manual_seed(seed + 1)
    enc = Enc().double()
    return x, labels, enc


def grads(*mods: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{i}.{n}": p.grad.clone() for i, m in enumerate(mods) for n, p in m.named_parameters() if p.requires_grad}


def reference(encode, x, loss_fn, chunk: int) -> torch.Tensor:
    """The big graph: encode each chunk *with* grad (RNG flowing chunk to chunk), one loss, one backward."""
    z = torch.cat([encode(x[s : s + chunk]) for s in range(0, x.shape[0], chunk)])
    loss = loss_fn(z)
    loss.backward()
    return loss.detach()


OBJECTIVES = {
    "ntxent_learnable_tau": lambda: NTXent(0.5, learnable_temperature=True),
    "supcon_mean_log": lambda: SupCon(0.5, "mean_log"),
    "supcon_log_mean_learnable_tau": lambda: SupCon(0.5, "log_mean", learnable_temperature=True),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 10])
def test_equals_full_batch_with_dropout_and_augmentation(name: str, chunk: int) -> None:
    x, labels, enc = make()
    obj = OBJECTIVES[name]().double()
    enc_ref = Enc().double()
    enc_ref.load_state_dict(enc.state_dict())
    obj_ref = OBJECTIVES[name]().double()
    obj_ref.load_state_dict(obj.state_dict())

    torch.manual_seed(123)
    loss_ref = reference(lambda c: enc_ref(augment(c)), x, lambda z: obj_ref(z, labels), chunk)
    rng_ref = torch.get_rng_state()
    torch.manual_seed(123)
    loss = grad_cache_step(lambda c: enc(augment(c)), x, lambda z: obj(z, labels), chunk)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, loss_ref, atol=ATOL, rtol=0)
    g, gref = grads(enc, obj), grads(enc_ref, obj_ref)
    assert set(g) == set(gref) and len(g) >= 4
    for p in gref:
        torch.testing.assert_close(g[p], gref[p], atol=ATOL, rtol=0, msg=lambda m, p=p: f"{p}: {m}")
    # the caller's RNG ends where a single pass over the chunks would leave it
    assert torch.equal(torch.get_rng_state(), rng_ref)


def test_randomness_matters_so_the_replay_is_tested() -> None:
    """Other dropout masks / augmentations give clearly different gradients."""
    x, labels, enc = make()
    obj = NTXent(0.5)
    torch.manual_seed(123)
    reference(lambda c: enc(augment(c)), x, lambda z: obj(z), 3)
    g1 = grads(enc)
    enc.zero_grad()
    torch.manual_seed(124)
    grad_cache_step(lambda c: enc(augment(c)), x, lambda z: obj(z), 3)
    g2 = grads(enc)
    assert max(float((g1[p] - g2[p]).abs().max()) for p in g1) > 1e-3


def test_two_tower_tuple_outputs_and_dict_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    batch = {"img": torch.randn(9, 5, generator=g, dtype=torch.float64),
             "txt": torch.randn(9, 3, generator=g, dtype=torch.float64)}
    torch.manual_seed(1)
    ta, tb = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.2)).double(), nn.Linear(3, 4).double()
    obj = CLIPLoss(0.2, learnable_temperature=True)

    def encode(c):
        return ta(c["img"]), tb(c["txt"])

    torch.manual_seed(7)
    outs = [encode({k: v[s : s + 4] for k, v in batch.items()}) for s in range(0, 9, 4)]
    ref = obj(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]))
    ref.backward()
    gref = grads(ta, tb, obj)
    for m in (ta, tb, obj):
        m.zero_grad()
    torch.manual_seed(7)
    loss, (za, zb) = grad_cache_step(encode, batch, lambda z: obj(*z), 4, return_embeddings=True)
    torch.testing.assert_close(loss, ref.detach(), atol=ATOL, rtol=0)
    assert not za.requires_grad
    torch.testing.assert_close(za, torch.cat([o[0] for o in outs]).detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(zb, torch.cat([o[1] for o in outs]).detach(), atol=ATOL, rtol=0)
    for p, gr in gref.items():
        torch.testing.assert_close(grads(ta, tb, obj)[p], gr, atol=ATOL, rtol=0)


def test_grad_scaler_scales_every_gradient() -> None:
    x, _, enc = make()
    obj = NTXent(0.5, learnable_temperature=True).double()
    torch.manual_seed(0)
    grad_cache_step(lambda c: enc(augment(c)), x, lambda z: obj(z), 3)
    g1 = grads(enc, obj)
    enc.zero_grad()
    obj.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    torch.manual_seed(0)
    grad_cache_step(lambda c: enc(augment(c)), x, lambda z: obj(z), 3, scaler=scaler)
    for p, g in grads(enc, obj).items():
        torch.testing.assert_close(g / 1024.0, g1[p], atol=1e-9, rtol=1e-6)


def test_bf16_autocast_runs_and_matches_the_big_graph() -> None:
    x, _, enc = make()
    enc = enc.float()
    x = x.float()
    obj = NTXent(0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        reference(lambda c: enc(augment(c)), x, lambda z: obj(z), 3)
        gref = grads(enc)
        enc.zero_grad()
        torch.manual_seed(3)
        loss = grad_cache_step(lambda c: enc(augment(c)), x, lambda z: obj(z), 3)
    assert torch.isfinite(loss)
    for p, g in grads(enc).items():
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, gref[p], atol=2e-2, rtol=2e-2)


def test_bad_input() -> None:
    x, _, enc = make()
    obj = NTXent(0.5)
    with pytest.raises(ValueError, match="chunk_size"):
        grad_cache_step(enc, x, lambda z: obj(z), 0)
    with pytest.raises(ValueError, match="scalar"):
        grad_cache_step(enc, x, lambda z: z.sum(dim=0), 3)
    with pytest.raises(ValueError, match="rows first"):
        grad_cache_step(lambda c: enc(c).transpose(0, 1), x, lambda z: obj(z), 3)
    with pytest.raises(ValueError, match="same batch size"):
        grad_cache_step(lambda c: enc(c[0]), (x, x[:3]), lambda z: obj(z), 3)
    with pytest.raises(TypeError, match="Tensor"):
        grad_cache_step(lambda c: "nope", x, lambda z: obj(z), 3)
    with pytest.raises(ValueError, match="does not depend"):
        grad_cache_step(enc, x, lambda z: torch.tensor(1.0), 3)


# ------------------------------------------------------------------------------------- 2 ranks with DDP
PARTS = [5, 5]
LABELS = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 6, 0])  # rank 1 has one anchor with a positive


def ddp_case(rank: int, world: int, name: str, use_model: bool = True) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(PARTS), 2 if name == "ntxent" else 1, 6, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    enc = Enc(p=0.0).double()  # deterministic encoder: ranks and the single process see the same z
    obj = NTXent(0.5, learnable_temperature=True) if name == "ntxent" else SupCon(0.5, "mean_log")
    s = sum(PARTS[:rank]) if world > 1 else 0
    e = s + PARTS[rank] if world > 1 else sum(PARTS)
    lab = LABELS[s:e]
    if world == 1:  # the plain big batch, no GradCache
        loss = obj(enc(x), LABELS)
        loss.backward()
        return {"loss": loss.detach(), "grads": grads(enc, obj), "calls": 0}
    model = DDP(enc)
    calls = [0]
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    def counting_hook(state, bucket):
        calls[0] += 1
        return allreduce_hook(state, bucket)

    model.register_comm_hook(None, counting_hook)
    loss = grad_cache_step(model, x[s:e], lambda z: obj(z, lab), chunk_size=2, model=model if use_model else None)
    distributed.average_gradients(obj.parameters())
    return {"loss": loss, "grads": grads(enc, obj), "calls": calls[0]}


def ddp_worker(rank: int, world: int) -> dict:
    return {"ntxent": ddp_case(rank, world, "ntxent"), "supcon": ddp_case(rank, world, "supcon"),
            "no_model": ddp_case(rank, world, "ntxent", use_model=False)}


@pytest.mark.distributed
def test_ddp_gradcache_equals_single_process_big_batch() -> None:
    ranks = distributed.launch(ddp_worker, 2, timeout=90)
    for name in ("ntxent", "supcon"):
        ref = ddp_case(0, 1, name)
        torch.testing.assert_close(sum(r[name]["loss"] for r in ranks) / 2, ref["loss"], atol=1e-9, rtol=0)
        for rk, r in enumerate(ranks):
            for p, gr in ref["grads"].items():
                torch.testing.assert_close(r[name]["grads"][p], gr, atol=1e-9, rtol=0,
                                           msg=lambda m, p=p, rk=rk, n=name: f"{n} rank {rk} {p}: {m}")
            # 3 chunks, one all-reduce of the single bucket: no_sync held for the first two
            assert r[name]["calls"] == 1
            # without model=..., DDP would all-reduce after every chunk (the bug GradCache copies had)
            assert r["no_model"]["calls"] == 3
