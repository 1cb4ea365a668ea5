"""Contrastive decoding by logit fusion: CAD, AdaCAD, VCD, RITUAL (one rule), as a function and a LogitsProcessor.

``ContrastiveLogitsProcessor`` and ``contrastive_generate`` import transformers; they load lazily on first access.
"""

from typing import Any

from pairlab.decoding.fusion import FusionResult, LogitFusion, fuse_logits, js_divergence, plausibility_mask

__all__ = [
    "ContrastiveLogitsProcessor",
    "FusionResult",
    "LogitFusion",
    "contrastive_generate",
    "fuse_logits",
    "js_divergence",
    "plausibility_mask",
]


def __getattr__(name: str) -> Any:
    if name in ("ContrastiveLogitsProcessor", "contrastive_generate"):
        from pairlab.decoding import processor

        return getattr(processor, name)
    raise AttributeError(f"module 'pairlab.decoding' has no attribute {name!r}")
