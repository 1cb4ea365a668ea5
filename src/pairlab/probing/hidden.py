"""Hidden-state extraction from any transformers model (causal LM or encoder) for probing.

``extract_hidden_states(model, tokenizer, texts)`` runs the model in batches with ``output_hidden_states=True``
and pools one vector per text per requested layer:

* ``pooling="last"``: the last non-padding token (CCS on decoders; works for left *and* right padding,
  the position is read from the attention mask);
* ``pooling="mean"``: the attention-masked mean over tokens (sentence-transformers' pooling);
* ``pooling="first"``: the first non-padding token (``[CLS]`` for BERT-style encoders; PA-CCS on encoders).

Layer ``0`` is the embedding output and layer ``i`` the output of block ``i`` (transformers' ``hidden_states``
convention: a 30-block model has 31 layers); negative indices count from the end. States are returned in
float32 on the CPU as ``[L, N, D]``.

Optionally the same forward pass scores the final ``suffix_tokens`` of each text (e.g. the answer of a contrast
prompt): the summed log-probability of those tokens given everything before them — the zero-shot baseline of
Burns et al. comes for free with the hidden states. Decoders only (needs ``logits``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pairlab._validate import check_choice

POOLINGS = ("last", "mean", "first")


@dataclass
class HiddenStates:
    """``states [L, N, D]`` (float32, CPU) for ``layers`` (absolute indices); ``suffix_logprob [N]`` or None."""

    states: torch.Tensor
    layers: list[int]
    suffix_logprob: torch.Tensor | None = None

    def layer(self, index: int) -> torch.Tensor:
        """States of absolute layer ``index``: ``[N, D]``."""
        if index not in self.layers:
            raise ValueError(f"layer {index} was not extracted; available: {self.layers}")
        return self.states[self.layers.index(index)]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``hidden [B, T, D]`` over tokens with ``attention_mask [B, T]`` -> ``[B, D]`` (see module doc)."""
    check_choice("pooling", pooling, POOLINGS)
    mask = attention_mask.to(hidden.device).bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every text needs at least one non-padding token (empty row in attention_mask)")
    b = torch.arange(hidden.shape[0], device=hidden.device)
    pos = torch.arange(hidden.shape[1], device=hidden.device).expand_as(mask)
    if pooling == "last":
        return hidden[b, torch.where(mask, pos, -1).amax(dim=1)]
    if pooling == "first":
        return hidden[b, torch.where(mask, pos, hidden.shape[1]).amin(dim=1)]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1)


def _suffix_logprob(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token) over the last ``k[b]`` non-padding tokens of each row (left or right padding)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    m = mask.bool()
    # rank of each non-pad token counted from the end of the row: 1 for the last one
    from_end = torch.flip(torch.cumsum(torch.flip(m.long(), [1]), 1), [1])
    take = m & (from_end <= k[:, None])
    if bool((take[:, 0]).any()):
        raise ValueError("suffix_tokens covers a text's first token, which has no prediction")
    return (logp * take[:, 1:].to(logp.dtype)).sum(1)


def extract_hidden_states(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    batch_size: int = 16,
    max_length: int | None = None,
    suffix_tokens: int | Sequence[int] | None = None,
    progress: bool | None = None,
) -> HiddenStates:
    """Pooled hidden states of ``texts`` from a transformers ``model`` (causal LM or encoder).

    Args:
        model: a transformers model accepting ``output_hidden_states=True``.
        tokenizer: its tokenizer (needs a pad token for batches > 1).
        texts: the inputs.
        layers: hidden-state indices to keep (0 = embeddings; negative from the end); ``None`` = all.
        pooling: ``"last"``, ``"mean"`` or ``"first"``.
        batch_size: texts per forward pass.
        max_length: truncate longer inputs (``None``: no truncation).
        suffix_tokens: also return the summed log-prob of the last ``k`` tokens of each text (an int for all,
            or one per text); decoders only.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        :class:`HiddenStates` with ``states [L, N, D]``.
    """
    check_choice("pooling", pooling, POOLINGS)
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a sequence of strings")
    if len(texts) == 0:
        raise ValueError("texts is empty")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(texts) > 1 and batch_size > 1 and tokenizer.pad_token is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token) to batch")
    if suffix_tokens is not None:
        ks = [int(suffix_tokens)] * len(texts) if isinstance(suffix_tokens, int) else [int(k) for k in suffix_tokens]
        if len(ks) != len(texts) or min(ks) < 1:
            raise ValueError(f"suffix_tokens must be an int >= 1 or one per text ({len(texts)}), got {suffix_tokens}")
    if progress is None:
        progress = sys.stderr.isatty()
    from rich.progress import track

    device = next(model.parameters()).device
    chunks = [list(range(i, min(i + batch_size, len(texts)))) for i in range(0, len(texts), batch_size)]
    pooled: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    chosen: list[int] | None = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in track(chunks, description="hidden states", disable=not progress, transient=True):
                enc = tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=max_length is not None,
                    max_length=max_length,
                )
                enc = {k: v.to(device) for k, v in enc.items()}
                out = model(**enc, output_hidden_states=True)
                hs = out.hidden_states
                if chosen is None:
                    n = len(hs)
                    req = range(n) if layers is None else layers
                    chosen = []
                    for layer in req:
                        a = int(layer) + n if int(layer) < 0 else int(layer)
                        if not 0 <= a < n:
                            raise ValueError(f"layers must lie in [-{n}, {n}) for this model, got {layer}")
                        chosen.append(a)
                mask = enc["attention_mask"]
                pooled.append(torch.stack([pool(hs[a], mask, pooling).float().cpu() for a in chosen]))
                if suffix_tokens is not None:
                    if getattr(out, "logits", None) is None:
                        raise ValueError("suffix_tokens needs a model that returns logits (a causal LM)")
                    k = torch.tensor([ks[i] for i in idx], device=mask.device)
                    scores.append(_suffix_logprob(out.logits, enc["input_ids"], mask, k).cpu())
    finally:
        model.train(was_training)
    assert chosen is not None
    return HiddenStates(
        states=torch.cat(pooled, dim=1),
        layers=chosen,
        suffix_logprob=torch.cat(scores) if suffix_tokens is not None else None,
    )
