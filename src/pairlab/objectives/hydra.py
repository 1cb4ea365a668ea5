"""Hydra / SimLAP: arbitrary class pairs as positives, contrasted in a gated subspace per pair.

Paper: Wu, Atito, Feng, Mo, Kittler, Awais, "Rethinking Positive Pairs in Contrastive Learning",
arXiv 2410.18200 (v2 renames Hydra to SimLAP). Official code: ``erow/hydra`` (``moco/filter.py``,
``cl/losses.py``), re-implementations in ``erow/vitookit`` and ``erow/FastSSL``.

Each anchor ``i`` (label ``y_i``) draws a partner class ``y2_i`` (``pair_type``: ``"arbitrary"`` = labels of a
random permutation of the batch, default; ``"distinct"``; ``"identical"``). A gate network maps the unordered
class pair to ``g_i = sigmoid(phi((E[y_i] + E[y2_i]) / 2)) in (0, 1)^D`` (``fuse=True``; ``fuse=False``:
``sigmoid(phi(E[y])) * sigmoid(phi(E[y2]))``; ``gate="open"``: ``g = 1``). The gate of anchor ``i`` applies to
the anchor and to every key::

    cos_ij = <z_i * g_i, k_j * g_i> / (||z_i * g_i|| ||k_j * g_i||),     l_ij = cos_ij / tau
    c1_ij = [y_i == y_j],  c2_ij = [y2_i == y_j]  (positives),  negatives: not (c1 or c2)
    loss  = sum_{ij} c2_ij [ logaddexp(l_ij, logsumexp_{negatives} l_i.) - l_ij ] / sum_ij c2_ij   ("global")

Each positive is scored against the negatives only. ``reduction="per_anchor"`` (FastSSL) averages per row
first. A row with no negative contributes 0 (official). Computed without the ``[B, N, D]`` tensor:
``||k_j * g_i||^2 = (k^2) @ (g^2)^T``. Two views: ``1/2 [l(z1, z2) + l(z2, z1)]`` with one shared partner draw
(``K > 2``: mean over ordered view pairs; ``K = 1``: the vitookit single-view form ``l(z, z)``).

Defaults (SimLAP): ``tau = 0.1``, gate ``in_dim=512``, ``mlp_dim=1024``. ``pairlab train`` passes its config's
``temperature`` (0.2, the NT-Xent default) to every objective taking one; ``temperature: null`` in the config
(``--temperature default``) keeps this paper default. Registry name: ``simlap`` only. The registry has no aliases
(a second ``hydra`` registration would be a separate component in ``pairlab list``, the README table and the
reliability cases), so the paper's v1 name ``hydra`` is not registered. Warm-up (``warmup_epochs``, with
:meth:`SimLAP.set_epoch`): embeddings are detached so only the gate learns (official: the MoCo query is
detached; its keys carry no gradient anyway). ``gate_sparsity`` (default 0, off) adds
``lambda * mean(g)``: pairlab's opt-in; no official version puts a sparsity term in the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from pairlab import distributed
from pairlab._validate import check_choice, check_embeddings, check_labels
from pairlab.registry import register
from pairlab.scores import Temperature

PAIR_TYPES = ("arbitrary", "distinct", "identical")
GATES = ("basic", "open")
REDUCTIONS = ("global", "per_anchor")


class ClassPairGate(nn.Module):
    """Gate vectors for class pairs: ``sigmoid(phi((E[a] + E[b]) / 2))`` (official ``BasicGate``).

    ``phi = ReLU, BN(in_dim), Linear(in_dim, mlp_dim), ReLU, BN(mlp_dim), Linear(mlp_dim, dim)``.
    """

    def __init__(self, num_classes: int, dim: int, in_dim: int = 512, mlp_dim: int = 1024, fuse: bool = True):
        super().__init__()
        self.num_classes, self.dim, self.fuse = num_classes, dim, bool(fuse)
        self.embed = nn.Embedding(num_classes, in_dim)
        self.phi = nn.Sequential(
            nn.ReLU(), nn.BatchNorm1d(in_dim), nn.Linear(in_dim, mlp_dim),
            nn.ReLU(), nn.BatchNorm1d(mlp_dim), nn.Linear(mlp_dim, dim),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.fuse:
            return torch.sigmoid(self.phi((self.embed(a) + self.embed(b)) / 2))
        return torch.sigmoid(self.phi(self.embed(a))) * torch.sigmoid(self.phi(self.embed(b)))

    @torch.no_grad()
    def activation(self) -> float:
        """``mean_c sum_k g_k(c, c)``: expected number of open dims per class (eval-mode BN)."""
        was = self.training
        self.eval()
        c = torch.arange(self.num_classes, device=self.embed.weight.device)
        out = float(self(c, c).sum(1).mean())
        self.train(was)
        return out


def gated_cosine(q: torch.Tensor, keys: torch.Tensor, gates: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``cos(q_i * g_i, k_j * g_i)`` for all ``i, j``: ``[B, D] x [N, D] x [B, D] -> [B, N]``, no 3-D tensor."""
    g2 = gates * gates
    num = (q * g2) @ keys.T
    qn = ((q * q) * g2).sum(1).clamp_min(eps * eps).sqrt()
    kn = (g2 @ (keys * keys).T).clamp_min(eps * eps).sqrt()
    return num / (qn[:, None] * kn)


def gated_multipos_loss(
    q: torch.Tensor,
    keys: torch.Tensor,
    gates: torch.Tensor,
    y: torch.Tensor,
    y2: torch.Tensor,
    key_labels: torch.Tensor,
    scale: torch.Tensor | float,
    reduction: str = "global",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Hydra/SimLAP multi-positive loss of one direction (see the module docstring)."""
    logits = gated_cosine(q, keys, gates) * scale
    c1 = y[:, None] == key_labels[None, :]
    c2 = y2[:, None] == key_labels[None, :]
    neg = ~(c1 | c2)
    neg_lse = torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)
    term = torch.logaddexp(logits, neg_lse) - logits
    term = torch.where(c2, term, torch.zeros_like(term))
    n_pos = c2.sum(1)
    if int(n_pos.sum()) == 0:
        raise ValueError("no anchor has a key of its partner class: the Hydra loss is undefined for this batch")
    if reduction == "global":
        loss = term.sum() / n_pos.sum()
    else:
        has = n_pos > 0
        loss = (term.sum(1)[has] / n_pos[has]).mean()
    with torch.no_grad():
        cos = logits / scale
        stats = {"cosine_c2": float(cos[c2].mean())}
        if bool((c1 & ~c2).any()):
            stats["cosine_c1"] = float(cos[c1 & ~c2].mean())
        if bool(neg.any()):
            stats["cosine_neg"] = float(cos[neg].mean())
    return loss, stats


@register(
    "objectives", "simlap", input="views", supervised=True, needs=("set_epoch",), auto_args=("num_classes", "dim"),
    paper="Wu et al. 2024 (Hydra / SimLAP)",
    summary="Arbitrary class pairs as positives in a gated subspace per pair (Hydra / SimLAP)",
)
class SimLAP(nn.Module):
    """Hydra / SimLAP loss with its class-pair gate network (the gate's parameters train with the model).

    Args:
        num_classes: ``C``; dim: embedding dim ``D`` of ``z``.
        temperature: ``tau`` (0.1); learnable_temperature: learn ``1/tau`` (Hydra-MoCo, init 1/20).
        pair_type: ``"arbitrary"`` (default), ``"distinct"`` or ``"identical"``.
        gate: ``"basic"`` (learned) or ``"open"`` (``g = 1``, the ablation).
        fuse, gate_in_dim, gate_mlp_dim: gate network (official True, 512, 1024).
        reduction: ``"global"`` (hydra/vitookit) or ``"per_anchor"`` (FastSSL).
        warmup_epochs: epochs during which only the gate learns (call :meth:`set_epoch`).
        gate_sparsity: weight of the opt-in ``mean(g)`` penalty (0 = off, official).

    Call ``obj(z, labels)`` with ``z: [B, K, D]``; ``partner_labels=`` fixes ``y2`` instead of drawing it.

    Examples:
        >>> loss_fn = SimLAP(num_classes=4, dim=32)
        >>> loss = loss_fn(torch.randn(16, 2, 32), torch.randint(0, 4, (16,)))
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        temperature: float = 0.1,
        pair_type: str = "arbitrary",
        gate: str = "basic",
        fuse: bool = True,
        gate_in_dim: int = 512,
        gate_mlp_dim: int = 1024,
        reduction: str = "global",
        warmup_epochs: int = 0,
        gate_sparsity: float = 0.0,
        learnable_temperature: bool = False,
    ):
        super().__init__()
        for name, v in (("num_classes", num_classes), ("dim", dim), ("gate_in_dim", gate_in_dim),
                        ("gate_mlp_dim", gate_mlp_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.num_classes, self.dim = num_classes, dim
        self.temperature = Temperature(temperature, learnable=learnable_temperature)
        self.pair_type = check_choice("pair_type", pair_type, PAIR_TYPES)
        self.gate_kind = check_choice("gate", gate, GATES)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = warmup_epochs
        self.gate_sparsity = float(gate_sparsity)
        if self.gate_sparsity < 0:
            raise ValueError(f"gate_sparsity must be >= 0, got {gate_sparsity}")
        self.gate = ClassPairGate(num_classes, dim, gate_in_dim, gate_mlp_dim, fuse) if gate == "basic" else None
        self.epoch = warmup_epochs  # no warm-up unless set_epoch is called
        self.last_stats: dict[str, float] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def partners(self, labels: torch.Tensor) -> torch.Tensor:
        """Draw the partner classes ``y2`` for ``labels [B]`` according to ``pair_type``."""
        if self.pair_type == "identical":
            return labels
        if self.pair_type == "arbitrary":
            return labels[torch.randperm(labels.shape[0], device=labels.device)]
        shift = torch.randint(1, self.num_classes, labels.shape, device=labels.device) if self.num_classes > 1 \
            else torch.zeros_like(labels)
        return (labels + shift) % self.num_classes

    def gates(self, y: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return torch.ones(y.shape[0], self.dim, device=y.device)
        return self.gate(y, y2)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, *, partner_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_embeddings("z", z, 3, "[B, K, D]")
        b, k, d = z.shape
        if d != self.dim:
            raise ValueError(f"z must have embedding dim {self.dim} (the gate's dim), got shape {tuple(z.shape)}")
        if labels is None:
            raise ValueError("labels is required for SimLAP: an integer tensor of shape [B]")
        y = check_labels("labels", labels, b, self.num_classes).to(z.device).long()
        y2 = self.partners(y) if partner_labels is None else \
            check_labels("partner_labels", partner_labels, b, self.num_classes).to(z.device).long()
        g = self.gates(y, y2).to(torch.float64 if z.dtype == torch.float64 else torch.float32)
        x = z.to(g.dtype)
        if self.epoch < self.warmup_epochs:
            x = x.detach()
        scale = self.temperature.scale()
        y_all = distributed.gather_no_grad(y)
        pairs_ = [(0, 0)] if k == 1 else [(a, c) for a in range(k) for c in range(k) if a != c]
        total = x.new_zeros(())
        stats: dict[str, float] = {}
        for a, c in pairs_:
            keys = distributed.gather_with_grad(x[:, c])
            loss, stats = gated_multipos_loss(x[:, a], keys, g, y, y2, y_all, scale, self.reduction)
            total = total + loss
        total = total / len(pairs_)
        stats["gate_open_dims"] = float(g.detach().sum(1).mean())
        if self.gate_sparsity > 0:
            total = total + self.gate_sparsity * g.mean()
        self.last_stats = stats
        return total
