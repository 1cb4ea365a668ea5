"""A Lightning ``LightningModule`` wrapping encoder + head + objective (+ momentum encoder and queue).

``ContrastiveModule`` trains any registered pairlab objective under Lightning's ``Trainer``: the batch
``(x, y)`` is turned into ``K`` views by ``views`` (any callable ``[B, ...] -> [B, K, ...]``, e.g.
:class:`pairlab.data.views.Views`), embedded by ``head(encoder(.))`` and scored by the objective.
With ``queue_size > 0`` the keys of view 0 from a momentum copy of encoder + head (MoCo, EMA
``momentum``) fill a :class:`pairlab.candidates.queue.Queue` whose rows are extra negative columns.
Under DDP the objectives gather candidates across ranks themselves (with gradient), and the queue
stays identical on all ranks.

Callbacks (:class:`OnlineEvaluation`) compute, on frozen encoder features, weighted kNN and a linear
probe accuracy and the diagnostics (alignment, uniformity, effective rank, positive/negative score
means) every ``every_n_epochs`` and log them through ``pl_module.log`` (so every Lightning logger
receives them).

Example::

    import lightning as L
    module = ContrastiveModule(encoder, "ntxent", views=Views(k=2), head=head, objective_kwargs={"temperature": 0.2})
    L.Trainer(max_epochs=5, callbacks=[OnlineEvaluation(train_xy, test_xy)]).fit(module, loader)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from pairlab import registry


class ContrastiveModule(L.LightningModule):
    """Encoder + head + pairlab objective as a LightningModule.

    Args:
        encoder: maps inputs ``[N, ...]`` to features ``[N, F]`` (evaluation uses these).
        objective: an objective module or a registered name (``objective_kwargs`` build it).
        views: callable making ``[B, K, ...]`` views from a batch ``[B, ...]``; ``None`` means the
            batch already holds views ``[B, K, ...]``.
        head: projection head ``[N, F] -> [N, D]`` (identity if ``None``).
        lr, weight_decay: optimiser settings; the objective's own parameters (e.g. a learnable
            temperature) are optimised too.
        optimizer: ``"adamw"`` (default) or ``"sgd"``.
        queue_size: MoCo-style queue of momentum keys used as extra negatives (0 = none).
        momentum: EMA of the key encoder (used only with a queue).
    """

    def __init__(
        self,
        encoder: nn.Module,
        objective: nn.Module | str,
        views: Callable[[torch.Tensor], torch.Tensor] | None = None,
        head: nn.Module | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        queue_size: int = 0,
        momentum: float = 0.99,
        objective_kwargs: dict[str, Any] | None = None,
        optimizer: str = "adamw",
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else nn.Identity()
        if isinstance(objective, str):
            entry = registry.get("objectives", objective)
            self.input_kind = str(entry.meta.get("input", "views"))
            objective = entry.obj(**(objective_kwargs or {}))
        else:
            if objective_kwargs:
                raise ValueError("objective_kwargs are only used with a registered objective name")
            self.input_kind = registry.input_kind(objective)
        if self.input_kind not in ("views", "pair"):
            raise ValueError(
                f"ContrastiveModule drives 'views' or 'pair' objectives, got input kind {self.input_kind!r}"
            )
        self.objective = objective
        self.views = views
        self.lr, self.weight_decay = lr, weight_decay
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be one of ['adamw', 'sgd'], got {optimizer!r}")
        self.optimizer_name = optimizer
        self.queue = None
        self.key_encoder = None
        if queue_size:
            if self.input_kind != "views":
                raise ValueError("queue_size > 0 needs a 'views' objective (ntxent, supcon, dcl, ...)")
            from pairlab.candidates.queue import MomentumEncoder

            self.key_encoder = MomentumEncoder(nn.Sequential(self.encoder, self.head), momentum=momentum)
            self._queue_size = queue_size  # the queue is built lazily once the embedding dim is known

    def embed(self, v: torch.Tensor) -> torch.Tensor:
        """``[B, K, ...] -> z [B, K, D]``."""
        b, k = v.shape[:2]
        return self.head(self.encoder(v.flatten(0, 1))).reshape(b, k, -1)

    def _loss(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.input_kind == "pair":
            return self.objective(z[:, 0], z[:, 1])
        if self.queue is None:
            return self.objective(z, labels=y)
        return self.objective(z, labels=y, extra=self.queue.negatives().to(z.dtype))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        v = self.views(x) if self.views is not None else x
        z = self.embed(v)
        if self.key_encoder is not None and self.queue is None:
            from pairlab.candidates.queue import Queue

            self.queue = Queue(self._queue_size, z.shape[-1], init="empty").to(z.device)
        loss = self._loss(z, y)
        if self.key_encoder is not None:
            with torch.no_grad():
                self.key_encoder.update(nn.Sequential(self.encoder, self.head))
                keys = self.key_encoder(v[:, 0])
            self.queue.enqueue(keys)
        stats = getattr(self.objective, "last_stats", {})
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=z.shape[0])
        for key in ("pos_score_mean", "neg_score_mean", "anchors_used"):
            if key in stats:
                self.log(f"train/{key}", float(stats[key]), sync_dist=True, batch_size=z.shape[0])
        return loss

    def configure_optimizers(self):
        params = list(self.encoder.parameters()) + list(self.head.parameters()) + list(self.objective.parameters())
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


class OnlineEvaluation(L.Callback):
    """Evaluate frozen encoder features during training and log the numbers.

    Every ``every_n_epochs`` (at the end of a training epoch) the encoder embeds ``train`` and
    ``test`` (tuples ``(x, y)``), then logs ``eval/knn_acc`` (weighted kNN, cosine, k=20),
    ``eval/linear_acc`` (linear probe), and, on two views of ``test`` made by the module's ``views``,
    ``eval/alignment``, ``eval/uniformity``, ``eval/effective_rank``, ``eval/pos_score_mean`` and
    ``eval/neg_score_mean``. The last values are kept in ``self.history`` (one dict per evaluation).
    """

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        every_n_epochs: int = 1,
        batch_size: int = 512,
        k: int = 20,
    ):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.train, self.test = train, test
        self.every_n_epochs, self.batch_size, self.k = every_n_epochs, batch_size, k
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def _features(self, module: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return torch.cat(
            [module(x[i : i + self.batch_size].to(device)).float().cpu() for i in range(0, len(x), self.batch_size)]
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: ContrastiveModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        from pairlab.metrics.geometry import alignment, effective_rank, uniformity
        from pairlab.metrics.histograms import pos_neg_scores
        from pairlab.metrics.knn import knn_accuracy
        from pairlab.metrics.linear import linear_probe_accuracy
        from pairlab.scores import normalize

        was_training = pl_module.training
        pl_module.eval()
        dev = pl_module.device
        ftr = self._features(pl_module.encoder, self.train[0], dev)
        fte = self._features(pl_module.encoder, self.test[0], dev)
        out = {
            "eval/knn_acc": knn_accuracy(ftr, self.train[1], fte, self.test[1], k=self.k),
            "eval/linear_acc": linear_probe_accuracy(ftr, self.train[1], fte, self.test[1]),
            "eval/effective_rank": effective_rank(fte),
        }
        if pl_module.views is not None:
            with torch.no_grad():
                v = pl_module.views(self.test[0][: self.batch_size].to(dev))
                z = pl_module.embed(v).float().cpu()
            a, b = normalize(z[:, 0]), normalize(z[:, 1])
            pos, neg = pos_neg_scores(a, b)
            out.update(
                {
                    "eval/alignment": alignment(a, b),
                    "eval/uniformity": uniformity(a),
                    "eval/pos_score_mean": float(pos.mean()),
                    "eval/neg_score_mean": float(neg.mean()),
                }
            )
        pl_module.train(was_training)
        self.history.append(out)
        for key, value in out.items():
            pl_module.log(key, value, rank_zero_only=True)
