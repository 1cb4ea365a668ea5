"""Pairwise preference and dispreference objectives: Bradley-Terry (+ties, P2C consistency), DPO, D2O."""

from pairlab.preference.bradley_terry import (
    bt_pair_loss,
    bt_probability,
    pair_consistency_hinge,
    soft_pair_consistency,
)
from pairlab.preference.d2o import d2o_loss
from pairlab.preference.dpo import dpo_loss
from pairlab.preference.logprob import sequence_logprob, sequence_logprob_from_logits

__all__ = [
    "bt_pair_loss",
    "bt_probability",
    "d2o_loss",
    "dpo_loss",
    "pair_consistency_hinge",
    "sequence_logprob",
    "sequence_logprob_from_logits",
    "soft_pair_consistency",
]
