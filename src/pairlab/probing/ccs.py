"""CCS: Contrast-Consistent Search (Burns, Ye, Klein, Steinhardt, "Discovering Latent Knowledge in Language
Models Without Supervision", ICLR 2023; code ``collin-burns/discovering_latent_knowledge``, ``utils.py::CCS``).

For each binary question build a contrast pair ``x+ = q ⊕ answer1`` and ``x- = q ⊕ answer2``, take one hidden
vector per input (``h+``, ``h-`` of shape ``[N, D]``), **centre each set by its own mean** (this removes the
constant answer-suffix direction; without it the probe latches onto the suffix and gets chance accuracy),
and fit an unsupervised probe ``p(h) = sigmoid(w·h + b)`` (or an MLP ``D -> hidden -> ReLU -> 1``) with::

    L = mean(min(p+, p-)^2) + mean((p+ - (1 - p-))^2)          # confidence + consistency

Prediction: ``c = 0.5 * (p(h+) + 1 - p(h-))`` is the probability that ``x+`` is the true one.

Defaults follow Burns' code: linear probe, ``ntries=10`` random restarts keeping the lowest final loss,
``nepochs=1000`` full-batch AdamW steps, ``lr=1e-3``, ``weight_decay=0.01``, no variance normalisation
(``var_normalize=True`` divides by the per-set std + 1e-6, as PA-CCS does). PA-CCS (Sadiekh et al.) uses
``nepochs=1500, lr=0.015`` and an optional supervised term ``lambda_cls * BCE(c, y)`` (``lambda_cls``;
default 0 = pure CCS).

Deviations / choices, each with a flag:

* ``center="train"`` (default): test sets are centred with the *training* means. Burns' ``get_acc``
  re-centres the test set with its own mean (transductive); reproduce with ``center="self"``.
* The sign of the direction is unidentifiable: Burns reports ``max(acc, 1 - acc)``. Here the probe keeps its
  sign **unresolved** (``sign == 0``) until :meth:`CCSProbe.orient` is called with a handful of labelled
  pairs; :meth:`CCSProbe.evaluate` always reports the sign-free accuracy and reports the oriented accuracy
  only when the sign is resolved (else ``None``).
* Restarts are trained together as one batched parameter tensor (AdamW is per-element, so this equals
  ``ntries`` independent optimisers) — identical numbers, ~``ntries`` times faster.

Examples:
    >>> import torch
    >>> from pairlab.probing import CCSProbe
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.randint(0, 2, (200,), generator=g) * 2 - 1
    >>> d = torch.randn(32, generator=g)
    >>> h_pos = torch.randn(200, 32, generator=g) + 3 * truth[:, None] * d
    >>> h_neg = torch.randn(200, 32, generator=g) - 3 * truth[:, None] * d
    >>> probe = CCSProbe(nepochs=200, ntries=3).fit(h_pos, h_neg)
    >>> probe.evaluate(h_pos, h_neg, (truth > 0).long()).sign_free_accuracy > 0.95
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pairlab._validate import check_choice, check_embeddings, check_labels, check_positive

PROBES = ("linear", "mlp")
CENTERS = ("train", "self")


def ccs_loss(p_pos: torch.Tensor, p_neg: torch.Tensor) -> torch.Tensor:
    """CCS loss ``mean(min(p+, p-)^2) + mean((p+ - (1 - p-))^2)`` over the last dim.

    Args:
        p_pos, p_neg: probe probabilities of the two members, ``[..., N]`` (a leading dim = restarts).
    Returns:
        ``[...]`` loss per restart (a scalar for 1-D inputs).
    """
    confidence = torch.minimum(p_pos, p_neg).pow(2).mean(-1)
    consistency = (p_pos - (1.0 - p_neg)).pow(2).mean(-1)
    return confidence + consistency


@dataclass
class SetStats:
    """Per-set normalisation statistics (each member set of the contrast pair has its own)."""

    mean_pos: torch.Tensor
    mean_neg: torch.Tensor
    std_pos: torch.Tensor | None = None
    std_neg: torch.Tensor | None = None


def set_stats(h_pos: torch.Tensor, h_neg: torch.Tensor, var_normalize: bool = False, per_set: bool = True) -> SetStats:
    """Means (and stds when ``var_normalize``) of each set separately, in float32 or wider.

    ``per_set=False`` gives both sets the statistics of their union (ablation only).
    """
    hp, hn = _upcast(h_pos), _upcast(h_neg)
    if not per_set:
        both = torch.cat([hp, hn])
        return set_stats(both, both, var_normalize)
    if var_normalize:
        if hp.shape[0] < 2:
            raise ValueError(f"var_normalize needs at least 2 pairs, got {hp.shape[0]}")
        return SetStats(hp.mean(0), hn.mean(0), hp.std(0), hn.std(0))
    return SetStats(hp.mean(0), hn.mean(0))


def ccs_normalize(h_pos: torch.Tensor, h_neg: torch.Tensor, stats: SetStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (and optionally scale) each set with ``stats``: ``(h - mu_set) / (std_set + 1e-6)``."""
    hp = _upcast(h_pos) - stats.mean_pos
    hn = _upcast(h_neg) - stats.mean_neg
    if stats.std_pos is not None and stats.std_neg is not None:
        hp = hp / (stats.std_pos + 1e-6)
        hn = hn / (stats.std_neg + 1e-6)
    return hp, hn


def _upcast(h: torch.Tensor) -> torch.Tensor:
    return h.float() if h.dtype in (torch.float16, torch.bfloat16) else h


@dataclass
class CCSScore:
    """Evaluation of a CCS probe on labelled pairs.

    ``sign_free_accuracy = max(acc, 1 - acc)`` (Burns' metric, always available); ``accuracy`` is the
    accuracy with the resolved sign, ``None`` when the sign is still ambiguous (``sign_resolved=False``).
    """

    sign_free_accuracy: float
    accuracy: float | None
    sign_resolved: bool
    loss: float
    n: int


class CCSProbe:
    """Unsupervised contrast-consistent probe with restarts (see the module docstring for the method).

    Args:
        probe: ``"linear"`` (default) or ``"mlp"`` (``D -> hidden -> ReLU -> 1``).
        hidden: MLP width (Burns: 100).
        ntries: random restarts; the one with the lowest final training loss is kept.
        nepochs: full-batch optimisation steps per restart.
        lr, weight_decay: AdamW settings.
        var_normalize: also divide each set by its std (+1e-6).
        center: ``"train"`` centres evaluation sets with the training statistics; ``"self"`` with their own.
        lambda_cls: weight of the optional supervised term ``BCE(c, y)`` (PA-CCS); 0 = unsupervised.
        seed: seed of the restarts' initialisation.
        per_set: centre each set by its own mean (the method). ``False`` subtracts the pooled mean of both sets
            instead — an ablation that shows why per-set centring matters (the probe then finds the suffix).

    Attributes (after :meth:`fit`): ``loss_`` (kept restart's final loss), ``losses_`` (all restarts),
    ``stats_`` (training :class:`SetStats`), ``sign`` (+1/-1 once oriented, 0 = unresolved),
    ``direction`` (linear probe weight in the normalised space, ``[D]``).
    """

    def __init__(
        self,
        probe: str = "linear",
        hidden: int = 100,
        ntries: int = 10,
        nepochs: int = 1000,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        var_normalize: bool = False,
        center: str = "train",
        lambda_cls: float = 0.0,
        seed: int = 0,
        per_set: bool = True,
    ):
        self.probe = check_choice("probe", probe, PROBES)
        self.center = check_choice("center", center, CENTERS)
        if int(hidden) < 1 or int(ntries) < 1 or int(nepochs) < 1:
            raise ValueError(f"hidden, ntries, nepochs must be >= 1, got {hidden}, {ntries}, {nepochs}")
        self.hidden, self.ntries, self.nepochs = int(hidden), int(ntries), int(nepochs)
        self.lr = check_positive("lr", lr)
        if weight_decay < 0 or lambda_cls < 0:
            raise ValueError(f"weight_decay and lambda_cls must be >= 0, got {weight_decay}, {lambda_cls}")
        self.weight_decay, self.lambda_cls = float(weight_decay), float(lambda_cls)
        self.var_normalize = bool(var_normalize)
        self.seed = int(seed)
        self.per_set = bool(per_set)
        self.sign = 0
        self.orientation_agreement: float | None = None
        self._params: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ model
    def _init(self, d: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        t = self.ntries

        def unif(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:  # nn.Linear's default init
            bound = 1.0 / math.sqrt(fan_in)
            return ((torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound).to(dtype)

        if self.probe == "linear":
            return {"w": unif((t, d), d), "b": unif((t,), d)}
        h = self.hidden
        return {"w1": unif((t, d, h), d), "b1": unif((t, h), d), "w2": unif((t, h), h), "b2": unif((t,), h)}

    @staticmethod
    def _forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Probe logits for every restart: ``x [N, D] -> [T, N]``."""
        if "w" in params:
            return params["w"] @ x.T + params["b"][:, None]
        t, d, h = params["w1"].shape
        # one 2-D matmul for all restarts ([N, D] @ [D, T*H]); batched 3-D matmuls are far slower on busy CPUs
        hid = torch.relu((x @ params["w1"].permute(1, 0, 2).reshape(d, t * h)).view(-1, t, h) + params["b1"])
        return (hid * params["w2"]).sum(-1).T + params["b2"][:, None]

    def _check_pair(self, h_pos: object, h_neg: object) -> tuple[torch.Tensor, torch.Tensor]:
        hp = check_embeddings("h_pos", h_pos, 2, "[N, D]")
        hn = check_embeddings("h_neg", h_neg, 2, "[N, D]")
        if hp.shape != hn.shape:
            raise ValueError(f"h_pos and h_neg must have the same shape [N, D], got {tuple(hp.shape)} and "
                             f"{tuple(hn.shape)}")
        return hp, hn

    # ------------------------------------------------------------------ API
    def fit(self, h_pos: torch.Tensor, h_neg: torch.Tensor, labels: torch.Tensor | None = None) -> CCSProbe:
        """Fit on the contrast pair sets ``h_pos, h_neg: [N, D]`` (labels only used when ``lambda_cls > 0``)."""
        hp, hn = self._check_pair(h_pos, h_neg)
        if self.lambda_cls > 0:
            if labels is None:
                raise ValueError("labels [N] are required when lambda_cls > 0")
            y = check_labels("labels", labels, hp.shape[0], num_classes=2).to(hp.device)
        if hp.shape[0] < 2:
            raise ValueError(f"CCS needs at least 2 pairs to centre each set, got {hp.shape[0]}")
        self.stats_ = set_stats(hp, hn, self.var_normalize, self.per_set)
        xp, xn = ccs_normalize(hp, hn, self.stats_)
        params = {k: v.to(xp.device).requires_grad_(True) for k, v in self._init(xp.shape[1], xp.dtype).items()}
        opt = torch.optim.AdamW(list(params.values()), lr=self.lr, weight_decay=self.weight_decay)
        with torch.enable_grad():
            for _ in range(self.nepochs):
                opt.zero_grad(set_to_none=True)
                pp, pn = torch.sigmoid(self._forward(params, xp)), torch.sigmoid(self._forward(params, xn))
                losses = ccs_loss(pp, pn)
                if self.lambda_cls > 0:
                    c = 0.5 * (pp + 1.0 - pn)
                    target = y.to(c.dtype).expand_as(c)
                    losses = losses + self.lambda_cls * F.binary_cross_entropy(c, target, reduction="none").mean(-1)
                losses.sum().backward()
                opt.step()
        with torch.no_grad():  # final loss of each restart, after the last step
            pp, pn = torch.sigmoid(self._forward(params, xp)), torch.sigmoid(self._forward(params, xn))
            final = ccs_loss(pp, pn)
        best = int(torch.argmin(final))
        self.losses_ = final.detach().cpu()
        self.loss_ = float(final[best])
        self._params = {k: v.detach()[best : best + 1].clone() for k, v in params.items()}
        self.sign = 0
        self.orientation_agreement = None
        return self

    @property
    def direction(self) -> torch.Tensor:
        """Weight vector of the linear probe in the normalised space, ``[D]``."""
        self._require_fit()
        if "w" not in self._params:
            raise ValueError("direction is only defined for probe='linear'")
        return self._params["w"][0]

    def _require_fit(self) -> None:
        if self._params is None:
            raise RuntimeError("CCSProbe is not fitted: call fit(h_pos, h_neg) first")

    def probe_outputs(self, h_pos: torch.Tensor, h_neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probe probabilities ``p(h+)``, ``p(h-)``: ``[N]`` each, after the configured centring."""
        self._require_fit()
        hp, hn = self._check_pair(h_pos, h_neg)
        stats = self.stats_ if self.center == "train" else set_stats(hp, hn, self.var_normalize, self.per_set)
        xp, xn = ccs_normalize(hp, hn, stats)
        with torch.no_grad():
            return torch.sigmoid(self._forward(self._params, xp))[0], torch.sigmoid(self._forward(self._params, xn))[0]

    def predict_proba(self, h_pos: torch.Tensor, h_neg: torch.Tensor) -> torch.Tensor:
        """``c = 0.5 (p(h+) + 1 - p(h-))``: probability that ``x+`` is the true member, ``[N]``.

        Oriented when :attr:`sign` is -1 (``1 - c``); with an unresolved sign (0) the raw ``c`` is returned,
        whose direction is arbitrary — check :attr:`sign_resolved`.
        """
        pp, pn = self.probe_outputs(h_pos, h_neg)
        c = 0.5 * (pp + 1.0 - pn)
        return 1.0 - c if self.sign < 0 else c

    @property
    def sign_resolved(self) -> bool:
        return self.sign != 0

    def orient(self, h_pos: torch.Tensor, h_neg: torch.Tensor, labels: torch.Tensor) -> CCSProbe:
        """Resolve the sign from a handful of labelled pairs (``labels[i] = 1`` when ``x+_i`` is true).

        The sign is the one that agrees with the majority; an exact tie leaves it unresolved (``sign = 0``).
        ``orientation_agreement`` records the fraction of the labelled pairs the raw probe agreed with.
        """
        self._require_fit()
        y = check_labels("labels", labels, h_pos.shape[0], num_classes=2)
        self.sign = 0
        c = self.predict_proba(h_pos, h_neg)
        agree = float(((c > 0.5).long().cpu() == y.cpu()).double().mean())
        self.orientation_agreement = agree
        self.sign = 1 if agree > 0.5 else (-1 if agree < 0.5 else 0)
        return self

    def evaluate(self, h_pos: torch.Tensor, h_neg: torch.Tensor, labels: torch.Tensor) -> CCSScore:
        """Sign-free accuracy (always), oriented accuracy (only when the sign is resolved) and CCS loss."""
        y = check_labels("labels", labels, h_pos.shape[0], num_classes=2).cpu()
        pp, pn = self.probe_outputs(h_pos, h_neg)
        raw = (0.5 * (pp + 1.0 - pn)).cpu()
        acc_raw = float(((raw > 0.5).long() == y).double().mean())
        acc = None
        if self.sign_resolved:
            acc = acc_raw if self.sign > 0 else 1.0 - acc_raw
        return CCSScore(max(acc_raw, 1.0 - acc_raw), acc, self.sign_resolved, float(ccs_loss(pp, pn)), int(y.numel()))

