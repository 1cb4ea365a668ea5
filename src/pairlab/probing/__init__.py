"""Contrast-consistent probing: CCS (Burns et al.), PA-CCS polarity metrics, hidden-state extraction."""

from pairlab.probing.ccs import CCSProbe, CCSScore, SetStats, ccs_loss, ccs_normalize, set_stats
from pairlab.probing.hidden import HiddenStates, extract_hidden_states, pool
from pairlab.probing.metrics import contradiction_index, polar_consistency, polarity_report
from pairlab.probing.prompts import contrast_pairs
from pairlab.probing.sweep import ccs_layer_sweep

__all__ = [
    "CCSProbe",
    "CCSScore",
    "HiddenStates",
    "SetStats",
    "ccs_layer_sweep",
    "ccs_loss",
    "ccs_normalize",
    "contradiction_index",
    "contrast_pairs",
    "extract_hidden_states",
    "polar_consistency",
    "polarity_report",
    "pool",
    "set_stats",
]
