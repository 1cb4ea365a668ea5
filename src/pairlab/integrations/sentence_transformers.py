"""Any pairlab objective as a sentence-transformers loss.

``SentenceTransformersLoss(model, objective)`` follows the sentence-transformers loss protocol
(``forward(sentence_features, labels)``), so the model's own ``SentenceTransformerTrainer`` (or the
legacy ``model.fit``) trains with a pairlab objective unchanged. How the dataset columns map onto the
objective depends on the objective's registered ``input`` kind:

- ``"pair"`` (``clip``, ``infonce``, ...): exactly two text columns ``(anchor, positive)``; the
  objective is called as ``objective(anchor_emb, positive_emb)``. ``infonce`` with a third column and
  more uses them as paired hard negatives ``[B, M, D]``.
- ``"views"`` (``ntxent``, ``supcon``, ``dcl``, ...): the ``K >= 1`` text columns are the views of one
  sample, stacked to ``z: [B, K, D]``; a ``label`` column (integer) is passed as ``labels`` to
  supervised objectives (``supcon``).

The loss value is exactly ``objective(...)`` on the embeddings the model produced (tested).

Example::

    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from pairlab.integrations.sentence_transformers import SentenceTransformersLoss

    model = SentenceTransformer(path)
    loss = SentenceTransformersLoss(model, "clip", temperature=0.05)
    SentenceTransformerTrainer(model=model, train_dataset=ds, loss=loss).train()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from pairlab import registry


class SentenceTransformersLoss(nn.Module):
    """Wrap a pairlab objective (instance or registered name + kwargs) as a sentence-transformers loss."""

    def __init__(self, model: nn.Module, objective: nn.Module | str, **objective_kwargs: Any):
        super().__init__()
        self.model = model
        if isinstance(objective, str):
            entry = registry.get("objectives", objective)
            objective = entry.obj(**objective_kwargs)
        elif objective_kwargs:
            raise ValueError("objective_kwargs are only used with a registered objective name")
        if not isinstance(objective, nn.Module):
            raise TypeError(f"objective must be an nn.Module or a registered name, got {type(objective).__name__}")
        self.objective = objective
        self.input_kind = registry.input_kind(objective)
        if self.input_kind not in ("pair", "views"):
            raise ValueError(
                f"objective {type(objective).__name__} has input kind {self.input_kind!r}; "
                "sentence-transformers columns map onto 'pair' or 'views' objectives only"
            )

    def embed(self, sentence_features: Iterable[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        return [self.model(features)["sentence_embedding"] for features in sentence_features]

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        if self.input_kind == "pair":
            if len(embeddings) < 2:
                raise ValueError(f"a 'pair' objective needs at least 2 text columns, got {len(embeddings)}")
            if len(embeddings) == 2:
                return self.objective(embeddings[0], embeddings[1])
            if getattr(self.objective, "negative_mode", None) == "paired":
                return self.objective(embeddings[0], embeddings[1], torch.stack(embeddings[2:], dim=1))
            raise ValueError(
                f"got {len(embeddings)} text columns: only InfoNCE(negative_mode='paired') takes hard-negative "
                "columns; use (anchor, positive) pairs for this objective"
            )
        z = torch.stack(embeddings, dim=1)
        if labels is not None and labels.numel() == z.shape[0] and not labels.dtype.is_floating_point:
            return self.objective(z, labels=labels.long())
        return self.objective(z)

    def forward(
        self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor | None
    ) -> torch.Tensor:
        return self.compute_loss_from_embeddings(self.embed(sentence_features), labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"objective": type(self.objective).__name__, "input": self.input_kind}
