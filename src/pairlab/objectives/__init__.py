"""Objectives: one module per method family, each registered under ``objectives``."""

from pairlab.objectives.base import ContrastiveObjective
from pairlab.objectives.circle import CircleLoss
from pairlab.objectives.contrastive_margin import ContrastiveLoss
from pairlab.objectives.dcl import DCL
from pairlab.objectives.infonce import CLIPLoss, InfoNCE, NTXent, SupCon
from pairlab.objectives.lifted import LiftedStructureLoss
from pairlab.objectives.multi_similarity import MultiSimilarityLoss
from pairlab.objectives.siglip import SigLIPLoss
from pairlab.objectives.triplet import TripletMarginLoss

__all__ = [
    "CLIPLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "ContrastiveObjective",
    "DCL",
    "InfoNCE",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "NTXent",
    "SigLIPLoss",
    "SupCon",
    "TripletMarginLoss",
]
