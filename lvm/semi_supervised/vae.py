"""The LightningModule that trains the M2 semi-supervised VAE on partially labelled batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lvm.evaluation import EvaluatedModule
from lvm.optim import optimizer_settings
from lvm.registry import Spec
from lvm.semi_supervised.m2 import M2Bound, M2Model

__all__ = ["SemiSupervisedVAE"]


class SemiSupervisedVAE(EvaluatedModule):
    """M2 (Kingma et al. 2014) trained with Lightning on batches that mix labelled and unlabelled points.

    The maths lives in :class:`M2Model`; the steps maximise the mean over the batch of
    :attr:`M2Bound.objective` (labelled points: L(x, y) + alpha log q(y | x); unlabelled: U(x);
    labels -1 mark unobserved) and log ``train/...``. Validation and test log ``{stage}/accuracy``
    of argmax q(y | x) against the true labels, and ``{stage}/bound``, the mean of U(x) <= log p(x),
    both as sum-state metrics, so they are exact across batches and ranks.

    Args:
        data_shape: Shape of one datapoint, e.g. ``[784]``.
        num_classes: Number of classes C.
        latent_dim: Size of z.
        encoder: f_e of q(z | x, y), by name or ``{"name": ..., **kwargs}`` (``lvm.list_encoders()``).
        classifier: Body of q(y | x), by encoder name or spec.
        decoder: f_d of p(x | y, z), by name or spec (``lvm.list_decoders()``).
        likelihood: p(x | y, z), by name or spec (``lvm.list_likelihoods()``).
        alpha: Weight of log q(y | x) per labelled datapoint (the paper's alpha, per datapoint).
        num_samples: Samples of z per datapoint and class in the bounds.
        lr: Learning rate of the default optimiser, :class:`lvm.optim.Adam`; unused with ``optimizer``.
        betas: The default Adam's betas.
        eps: The default Adam's epsilon.
        init_output_bias: Set the decoder output bias to the training mean (Burda et al. 2016).
        bound_stages: Stages (``"val"``, ``"test"``) that also compute U(x), C decoder passes a point.
        optimizer: Any torch optimiser by class path or ``{"class_path": ..., "init_args": {...}}``
            (:func:`lvm.optim.class_spec`); None: :class:`lvm.optim.Adam` with ``lr``, ``betas``, ``eps``.
        lr_scheduler: Any torch learning-rate scheduler in the same form, stepped once per epoch.
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (784,),
        num_classes: int = 10,
        latent_dim: int = 50,
        encoder: Spec = "mlp",
        classifier: Spec = "mlp",
        decoder: Spec = "mlp",
        likelihood: Spec = "bernoulli",
        alpha: float = 1.0,
        num_samples: int = 1,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        init_output_bias: bool = True,
        bound_stages: Sequence[str] = ("val", "test"),
        optimizer: dict[str, Any] | str | None = None,
        lr_scheduler: dict[str, Any] | str | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        if set(bound_stages) - {"val", "test"}:
            raise ValueError(f"bound_stages must be among 'val', 'test'; got {list(bound_stages)}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0; got {alpha}")
        optimizer, lr_scheduler = optimizer_settings(optimizer, lr_scheduler, lr=lr, betas=betas, eps=eps)
        self.save_hyperparameters()
        self.model = M2Model.build(
            data_shape, latent_dim, num_classes, encoder, classifier, decoder, likelihood
        )
        self.track(["accuracy", "bound"])

    def forward(self, x: Tensor, y: Tensor | None = None) -> M2Bound:
        return self.model.bound(x, y, self.hparams.alpha, self.hparams.num_samples)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        b = self(batch["x"], batch["y"])
        loss = -b.objective.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at global step {self.global_step}")
        lab, logs = b.labelled, {"train/loss": loss.detach(), "train/entropy": b.entropy.detach().mean()}
        if lab.any():
            logs["train/labelled_bound"] = b.value.detach()[lab].mean()
            logs["train/log_q_y"] = b.log_q_y.detach()[lab].mean()
            logs["train/accuracy"] = (b.logits.detach()[lab].argmax(-1) == batch["y"][lab]).float().mean()
        if (~lab).any():
            logs["train/unlabelled_bound"] = b.value.detach()[~lab].mean()
        self.log_dict(logs)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        if "y" not in batch:
            raise ValueError(f"{stage} batches need labels 'y' to measure accuracy; got keys {sorted(batch)}")
        x, y = batch["x"], batch["y"]
        if stage in self.hparams.bound_stages:
            b = self(x)
            logits = b.logits
            self.record(stage, "bound", b.value)
        else:
            logits = self.model.classify(x).logits
        self.record(stage, "accuracy", (logits.argmax(-1) == y).float())
