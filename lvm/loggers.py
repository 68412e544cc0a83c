"""W&B logging through Lightning's WandbLogger, offline unless asked otherwise, and the estimator table."""

from __future__ import annotations

import os
from typing import Any, Literal

import lightning as L
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["RUN_ID_KEY", "EstimatorTable", "WandbLogger", "WandbRunId", "wandb_mode"]

#: Checkpoint key of the W&B run id, so that a resumed fit continues the same run.
RUN_ID_KEY = "lvm_wandb_run_id"

_MODES = ("online", "offline", "disabled", "shared")


def wandb_mode(online: bool | None = None) -> str:
    """The W&B mode: ``"online"`` / ``"offline"`` when ``online`` is given, else ``$WANDB_MODE``, else offline.

    Raises:
        ValueError: for a ``$WANDB_MODE`` that wandb does not know.
    """
    if online is not None:
        return "online" if online else "offline"
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in _MODES:
        raise ValueError(f"WANDB_MODE must be one of {', '.join(_MODES)}; got {os.environ['WANDB_MODE']!r}")
    return mode


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that runs offline unless asked, so it never needs an account or a key.

    The mode is ``online=True`` / ``online=False`` when given, else ``$WANDB_MODE``, else
    offline. An offline run lives in ``<save_dir>/wandb/offline-run-*`` (config, history,
    media, artifacts) and can be uploaded later with ``wandb sync``. Online, wandb itself reads
    the key from ``$WANDB_API_KEY`` or ``wandb login``; lvm never reads or writes one.

    Logged: the hyperparameters (the whole config under ``lvm fit``), every ``self.log`` key
    (``train/*``, ``val/*``, ``test/*``), images and tables from callbacks, and with
    ``log_model=True`` (the default here) the checkpoints of ``ModelCheckpoint`` as a model
    artifact when fit ends, the best one with alias ``"best"``. Like every Lightning logger it
    logs from rank 0 only.

    Args:
        name: Run name.
        save_dir: Folder that holds the ``wandb/`` run folders.
        project: W&B project.
        log_model: As in Lightning: True (checkpoints at the end of fit), ``"all"`` or False.
        online: True or False to force the mode; None to follow ``$WANDB_MODE`` (default offline).
        id: The run id; an existing one continues that run (``lvm fit --ckpt_path`` sets it from the
            checkpoint, see :class:`WandbRunId`).
        resume: As in ``wandb.init``; ``"allow"`` when ``id`` is given.
        **kwargs: Passed on to Lightning's ``WandbLogger`` and ``wandb.init`` (``tags``, ``group``, ...).
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = ".",
        project: str = "lvm",
        log_model: bool | Literal["all"] = True,
        online: bool | None = None,
        id: str | None = None,  # noqa: A002 - wandb's name
        resume: str | None = None,
        **kwargs: Any,
    ) -> None:
        mode = kwargs.pop("mode", None) or wandb_mode(online)
        if id is not None:
            kwargs.update(id=id, resume=resume or "allow")
        elif resume is not None:
            kwargs["resume"] = resume
        os.makedirs(save_dir, exist_ok=True)  # wandb falls back to a temp dir when it is missing
        super().__init__(
            name=name, save_dir=save_dir, project=project, log_model=log_model, mode=mode, **kwargs
        )
        self.mode = mode


class WandbRunId(L.Callback):
    """Keep the W&B run id in every checkpoint (key :data:`RUN_ID_KEY`), so that resuming continues the run."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, _LightningWandbLogger) and logger.version:
                checkpoint[RUN_ID_KEY] = str(logger.version)
                return


class EstimatorTable(L.Callback):
    """Log the test set's log p(x) estimates as one table (a ``wandb.Table`` under W&B), a row per estimator.

    Columns: ``estimator``, ``num_samples`` (K), ``log_px`` (the dataset mean, nats per
    datapoint), ``stderr`` and ``count``. The first row is the ELBO (``elbo``, with the training
    objective's number of samples), then, for an objective other than the ELBO, its bound
    (``bound:iwae``), then the model's ``estimators``. Values
    are read from the metrics the model logs at the end of the test epoch, already summed over
    ranks, and logged on rank 0 to every logger that has ``log_table``.

    Args:
        key: Name of the table.
    """

    columns = ("estimator", "num_samples", "log_px", "stderr", "count")

    def __init__(self, key: str = "test/estimators") -> None:
        self.key = key
        self.rows: list[list[Any]] = []

    def table(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[list[Any]]:
        """The rows, from ``trainer.callback_metrics`` after a test epoch."""
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if "test/elbo" not in m:
            return []
        count = int(m.get("test/count", 0))
        h = pl_module.hparams
        k, objective = int(h["num_samples"]), h["objective"]
        rows = [["elbo", k, m["test/elbo"], m.get("test/elbo_stderr"), count]]
        if objective != "elbo" and "test/bound" in m:
            rows.append([f"bound:{objective}", k, m["test/bound"], m.get("test/bound_stderr"), count])
        for name, est in getattr(pl_module, "estimators", {}).items():
            key = f"test/log_px/{name}"
            if key in m:
                rows.append([name, int(est.num_samples), m[key], m.get(key + "_stderr"), count])
        return rows

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = self.table(trainer, pl_module)
        if not self.rows:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):
                logger.log_table(key=self.key, columns=list(self.columns), data=self.rows)
