"""How to call every registered objective / candidates / weights / miner component, for the property suites.

Each :class:`Case` turns a component into ``loss = case.loss(module, z, labels)``: a differentiable scalar of
multi-view embeddings ``z: [B, K, D]`` (sample-major) and integer labels ``[B]`` (every class appears at least
twice, so supervised objectives always have positives). Components that are not losses are wrapped in the
smallest loss that uses them (candidates -> NT-Xent/SupCon on their extra columns, weights -> NT-Xent with
``weights=``, miners -> the triplet-margin loss on the mined triplets), so the same properties apply.

The registry-driven test (``test_properties.py::test_every_registered_component_has_a_case``) fails when a
name is registered without a case here: a new component must add one (and may switch off properties that do
not hold for it, with a ``why``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pairlab import registry

KINDS = ("objectives", "candidates", "weights", "miners")


@dataclass
class Case:
    """One registered component and how to exercise it.

    ``build(temperature)`` makes the module (``temperature`` is ``None`` when the component has none);
    ``loss(module, z, labels)`` returns a scalar. Flags say which properties are meaningful:

    - ``temperature``: the component (or its wrapper loss) takes a temperature (property tests sweep 1e-3..1e3).
    - ``cosine``: scores are cosine similarities, so the loss is invariant to ``z -> c * z`` (c > 0).
    - ``permutation``: the loss is invariant to permuting the batch with its labels (False for stochastic
      components whose random draws are assigned to anchors in order).
    - ``gradcheck``: float64 ``torch.autograd.gradcheck`` applies (smooth almost everywhere at random inputs).
    - ``half_rtol``/``half_atol``: tolerance of float16/bfloat16 results against float32 (``None``: skip).
    - ``exact``: for gradcheck, a build without the component's (documented) stop-gradients.
    - ``k``: number of views, ``min_batch``: smallest batch, ``fixed_dim``: the embedding dim the module needs.
    """

    kind: str
    name: str
    build: Callable[[float | None], nn.Module]
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    temperature: bool = True
    cosine: bool = True
    permutation: bool = True
    gradcheck: bool = True
    half_rtol: float | None = 0.05
    half_atol: float = 0.05
    k: int = 2
    min_batch: int = 4
    fixed_dim: int | None = None
    num_classes: int = 2
    why: dict[str, str] = field(default_factory=dict)
    half_inputs: bool = True  # float16/bfloat16 embeddings are drawn by the finite-value property
    exact: Callable[[float | None], nn.Module] | None = None  # variant without stop-gradients, for gradcheck

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


def _t(temperature: float | None, default: float) -> float:
    return default if temperature is None else float(temperature)


def _obj(name: str, **kw: Any) -> Callable[[float | None], nn.Module]:
    """Builder for a registered objective; ``temperature`` (if not None) goes to the constructor."""

    def build(temperature: float | None) -> nn.Module:
        kwargs = dict(kw)
        if temperature is not None:
            kwargs["temperature"] = temperature
        return registry.build("objectives", name, **kwargs)

    return build


def _views(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return m(z)


def _views_labels(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return m(z, labels=labels)


def _pair(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return m(z[:, 0], z[:, 1])


def _flat_labels(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Margin losses take ``embeddings [N, D]`` with labels [N]: all views, sample labels repeated."""
    b, k, d = z.shape
    return m(z.reshape(b * k, d), labels.repeat_interleave(k))


def _cwcl(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CWCL with the intra-modal weights of a frozen tower (label features, independent of ``z``)."""
    frozen = torch.nn.functional.one_hot(labels, 3).to(torch.float64) + 0.25
    return m(z[:, 0], z[:, 1], frozen=frozen)


def _error_contrast(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # a per-pair error matrix: squared distance of normalised views (rows samples, columns conditions)
    a = torch.nn.functional.normalize(z[:, 0].double(), dim=-1, eps=1e-12).to(z.dtype)
    b = torch.nn.functional.normalize(z[:, 1].double(), dim=-1, eps=1e-12).to(z.dtype)
    err = ((a[:, None, :] - b[None, :, :]) ** 2).mean(-1)
    return m(err)


def _sepclr(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    d = z.shape[-1]
    h = max(1, d // 2)
    return m(z[..., :h], z[..., h:] if d > 1 else z, labels % 2 == 0)


def _supremix(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return m(z, labels.to(torch.float64))


def _dbpm(m: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return m(z, index=torch.arange(z.shape[0]))


# ------------------------------------------------------------------------------------------------ candidates
def _memory(n: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Fixed past keys (seeded, independent of the batch): what a queue/memory holds from earlier steps."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(123), dtype=torch.float64).to(dtype)


def _cand_queue(temperature: float | None) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    return mod


def _queue_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NT-Xent on the batch + a queue (filled by ``enqueue`` in two wrapping rounds) of fixed past keys."""
    b, k, d = z.shape
    q = registry.build("candidates", "queue", size=b + 1, dim=d, init="empty", dtype=z.dtype)
    mem = _memory(2 * b, d, z.dtype)
    q.enqueue(mem[:b])
    q.enqueue(mem[b:])  # wraps around
    return mod.obj(z, extra=q.negatives().to(z.dtype))


def _cand_mochi(temperature: float | None) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    return mod


def _mochi_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MoCHi over a queue of fixed past keys; a fresh seeded generator per call (same draws every call)."""
    b, k, d = z.shape
    q = registry.build("candidates", "queue", size=2 * b, dim=d, init="empty", dtype=z.dtype)
    q.enqueue(_memory(2 * b, d, z.dtype))
    gen = registry.build("candidates", "mochi", num_hard=4, num_mix=3, num_query_mix=2, queue=q, seed=0)
    c = gen(z, labels)
    return mod.obj(c.views_or(z), **c.objective_kwargs())


def _generator_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    c = mod.gen(z, labels)
    return mod.obj(c.views_or(z), **c.objective_kwargs())


def _cand_ft(temperature: float | None) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    mod.gen = registry.build("candidates", "ft", seed=0)
    return mod


def _cand_supremix(temperature: float | None) -> nn.Module:
    mod = nn.Module()
    mod.obj = registry.build("objectives", "supremix", temperature=_t(temperature, 0.5))
    mod.gen = registry.build("candidates", "supremix")
    return mod


def _supremix_cand_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    b, k, d = z.shape
    t = labels.to(torch.float64)
    from pairlab.scores import normalize

    f = normalize(z.reshape(b * k, d))
    mixtures = mod.gen(f.detach(), t.repeat_interleave(k))
    return mod.obj(z, t, mixtures=mixtures)


def _cand_xbm(temperature: float | None) -> nn.Module:
    return _XBMWrap()


class _XBMWrap(nn.Module):
    """XBM around a contrastive-margin loss; the memory is rebuilt per call and filled with fixed past keys."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, k, d = z.shape
        x = z.reshape(b * k, d)
        y = labels.repeat_interleave(k)
        mem_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32  # the memory's storage dtype
        # reduction "mean": PML's "mean_nonzero" jumps when one pair crosses the margin (half vs float32)
        xbm = registry.build("candidates", "xbm", loss="contrastive-margin", dim=d, memory_size=4 * b * k,
                             dtype=mem_dtype, loss_kwargs={"reduction": "mean"})
        with torch.no_grad():  # a past batch (fixed keys and labels) fills the memory; value discarded
            xbm(_memory(b * k, d, mem_dtype), torch.arange(b * k) % 3)
        return xbm(x, y)


# ------------------------------------------------------------------------------------------------ weights
def _w_hardness(temperature: float | None) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    mod.w = registry.build("weights", "hardness", beta=1.0)
    return mod


def _hardness_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return mod.obj(z, weights=mod.w)


def _w_dbpm(temperature: float | None) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    mod.t = _t(temperature, 0.1)
    return mod


def _dbpm_w_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Anchor weights from a memory primed with two epochs of losses; loss = mean(w * l)."""
    from pairlab.weights.base import per_sample_views_loss

    b = z.shape[0]
    mem = registry.build("weights", "dbpm", num_samples=b, max_epochs=4, warm_epochs=2)
    idx = torch.arange(b)
    l = per_sample_views_loss(z, temperature=mod.t)
    for e in range(2):
        mem.record(idx, l.detach(), epoch=e)
    mem.set_epoch(2)
    w = mem(idx, l.detach())
    return (w.to(l.dtype) * l).mean()


# ------------------------------------------------------------------------------------------------ miners
def _miner(name: str, **kw: Any) -> Callable[[float | None], nn.Module]:
    def build(temperature: float | None) -> nn.Module:
        mod = nn.Module()
        mod.miner = registry.build("miners", name, **kw)
        # pair miners feed the contrastive (pair) margin loss, triplet miners the triplet loss; a miner may
        # legitimately find nothing, so the wrapper loss is 0 then (on_no_positive="zero")
        pairs = registry.get("miners", name).meta.get("output") == "pairs"
        loss = "contrastive-margin" if pairs else "triplet-margin"
        mod.obj = registry.build("objectives", loss, on_no_positive="zero", **({} if pairs else {"margin": 0.2}))
        return mod

    return build


def _mined_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    b, k, d = z.shape
    x, y = z.reshape(b * k, d), labels.repeat_interleave(k)
    mined = mod.miner(x.detach(), y)
    return mod.obj(x, y, indices_tuple=mined)


# ------------------------------------------------------------------------------------------------ more candidates
def _ntxent_mod(temperature: float | None, **parts: Any) -> nn.Module:
    from pairlab.objectives import NTXent

    mod = nn.Module()
    mod.obj = NTXent(temperature=_t(temperature, 0.1))
    mod.t = _t(temperature, 0.1)
    for k, v in parts.items():
        setattr(mod, k, v)
    return mod


def _claps_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    head = nn.Linear(z.shape[-1], 3).to(torch.float64 if z.dtype == torch.float64 else torch.float32)
    gen = registry.build("candidates", "claps", head=head, temperature=mod.t)
    c = gen(z, labels)
    return mod.obj(c.views_or(z), **c.objective_kwargs())


def _interclr_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """InterCLR over a bank of fixed past features (k-means pseudo-labels), margin weights on the positives."""
    b, k, d = z.shape
    n = 3 * b
    gen = registry.build("candidates", "interclr", num_clusters=2, neg_num=4, pool=8, min_cluster=1,
                         temperature=mod.t, seed=0)
    gen.init_memory(_memory(n, d, torch.float64 if z.dtype == torch.float64 else torch.float32))
    c = gen(z, labels, ids=torch.arange(b) * 3)
    w = registry.build("weights", "positive-margin", temperature=mod.t)
    return mod.obj(c.views_or(z), **c.objective_kwargs(w))


def _neighbours_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    b, k, d = z.shape
    gen = registry.build("candidates", "neighbours", index=_memory(2 * b, d, torch.float64), k=1)
    c = gen(z, labels)
    return mod.obj(c.views_or(z), **c.objective_kwargs())


def _sampler_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NT-Xent on the batch a sampler draws from the ``B`` samples (a fresh seeded sampler per call)."""
    b = z.shape[0]
    idx = torch.as_tensor(mod.draw(b, labels), dtype=torch.long)
    return mod.obj(z[idx])


def _grouped_draw(b: int, labels: torch.Tensor) -> list[int]:
    s = registry.build("candidates", "grouped", groups=[i // 2 for i in range(b)], groups_per_batch=1,
                       per_group=2, fillers_per_group=1, num_batches=1, seed=0)
    return next(iter(s))


def _ipw_draw(b: int, labels: torch.Tensor) -> list[int]:
    cov = torch.linspace(0, 1, b, dtype=torch.float64)
    s = registry.build("weights", "ipw-sampler", covariate=cov, labels=labels, num_samples=b, bins=2, min_count=1,
                       seed=0)
    return list(iter(s))


# ------------------------------------------------------------------------------------------------ more weights
def _adameow(z: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    w = registry.build("weights", "adameow", dim=z.shape[-1], hidden=4)
    return w.to(torch.float64 if z.dtype == torch.float64 else torch.float32)


def _weights_loss(mod: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    w = mod.make(mod.t, z)
    if hasattr(w, "prepare"):
        w.prepare(z.detach())
    if hasattr(w, "set_covariate"):  # a pair covariate that moves with the batch: |label_i - label_j| + view match
        b, k, _ = z.shape
        lab = labels.repeat_interleave(k).to(torch.float64)
        view = torch.arange(k).repeat(b).to(torch.float64)
        w.set_covariate((lab[:, None] - lab[None, :]).abs() + 0.5 * (view[:, None] == view[None, :]))
    return mod.obj(z, weights=w)


def _margin(name: str, nonzero: bool = False, cosine: bool = False, **kw: Any) -> Case:
    why = {} if cosine else {"cosine": "euclidean distances"}
    if nonzero:
        why["half"] = "PML's default reduction mean_nonzero jumps when one pair crosses the margin"
    return Case("objectives", name, _obj(name, **kw), _flat_labels, temperature=False, cosine=cosine,
                half_rtol=None if nonzero else 0.1, why=why)


def _cases() -> list[Case]:
    stoch = "random draws are assigned to anchors in batch order"
    return [
        # ---------------------------------------------------------------- objectives: views
        Case("objectives", "ntxent", _obj("ntxent"), _views),
        Case("objectives", "dcl", _obj("dcl"), _views),
        Case("objectives", "supcon", _obj("supcon"), _views_labels),
        Case("objectives", "mv-infonce", _obj("mv-infonce"), _views, k=3),
        Case("objectives", "mv-dhel", _obj("mv-dhel"), _views, k=3),
        Case("objectives", "soft-supcon", _obj("soft-supcon"), _views_labels),
        Case("objectives", "pmrl", _obj("pmrl"), _views, k=3, gradcheck=False, half_rtol=None,
             why={"gradcheck": "eigh backward is ill-conditioned at near-degenerate spectra (clamped-gap backward)",
                  "half": "spectral loss: no half tolerance stated by the module"}),
        Case("objectives", "cacr", lambda t: registry.build("objectives", "cacr", **(
            {} if t is None else {"tau_pos": t, "tau_neg": t})), _views),
        Case("objectives", "amcl", lambda t: registry.build("objectives", "amcl", dim=8, hidden=16, **(
            {} if t is None else {"fixed_temperature": t})), _views, fixed_dim=8, gradcheck=False,
             why={"gradcheck": "max over heads is non-smooth"}),
        Case("objectives", "groco", lambda t: registry.build("objectives", "groco", topk_neg=3), _views,
             temperature=False, min_batch=5, gradcheck=False, half_rtol=0.1, half_atol=0.1,
             why={"gradcheck": "top-k selection of negatives is piecewise", "temperature": "sorting network"}),
        Case("objectives", "simlap", lambda t: registry.build(
            "objectives", "simlap", num_classes=2, dim=8, gate_in_dim=8, gate_mlp_dim=8, pair_type="identical",
            **({} if t is None else {"temperature": t})), _views_labels, fixed_dim=8, cosine=False,
             why={"cosine": "the gate MLP sees the raw embedding"}),  # "identical": deterministic partner draw
        Case("objectives", "dbpm", _obj("dbpm", num_samples=64), _dbpm),
        # ---------------------------------------------------------------- objectives: pairs
        Case("objectives", "clip", _obj("clip"), _pair),
        Case("objectives", "infonce", _obj("infonce"), _pair),
        Case("objectives", "siglip", _obj("siglip"), _pair),
        Case("objectives", "cwcl", _obj("cwcl"), _cwcl),
        Case("objectives", "hard-contrastive", _obj("hard-contrastive"), _pair),
        Case("objectives", "hard-simple", lambda t: registry.build("objectives", "hard-simple"), _pair,
             temperature=False),
        # ---------------------------------------------------------------- objectives: other inputs
        Case("objectives", "error-contrast", lambda t: registry.build(
            "objectives", "error-contrast", **({} if t is None else {"temp": t})), _error_contrast),
        Case("objectives", "sepclr", _obj("sepclr", beta_s=1.0, beta_reg=1.0, lambda_jem=1.0), _sepclr,
             cosine=False, fixed_dim=8, why={"cosine": "the salient head is not normalised"}),
        Case("objectives", "supremix", _obj("supremix", mix_neg=False, mix_pos=False), _supremix),
        _margin("contrastive-margin", nonzero=True),
        _margin("triplet-margin", nonzero=True, margin=0.2),
        _margin("lifted-structure"),
        _margin("multi-similarity", cosine=True),
        Case("objectives", "circle", lambda t: registry.build("objectives", "circle"), _flat_labels,
             temperature=False, half_rtol=0.1, half_atol=0.5,
             exact=lambda t: registry.build("objectives", "circle", detach_weights=False)),
        # ---------------------------------------------------------------- candidates
        Case("candidates", "queue", _cand_queue, _queue_loss),
        Case("candidates", "mochi", _cand_mochi, _mochi_loss, permutation=False, gradcheck=False,
             why={"permutation": stoch, "gradcheck": "query mixes use the detached query (stop-gradient by design)"}),
        Case("candidates", "ft", _cand_ft, _generator_loss, permutation=False, gradcheck=False,
             why={"permutation": stoch, "gradcheck": "fresh random draws on every call"}),
        Case("candidates", "supremix", _cand_supremix, _supremix_cand_loss, permutation=False, gradcheck=False,
             why={"permutation": stoch, "gradcheck": "fresh random draws on every call"}),
        Case("candidates", "xbm", _cand_xbm, lambda m, z, y: m(z, y), temperature=False, cosine=False,
             half_rtol=0.1, half_atol=0.1, gradcheck=False,
             why={"cosine": "contrastive-margin on euclidean distances",
                  "gradcheck": "the current batch enters the memory detached (official XBM; stop-gradient)"}),
        Case("candidates", "claps", _ntxent_mod, _claps_loss, gradcheck=False, cosine=False, why={
                 "cosine": "the classifier head sees the raw embeddings",
                 "gradcheck": "adversarial pairs are built from the detached embeddings (stop-gradient)"}),
        Case("candidates", "interclr", _ntxent_mod, _interclr_loss, permutation=False, gradcheck=False,
             why={"permutation": "anchors carry dataset ids (memory slots), which do not move with the batch",
                  "gradcheck": "sampled negatives depend on the detached anchors"}),
        Case("candidates", "neighbours", _ntxent_mod, _neighbours_loss, gradcheck=False,
             why={"gradcheck": "retrieved neighbours are constants chosen by the detached anchors (argmax)"}),
        Case("candidates", "grouped", lambda t: _ntxent_mod(t, draw=_grouped_draw), _sampler_loss,
             permutation=False, why={"permutation": "a sampler draws dataset indices; there is no batch to permute"}),
        # ---------------------------------------------------------------- weights
        Case("weights", "ipw-sampler", lambda t: _ntxent_mod(t, draw=_ipw_draw), _sampler_loss,
             permutation=False, why={"permutation": "a sampler draws dataset indices; there is no batch to permute"}),
        Case("weights", "positive-margin", lambda t: _ntxent_mod(t, make=lambda tau, z: registry.build(
            "weights", "positive-margin", temperature=tau)), _weights_loss),
        Case("weights", "calibrated-margin", lambda t: _ntxent_mod(t, make=lambda tau, z: registry.build(
            "weights", "calibrated-margin", temperature=tau)), _weights_loss),
        Case("weights", "inverse-propensity", lambda t: _ntxent_mod(t, make=lambda tau, z: registry.build(
            "weights", "inverse-propensity", bins=3)), _weights_loss, gradcheck=False,
             why={"gradcheck": "W from binned detached scores (piecewise constant)"}),
        Case("weights", "meow", lambda t: _ntxent_mod(t, make=lambda tau, z: registry.build(
            "weights", "meow", num_clusters=(2, 3), niter=5)), _weights_loss, permutation=False, gradcheck=False,
             half_rtol=None,
             why={"permutation": "k-means initialisation draws rows in batch order",
                  "half": "k-means assignments of rounded embeddings may differ (piecewise constant W)",
                  "gradcheck": "cluster assignments of the detached embeddings are piecewise constant"}),
        Case("weights", "adameow", lambda t: _ntxent_mod(t, make=lambda tau, z: _adameow(z)), _weights_loss,
             fixed_dim=8, cosine=False, gradcheck=False,
             why={"cosine": "the weight MLP sees the raw embeddings",
                  "gradcheck": "the learned weights see the detached embeddings (prepare(z.detach()))"}),
        Case("weights", "hardness", _w_hardness, _hardness_loss, gradcheck=False,
             why={"gradcheck": "W comes from detached scores (weights protocol; stop-gradient by design)"}),
        Case("weights", "dbpm", _w_dbpm, _dbpm_w_loss, gradcheck=True),
        # ---------------------------------------------------------------- miners
        Case("miners", "batch-hard", _miner("batch-hard"), _mined_loss, temperature=False, cosine=False,
             half_rtol=None, why={"half": "a half-precision tie flips the mined triplet"}),
        Case("miners", "batch-semi-hard", _miner("batch-semi-hard"), _mined_loss, temperature=False, cosine=False,
             half_rtol=None, why={"half": "a half-precision tie flips the mined triplet"}),
        Case("miners", "batch-easy-hard", _miner("batch-easy-hard"), _mined_loss, temperature=False, cosine=False,
             half_rtol=None, why={"half": "a half-precision tie flips the mined triplet"}),
        Case("miners", "distance-weighted", _miner("distance-weighted", seed=0), _mined_loss, temperature=False,
             cosine=False, permutation=False, half_rtol=None, gradcheck=False,
             why={"permutation": stoch, "half": "stochastic sampling",
                  "gradcheck": "fresh random draws on every call"}),
        Case("miners", "multi-similarity", _miner("multi-similarity"), _mined_loss, temperature=False, cosine=False,
             half_rtol=None, why={"half": "a half-precision tie flips the mined pairs"}),
        Case("miners", "pair-margin", _miner("pair-margin"), _mined_loss, temperature=False, cosine=False,
             half_rtol=None, why={"half": "a half-precision tie flips the mined pairs"}),
    ]


def registered() -> list[str]:
    """Every registered ``kind/name`` of the kinds the property suites cover."""
    return [f"{k}/{n}" for k in KINDS for n in registry.available(k)]


ALL_CASES: dict[str, Case] = {c.id: c for c in _cases()}
# only components present in this checkout (a case may be written before its component lands)
CASES: dict[str, Case] = {k: c for k, c in ALL_CASES.items() if k in set(registered())}


def make_batch(case: Case, b: int, d: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``z [b, K, d]`` (float64 draw, then cast) and labels with every class at least twice."""
    g = torch.Generator().manual_seed(seed)
    d = case.fixed_dim or d
    b = max(b, case.min_batch)
    z = torch.randn(b, case.k, d, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.arange(b) % case.num_classes
    return z, labels
