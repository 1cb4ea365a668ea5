"""Sequence log-probability of a response under a causal LM — the shared primitive of DPO, D2O, minimal-pair
scoring and LM-labelled preferences.

``logp(y | x) = Σ_{t in response} log π(y_t | x, y_<t)`` (``reduce="sum"``, the DPO convention) or its mean over
response tokens (``reduce="mean"``, length-normalised; summed log-probs favour short responses).

The response mask marks the tokens to score in ``input_ids`` (prompt and padding are 0). Logits at position
``t`` predict token ``t + 1``, so the first token of a sequence is never scored.
"""

from __future__ import annotations

from typing import Any

import torch

from pairlab._validate import check_choice, check_tensor

REDUCTIONS = ("sum", "mean")


def _check_ids_mask(input_ids: object, response_mask: object) -> tuple[torch.Tensor, torch.Tensor]:
    ids = check_tensor("input_ids", input_ids)
    mask = check_tensor("response_mask", response_mask)
    if ids.dtype.is_floating_point or ids.ndim != 2:
        raise ValueError(f"input_ids must be an integer tensor [B, T], got {ids.dtype} {tuple(ids.shape)}")
    if mask.shape != ids.shape:
        raise ValueError(f"response_mask must have the shape of input_ids {tuple(ids.shape)}, got {tuple(mask.shape)}")
    mask = mask.bool()
    if bool(mask[:, 0].any()):
        raise ValueError("response_mask marks position 0, which no logit predicts; prepend the prompt (or a BOS)")
    return ids, mask


def sequence_logprob_from_logits(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor, reduce: str = "sum"
) -> torch.Tensor:
    """Response log-probability from precomputed ``logits [B, T, V]``; returns ``[B]`` (float32 or wider).

    A row with an empty response raises (its mean would be undefined and its sum silently 0).
    """
    check_choice("reduce", reduce, REDUCTIONS)
    ids, mask = _check_ids_mask(input_ids, response_mask)
    lg = check_tensor("logits", logits)
    if lg.ndim != 3 or lg.shape[:2] != ids.shape:
        raise ValueError(f"logits must have shape [B, T, V] with [B, T] = {tuple(ids.shape)}, got {tuple(lg.shape)}")
    n_tok = mask.sum(1)
    if bool((n_tok == 0).any()):
        rows = torch.nonzero(n_tok == 0).flatten()[:5].tolist()
        raise ValueError(f"response_mask selects no token in rows {rows}")
    lg = lg[:, :-1].to(torch.promote_types(lg.dtype, torch.float32))
    tok = torch.log_softmax(lg, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    total = (tok * mask[:, 1:].to(tok.dtype)).sum(1)
    return total if reduce == "sum" else total / n_tok.to(total.dtype)


def sequence_logprob(
    model: Any,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    reduce: str = "sum",
) -> torch.Tensor:
    """Run ``model`` on ``input_ids [B, T]`` and return the response log-probability ``[B]`` (differentiable).

    Wrap in ``torch.no_grad()`` for reference models. ``attention_mask`` defaults to all ones; with left padding
    pass it (position ids are derived from it so padded and unpadded rows score the same).
    """
    ids, _ = _check_ids_mask(input_ids, response_mask)
    if attention_mask is None:
        attention_mask = torch.ones_like(ids)
    pos = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=attention_mask, position_ids=pos).logits
    return sequence_logprob_from_logits(logits, ids, response_mask, reduce)
