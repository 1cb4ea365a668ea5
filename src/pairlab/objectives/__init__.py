"""Objectives: one module per method family, each registered under ``objectives``."""

from pairlab.objectives.base import ContrastiveObjective
from pairlab.objectives.dcl import DCL
from pairlab.objectives.infonce import CLIPLoss, InfoNCE, NTXent, SupCon

__all__ = ["CLIPLoss", "ContrastiveObjective", "DCL", "InfoNCE", "NTXent", "SupCon"]
