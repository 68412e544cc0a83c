"""What lvm's LightningModules share: data checks before the first step, val/test means, RNG on resume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import Tensor, nn

from lvm.checkpoint import (
    check_checkpoint_version,
    record_datamodule,
    rng_state,
    set_rng_state,
    stamp_checkpoint,
)
from lvm.deprecation import warn_deprecated
from lvm.metrics import MeanWithStdErr
from lvm.optim import Adam, build_optimizers

__all__ = ["EvaluatedModule"]

_STAGES = ("val", "test")


class EvaluatedModule(L.LightningModule):
    """Base of :class:`~lvm.vae.VAE` and :class:`~lvm.semi_supervised.vae.SemiSupervisedVAE`.

    - ``setup`` checks the data module's ``data_shape`` and values (``dm.check(likelihood)``)
      against ``self.model`` before any step runs, and on ``fit`` sets the decoder's output bias
      to the training mean when ``hparams.init_output_bias`` is true.
    - Validation and test keep per-datapoint values in :class:`~lvm.metrics.MeanWithStdErr`
      (sum states, exact across batches and DDP ranks) and log ``{stage}/{name}``,
      ``{stage}/{name}_stderr`` and ``{stage}/count`` at the epoch's end.
    - A checkpoint carries the torch RNG state; resuming a fit restores it, so a resumed run
      draws what an uninterrupted one would. It also records lvm's version and checkpoint format
      (:func:`~lvm.checkpoint.stamp_checkpoint`).
    - :meth:`configure_optimizers` builds ``hparams.optimizer`` and ``hparams.lr_scheduler``
      (class specs, :func:`lvm.optim.class_spec`), or by default :class:`lvm.optim.Adam` with
      ``hparams`` ``lr``, ``betas`` and ``eps``.

    Subclasses set ``self.model`` (with ``event_shape``, ``likelihood`` and ``init_output_bias``),
    call :meth:`track` with the names their ``_eval_step(batch, stage)`` passes to :meth:`record`.
    """

    model: nn.Module
    _resume_rng: dict[str, Tensor] | None = None

    def track(self, names: Sequence[str]) -> None:
        """Keep a mean of each of ``names`` per stage; logged in this order, ``count`` from the first."""
        self._tracked = {name: i for i, name in enumerate(names)}
        self.metrics = nn.ModuleDict(  # by position: a name may hold "." or "/"
            {s: nn.ModuleList(MeanWithStdErr() for _ in names) for s in _STAGES}
        )

    def record(self, stage: str, name: str, values: Tensor) -> None:
        """Add per-datapoint ``values`` (B,) to the mean of ``name`` in ``stage``."""
        self.metrics[stage][self._tracked[name]].update(values)

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        raise NotImplementedError

    # -- setup -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Check the data against the model before any step runs (runs before a checkpoint restore)."""
        try:
            dm = getattr(self.trainer, "datamodule", None)
        except RuntimeError:  # called by hand, without a Trainer
            return
        if dm is None:
            return
        shape = getattr(dm, "data_shape", None)
        if shape is not None and tuple(shape) != tuple(self.model.event_shape):
            raise ValueError(
                f"data shape {tuple(shape)} does not match the model's data_shape "
                f"{tuple(self.model.event_shape)}; set model.data_shape or the data module's flatten option"
            )
        if hasattr(dm, "check"):
            dm.check(self.model.likelihood)
        if stage == "fit" and self.hparams.get("init_output_bias") and hasattr(dm, "train_mean"):
            self.model.init_output_bias(dm.train_mean().to(self.device))

    # -- evaluation --------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_means("test")

    def _log_means(self, stage: str) -> None:
        logs: dict[str, Tensor] = {}
        for name, i in self._tracked.items():
            metric = self.metrics[stage][i]
            if not metric.update_called:  # a value some stages do not compute
                continue
            mean, stderr, count = metric.compute()  # already summed across ranks
            logs[f"{stage}/{name}"], logs[f"{stage}/{name}_stderr"] = mean.float(), stderr.float()
            logs.setdefault(f"{stage}/count", count.float())
            metric.reset()
        self.log_dict(logs, prog_bar=stage == "val", sync_dist=False)

    def configure_optimizers(self) -> Any:
        """``hparams.optimizer`` over all parameters (default :class:`lvm.optim.Adam` with ``hparams``
        ``lr``, ``betas``, ``eps``) and ``hparams.lr_scheduler`` on it, stepped once per epoch.

        Override it (Lightning's own route) for anything else: several parameter groups, a
        scheduler stepped per batch, several optimisers.
        """
        h = self.hparams
        default = {"lr": h["lr"], "betas": tuple(h["betas"]), "eps": h["eps"]}
        return build_optimizers(self.parameters(), h.get("optimizer"), h.get("lr_scheduler"), default)

    def adam(self) -> Adam:
        """Deprecated: :class:`lvm.optim.Adam` over all parameters; use :meth:`configure_optimizers`."""
        warn_deprecated("EvaluatedModule.adam()", "configure_optimizers()", since="0.2.0")
        h = self.hparams
        return Adam(self.parameters(), lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"])

    # -- checkpoints: the RNG state, so a resumed run draws what an uninterrupted one would ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lvm_rng_state"] = rng_state(self.device)
        record_datamodule(checkpoint, self.trainer)  # so that lvm compare rebuilds the same data
        stamp_checkpoint(checkpoint)  # lvm's version and the checkpoint format

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_version(checkpoint)  # VAE.load_from_checkpoint reads the file without lvm
        self._resume_rng = checkpoint.get("lvm_rng_state")

    def on_train_start(self) -> None:
        """When resuming a fit (``ckpt_path``), restore the RNG state saved with the checkpoint."""
        if self._resume_rng is not None and self.trainer.ckpt_path:
            set_rng_state(self._resume_rng, self.device)
        self._resume_rng = None
