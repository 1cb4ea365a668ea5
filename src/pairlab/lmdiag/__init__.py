"""LM-side diagnostics: gradient weight/direction decomposition of pair objectives; CAV concept asymmetry."""

from pairlab.lmdiag.concept_asymmetry import CAV, concept_asymmetry, fit_cav
from pairlab.lmdiag.weight_direction import (
    bce_score_weights,
    compare_weights,
    infonce_score_weights,
    score_weights,
    weight_direction_mix,
)

__all__ = [
    "CAV",
    "bce_score_weights",
    "compare_weights",
    "concept_asymmetry",
    "fit_cav",
    "infonce_score_weights",
    "score_weights",
    "weight_direction_mix",
]
