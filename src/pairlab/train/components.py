"""Candidates and weights components inside ``pairlab train``: building them and their lifecycle.

Every registered component of kind ``candidates`` / ``weights`` (issue #4) is driven through one protocol;
what a component needs is declared by the component (optional methods and registry meta), not special-cased
by name here::

    build      constructor arguments: ``candidates_args`` / ``weights_args``, then the run's defaults for the
               parameters the constructor takes (``dim`` = model.proj_dim, ``num_samples``, ``max_epochs`` =
               epochs, ``loss`` = the run's objective, e.g. XBM), then registry meta ``train_defaults`` (small-data
               values a component declares for the loop, e.g. InterCLR's C/neg_num/pool of the spec)
    setup(ctx) optional, once before the first step (also on resume, before the saved state is loaded):
               ``ctx`` is a :class:`SetupContext` (model at its initial weights, training inputs, labels,
               num_samples, dim, objective, ``encode_dataset()``, ``raw_features()``)
    per step   candidates: ``c = gen(z, labels, ids=, epoch=)``; partition weights: ``w.prepare(c.views_or(z),
               c.extra, labels, ids=, epoch=)`` when it has ``prepare``; then
               ``loss = obj(c.views_or(z), labels=labels, **c.objective_kwargs(w))``
               anchor weights (meta ``applies_to="anchor"``, DBPM): per-sample losses ``l`` of the same
               partition (:func:`pairlab.weights.base.per_sample_views_loss`), ``w.set_epoch(epoch)`` when the
               epoch changes, ``w.record(ids, l)``, ``loss = mean(w(ids, l) * l)``
    update     candidates: ``gen.update(z.detach(), labels, ids=, epoch=)`` after the optimiser step

Components that cannot run in the image/vector loop fail at build time with a message that says how to use
them: samplers (registry meta ``role="sampler"`` or ``applies_to="pairs"``: ``grouped``, ``ipw-sampler``) and
regression mixtures (``input="regression"``: ``supremix``). Trainable components (AdaMEOW's MLP) are optimised
with the model (:meth:`PairComponents.parameters`); component state is checkpointed
(:meth:`PairComponents.state_dict`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pairlab import registry

NOT_IN_LOOP = {
    "sampler": "is a batch sampler, not a per-step component: build it with pairlab.registry.build and pass it to a "
               "DataLoader as batch_sampler= (it composes batches; the loss stays the objective's)",
    "pairs": "is a pair sampler over a fixed list of pairs: pass it to a DataLoader as sampler= in your own loop",
    "regression": "takes regression targets (SupReMix mixtures): use it from Python with a regression objective",
}


@dataclass
class SetupContext:
    """What :meth:`setup` of a component may use (once, before training).

    Attributes:
        model: the encoder at its initial (random-init, seeded) weights; ``encode_dataset`` uses it.
        x: the training inputs ``[N, ...]`` as stored (uint8 images or float vectors), not augmented.
        labels: class labels ``[N]`` or ``None`` (unlabelled data: all ``-1``).
        num_samples: ``N``; ``dim``: the embedding dim ``D`` (``model.proj_dim``).
        objective: the run's objective; seed: the run's seed; device: where the model lives.
    """

    model: nn.Module
    x: torch.Tensor
    labels: torch.Tensor | None
    num_samples: int
    dim: int
    objective: nn.Module | None = None
    seed: int = 0
    device: str | torch.device = "cpu"
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def encode_dataset(self) -> torch.Tensor:
        """``[N, D]`` embeddings of every training input (no augmentation, eval mode, no grad), computed once."""
        if "z" not in self._cache:
            from pairlab.train.evaluate import extract

            was = self.model.training
            self.model.eval()
            try:
                self._cache["z"] = extract(self.model, self.x, batch=512, device=str(self.device))
            finally:
                self.model.train(was)
        return self._cache["z"]

    def raw_features(self) -> torch.Tensor:
        """``[N, P]`` flattened inputs as float (pixels in [0, 1] for images)."""
        if "raw" not in self._cache:
            from pairlab.data.datasets import to_float

            self._cache["raw"] = to_float(self.x).flatten(1).float()
        return self._cache["raw"]


def _build(kind: str, name: str, args: dict[str, Any], defaults: dict[str, Any]) -> Any:
    entry = registry.get(kind, name)
    for key in ("role", "applies_to", "input"):
        why = NOT_IN_LOOP.get(str(entry.meta.get(key)))
        if why is not None:
            raise ValueError(f"{kind[:-1]} {name!r} {why}; pairlab train cannot use it as --{kind}")
    kwargs = dict(args)
    try:
        params = inspect.signature(entry.obj).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}
    for key, value in {**defaults, **dict(entry.meta.get("train_defaults", {}))}.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    try:
        return entry.obj(**kwargs)
    except TypeError as e:
        shown = {k: (type(v).__name__ if isinstance(v, nn.Module) else v) for k, v in kwargs.items()}
        raise ValueError(f"cannot build {kind[:-1]} {name!r} with {kind}_args {shown}: {e}") from None


class _QueueCandidates(nn.Module):
    """The MoCo queue as a candidates component: its rows are extra negatives; view 0 is enqueued."""

    def __init__(self, queue: nn.Module):
        super().__init__()
        self.queue = queue

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any):
        from pairlab.candidates.base import Candidates

        extra = self.queue.negatives().to(z.device, z.dtype)
        lab = self.queue.negative_labels().to(z.device) if self.queue.with_labels else None
        return Candidates(extra=extra, extra_labels=lab)

    def update(self, z: torch.Tensor, labels: torch.Tensor | None = None, **context: Any) -> None:
        self.queue.enqueue(z[:, 0].detach(), labels if self.queue.with_labels else None)


def build_components(
    candidates: str | None, candidates_args: dict[str, Any], weights: str | None, weights_args: dict[str, Any],
    defaults: dict[str, Any],
) -> tuple[nn.Module | None, nn.Module | None]:
    """The candidates generator and weights component of a run (``None`` when not set), see the module doc."""
    gen = None
    if candidates is not None:
        gen = _build("candidates", candidates, candidates_args, defaults)
        from pairlab.candidates.queue import Queue

        if isinstance(gen, Queue):
            gen = _QueueCandidates(gen)
        elif not callable(getattr(gen, "forward", None)) or not hasattr(gen, "update"):
            raise ValueError(f"candidates {candidates!r} is not a per-step generator usable by the training loop")
    w = None if weights is None else _build("weights", weights, weights_args, defaults)
    return gen, w


def weights_target(w: Any) -> str:
    """``"partition"`` or ``"anchor"`` from the registry meta ``applies_to`` of a weights component."""
    registry.discover()
    for entry in registry._REGISTRY["weights"].values():
        if isinstance(entry.obj, type) and type(w) is entry.obj:
            return str(entry.meta.get("applies_to", "partition"))
    return "partition"


class PairComponents(nn.Module):
    """A run's candidates generator and weights component with the loop lifecycle (module docstring)."""

    def __init__(self, gen: nn.Module | None, weights: nn.Module | None):
        super().__init__()
        self.gen, self.weights = gen, weights
        self.target = None if weights is None else weights_target(weights)
        self._epoch: int | None = None
        self.last_stats: dict[str, float] = {}

    @property
    def active(self) -> bool:
        return self.gen is not None or self.weights is not None

    def setup(self, ctx: SetupContext) -> None:
        for c in (self.gen, self.weights):
            if c is not None and callable(getattr(c, "setup", None)):
                c.setup(ctx)

    def loss(self, obj: nn.Module, kind: str, z: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor,
             epoch: int) -> torch.Tensor:
        """One step's loss with the components (``z [B, K, D]`` with grad, ``ids [B]`` dataset indices)."""
        from pairlab.candidates.base import Candidates
        from pairlab.train.loop import call_objective

        ctx = {"ids": ids, "epoch": epoch}
        c = self.gen(z, labels, **ctx) if self.gen is not None else Candidates()
        zz = c.views_or(z)
        stats = {f"cand_{k}": float(v) for k, v in c.stats.items()}
        stats["cand_extra"] = float(c.num_extra)
        stats["cand_views"] = float(zz.shape[1])
        w = self.weights
        if w is not None and self.target == "partition" and callable(getattr(w, "prepare", None)):
            w.prepare(zz, c.extra, labels, **ctx)
        if w is not None and self.target == "anchor":
            return self._anchor_loss(obj, zz, labels, ids, epoch, c, stats)
        kw = c.objective_kwargs(w if self.target == "partition" else None)
        loss = call_objective(obj, kind, zz, labels, index=ids, epoch=epoch, **kw)
        self.last_stats = stats
        return loss

    def _anchor_loss(self, obj: nn.Module, zz: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, epoch: int,
                     c: Any, stats: dict[str, float]) -> torch.Tensor:
        """Anchor weights (DBPM): ``mean_i w_i l_i`` with ``l`` the objective's per-sample losses."""
        from pairlab import distributed
        from pairlab.objectives.dcl import DCL
        from pairlab.objectives.infonce import NTXent, SupCon
        from pairlab.weights.base import per_sample_views_loss

        if not isinstance(obj, (NTXent, SupCon, DCL)) or distributed.is_active():
            raise ValueError(f"anchor weights ({type(self.weights).__name__}) need per-sample losses: pairlab train "
                             "computes them for ntxent, supcon and dcl on one process; got "
                             f"{type(obj).__name__}" + (" under torch.distributed" if distributed.is_active() else ""))
        w = self.weights
        if self._epoch != epoch and callable(getattr(w, "set_epoch", None)):
            w.set_epoch(int(epoch))
            self._epoch = epoch
        l = per_sample_views_loss(  # noqa: E741
            zz, labels if isinstance(obj, SupCon) else None, weights=c.weights() if c.num_extra else None,
            extra=c.extra if c.num_extra else None, temperature=1.0 / float(obj.temperature.scale()),
            similarity=obj.similarity, decoupled=isinstance(obj, DCL),
        )
        if self.training and callable(getattr(w, "record", None)):
            w.record(ids, l)
        aw = w(ids, l)
        stats.update({"anchor_weight_mean": float(aw.mean()), "anchor_flagged": float((aw != 1).sum())})
        self.last_stats = stats
        return (aw * l).mean()

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, epoch: int) -> None:
        if self.gen is not None:
            self.gen.update(z.detach(), labels, ids=ids, epoch=epoch)
