"""The fusion rule of :mod:`pairlab.decoding.fusion` as a transformers ``LogitsProcessor``.

``model.generate`` decodes the *main* input (e.g. context ⊕ question). At each step the processor runs the same
model on the *auxiliary* input (e.g. the question alone, or a transformed image's prompt) followed by the tokens
generated so far, with its own KV cache, and replaces the main scores by the fused scores. Both branches
therefore share the generated prefix, as CAD/AdaCAD/RITUAL require. The weight used at each step is recorded in
``processor.alphas`` (one ``[B]`` tensor per step).

Usage::

    proc = ContrastiveLogitsProcessor(model, aux_input_ids, aux_attention_mask, LogitFusion.adacad())
    out = model.generate(**main_inputs, logits_processor=LogitsProcessorList([proc]), do_sample=False)

Notes: use one processor per ``generate`` call (it keeps state; :meth:`reset` clears it). Beam search is not
supported (the auxiliary batch must match the main batch). Transformers applies the default processors
(temperature, top-k/p for sampling) before custom ones, so with sampling the JSD of AdaCAD would see warped
scores; AdaCAD's official decoding is greedy (``do_sample=False``), where the scores are the raw logits.
:func:`contrastive_generate` wraps tokenisation, the processor and decoding for lists of strings.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from pairlab.decoding.fusion import LogitFusion


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


class ContrastiveLogitsProcessor(LogitsProcessor):
    """Fuse ``generate``'s scores with the logits of an auxiliary input through ``fusion``.

    Args:
        model: the causal LM that ``generate`` runs (the auxiliary branch uses the same model by default).
        aux_input_ids: ``[B, T_aux]`` auxiliary prompts (left padding recommended).
        aux_attention_mask: ``[B, T_aux]`` (default: all ones).
        fusion: the :class:`LogitFusion` rule (default: AdaCAD).
        aux_model: a different model for the auxiliary branch (must share the vocabulary).
        use_cache: keep a KV cache for the auxiliary branch (``False`` recomputes the whole sequence each step;
            same numbers, slower — used to test the cache).
    """

    def __init__(
        self,
        model: Any,
        aux_input_ids: torch.Tensor,
        aux_attention_mask: torch.Tensor | None = None,
        fusion: LogitFusion | None = None,
        aux_model: Any | None = None,
        use_cache: bool = True,
    ):
        if not isinstance(aux_input_ids, torch.Tensor) or aux_input_ids.ndim != 2:
            raise ValueError(f"aux_input_ids must be a [B, T] tensor, got {getattr(aux_input_ids, 'shape', None)}")
        if aux_attention_mask is None:
            aux_attention_mask = torch.ones_like(aux_input_ids)
        if aux_attention_mask.shape != aux_input_ids.shape:
            raise ValueError(
                f"aux_attention_mask must have shape {tuple(aux_input_ids.shape)}, "
                f"got {tuple(aux_attention_mask.shape)}"
            )
        self.model = aux_model if aux_model is not None else model
        self.fusion = fusion if fusion is not None else LogitFusion.adacad()
        self.use_cache = bool(use_cache)
        device = next(self.model.parameters()).device
        self.aux_ids = aux_input_ids.to(device)
        self.aux_mask = aux_attention_mask.to(device)
        # transformers >= 5.2x names the KV cache argument `cache`; older versions `past_key_values`
        params = inspect.signature(self.model.forward).parameters
        self._cache_name = "cache" if "cache" in params else "past_key_values"
        self.reset()

    def reset(self) -> None:
        """Forget the generation state (prompt length, cache, recorded weights)."""
        self.alphas: list[torch.Tensor] = []
        self._prompt_len: int | None = None
        self._past: Any = None
        self._mask: torch.Tensor | None = None
        self._fed = 0

    @torch.no_grad()
    def _aux_logits(self, generated: torch.Tensor) -> torch.Tensor:
        generated = generated.to(self.aux_ids.device)
        if not self.use_cache:
            ids = torch.cat([self.aux_ids, generated], dim=1)
            mask = torch.cat([self.aux_mask, torch.ones_like(generated)], dim=1)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False)
            return out.logits[:, -1]
        if self._past is None:
            ids = torch.cat([self.aux_ids, generated], dim=1)
            mask = torch.cat([self.aux_mask, torch.ones_like(generated)], dim=1)
            new = ids
        else:
            new = generated[:, self._fed :]
            mask = torch.cat([self._mask, torch.ones_like(new)], dim=1)
        pos = _positions(mask)[:, -new.shape[1] :]
        cache_kw = {self._cache_name: self._past} if self._past is not None else {}
        out = self.model(input_ids=new, attention_mask=mask, position_ids=pos, use_cache=True, **cache_kw)
        past = out.get("cache", None) if hasattr(out, "get") else None
        self._past = past if past is not None else out.past_key_values
        self._mask, self._fed = mask, generated.shape[1]
        return out.logits[:, -1]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != self.aux_ids.shape[0]:
            raise ValueError(
                f"main batch has {input_ids.shape[0]} rows but aux_input_ids has {self.aux_ids.shape[0]} "
                "(beam search and num_return_sequences > 1 are not supported)"
            )
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        z_aux = self._aux_logits(input_ids[:, self._prompt_len :]).to(scores.device)
        result = self.fusion(scores, z_aux.to(scores.dtype))
        self.alphas.append(result.alpha.detach().cpu())
        return result.logits.to(scores.dtype)


def contrastive_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    aux_prompts: Sequence[str] | None,
    fusion: LogitFusion | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 16,
    **generate_kwargs: Any,
) -> tuple[list[str], list[torch.Tensor]]:
    """Greedy-decode ``prompts`` with the fusion rule against ``aux_prompts`` (``None``: plain greedy decoding).

    Returns:
        The generated continuations (special tokens stripped) and, per prompt, the weights used at each step
        (``[steps]``; empty for plain decoding; steps after the row finished are dropped).
    """
    if aux_prompts is not None and len(aux_prompts) != len(prompts):
        raise ValueError(f"aux_prompts must have one entry per prompt ({len(prompts)}), got {len(aux_prompts)}")
    if tokenizer.pad_token is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token)")
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    texts: list[str] = []
    weights: list[torch.Tensor] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
            enc = {k: v.to(device) for k, v in enc.items()}
            kwargs = dict(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
            kwargs.update(generate_kwargs)
            proc = None
            if aux_prompts is not None:
                aux = tokenizer(list(aux_prompts[i : i + batch_size]), return_tensors="pt", padding=True)
                proc = ContrastiveLogitsProcessor(model, aux["input_ids"], aux["attention_mask"], fusion)
                kwargs["logits_processor"] = LogitsProcessorList([proc])
            with torch.no_grad():
                out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            for r in range(new.shape[0]):
                texts.append(tokenizer.decode(new[r], skip_special_tokens=True))
                if proc is None or not proc.alphas:
                    weights.append(torch.empty(0))
                    continue
                a = torch.stack(proc.alphas, dim=1)[r]
                eos = tokenizer.eos_token_id
                ends = (new[r] == eos).nonzero()
                steps = int(ends[0]) + 1 if eos is not None and ends.numel() else a.shape[0]
                weights.append(a[:steps])
    finally:
        tokenizer.padding_side = old_side
    return texts, weights
