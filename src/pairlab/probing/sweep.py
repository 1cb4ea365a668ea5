"""Per-layer CCS sweep: fit one :class:`~pairlab.probing.ccs.CCSProbe` per layer on a training split, orient it
with a handful of labelled training pairs (optional), and evaluate it on a test split.

This is the driver of Burns et al.'s layer plots and of PA-CCS's ``train_ccs_on_hidden_states``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pairlab._validate import check_labels
from pairlab.probing.ccs import CCSProbe


def _index(name: str, idx: object, n: int) -> torch.Tensor:
    t = torch.as_tensor(idx, dtype=torch.long)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D index, got shape {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= n:
        raise ValueError(f"{name} must index [0, {n}), got values in [{int(t.min())}, {int(t.max())}]")
    return t


def ccs_layer_sweep(
    states_pos: torch.Tensor,
    states_neg: torch.Tensor,
    labels: torch.Tensor,
    train_idx: Sequence[int] | torch.Tensor,
    test_idx: Sequence[int] | torch.Tensor,
    orient_idx: Sequence[int] | torch.Tensor | None = None,
    layer_names: Sequence[int] | None = None,
    **probe_kwargs: Any,
) -> list[dict[str, Any]]:
    """Fit and evaluate CCS on every layer.

    Args:
        states_pos, states_neg: ``[L, N, D]`` hidden states of ``x+`` / ``x-``.
        labels: ``[N]`` in {0, 1}, 1 when ``x+`` is true (only ``orient_idx`` and ``test_idx`` rows are read).
        train_idx, test_idx: row indices of the two splits (the probe never sees training labels).
        orient_idx: labelled rows used to resolve the sign (a handful, e.g. 8 of the training split);
            ``None`` leaves the sign unresolved and reports only the sign-free accuracy.
        layer_names: names for the ``L`` layers in the output (default ``0..L-1``).
        **probe_kwargs: passed to :class:`CCSProbe`.

    Returns:
        One dict per layer: ``layer``, ``sign_free_accuracy``, ``accuracy`` (None when unresolved),
        ``sign_resolved``, ``orientation_agreement``, ``train_loss``, ``probe`` (the fitted probe).
    """
    if states_pos.ndim != 3 or states_pos.shape != states_neg.shape:
        raise ValueError(
            f"states_pos and states_neg must both have shape [L, N, D], got {tuple(states_pos.shape)} and "
            f"{tuple(states_neg.shape)}"
        )
    n_layers, n = states_pos.shape[:2]
    y = check_labels("labels", labels, n, num_classes=2)
    tr, te = _index("train_idx", train_idx, n), _index("test_idx", test_idx, n)
    ori = None if orient_idx is None else _index("orient_idx", orient_idx, n)
    names = list(range(n_layers)) if layer_names is None else [int(x) for x in layer_names]
    if len(names) != n_layers:
        raise ValueError(f"layer_names must have {n_layers} entries, got {len(names)}")
    rows = []
    for li in range(n_layers):
        hp, hn = states_pos[li], states_neg[li]
        probe = CCSProbe(**probe_kwargs)
        probe.fit(hp[tr], hn[tr], labels=y[tr] if probe.lambda_cls > 0 else None)
        if ori is not None:
            probe.orient(hp[ori], hn[ori], y[ori])
        score = probe.evaluate(hp[te], hn[te], y[te])
        rows.append(
            {
                "layer": names[li],
                "sign_free_accuracy": score.sign_free_accuracy,
                "accuracy": score.accuracy,
                "sign_resolved": score.sign_resolved,
                "orientation_agreement": probe.orientation_agreement,
                "train_loss": probe.loss_,
                "probe": probe,
            }
        )
    return rows
