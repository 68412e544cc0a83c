"""The LightningCLI behind ``lvm fit`` / ``validate`` / ``test``: VAE model, any data module, atomic checkpoints."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lvm.checkpoint import read_checkpoint, remove_stale_temporaries, with_atomic_checkpoints
from lvm.loggers import RUN_ID_KEY, WandbRunId

__all__ = ["LVMCLI", "LogConfig", "help_formatter"]


class LogConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the log folder and log the whole config to every logger (W&B), on rank 0."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class LVMCLI(LightningCLI):
    """LightningCLI whose model is :class:`~lvm.vae.VAE` and whose data is any LightningDataModule.

    ``model.data_shape`` is taken from the data module (``data.data_shape``), and
    ``--test_after_fit true`` runs the test set on the best checkpoint once ``fit`` ends.
    ``--optimizer`` and ``--lr_scheduler`` take any torch optimiser and scheduler by class path,
    as in LightningCLI, and set ``model.optimizer`` / ``model.lr_scheduler`` (construct it with
    ``auto_configure_optimizers=False``, so that LightningCLI does not add its own). The
    trainer writes checkpoints with :class:`~lvm.checkpoint.AtomicCheckpointIO` unless the
    config names another CheckpointIO, and the config is logged to every logger.

    Args:
        batch_counts: Trainer ``limit_*_batches`` given as integers (``{"limit_train_batches": 1}``):
            the parser reads ``1`` as the float ``1.0`` (100%), these are passed as the int they were.
    """

    def __init__(
        self,
        *args: Any,
        save_config_callback: type | None = LogConfig,
        batch_counts: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.batch_counts = dict(batch_counts or {})
        self._checkpoint: dict[str, Any] | None = None
        self._started = time.time()
        super().__init__(*args, save_config_callback=save_config_callback, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test; ``predict`` is left out (lvm models define no predict step)."""
        commands = dict(LightningCLI.subcommands())
        commands.pop("predict", None)
        return commands

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check ``--ckpt_path`` with :func:`~lvm.checkpoint.read_checkpoint` (names a bad file)."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if str(ckpt) == "last":  # the ModelCheckpoint's last.ckpt, where the config names its folder
            ckpt = self._configured_last_checkpoint(sub)
        if ckpt and str(ckpt) not in ("last", "best", "hpc") and "://" not in str(ckpt):
            self._checkpoint = read_checkpoint(ckpt)

    def _configured_last_checkpoint(self, sub: str) -> Path | None:
        """``<dirpath>/last.ckpt`` of a ModelCheckpoint in the config that has one, else None."""
        callbacks = self.config[sub].trainer.get("callbacks") or []
        for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
            if str(getattr(cb, "class_path", "")).endswith("ModelCheckpoint"):
                dirpath = (getattr(cb, "init_args", None) or {}).get("dirpath")
                if dirpath and (Path(dirpath) / "last.ckpt").is_file():
                    return Path(dirpath) / "last.ckpt"
        return None

    def before_instantiate_classes(self) -> None:
        """Resuming a fit: a W&B logger without an ``id`` continues the run saved in the checkpoint."""
        run_id = (self._checkpoint or {}).get(RUN_ID_KEY)
        if self.subcommand != "fit" or not run_id:
            return
        loggers = self.config.fit.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            path = str(getattr(logger, "class_path", "") or "")
            args = getattr(logger, "init_args", None)
            if path.endswith("lvm.loggers.WandbLogger") and args is not None and not args.get("id"):
                args["id"] = run_id
                rank_zero_info(f"[lvm] continuing W&B run {run_id} (from the checkpoint)")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config_init.get(str(self.subcommand), self.config_init).get("trainer") or {}
        plugins = kwargs.pop("plugins", None) or config.get("plugins")
        for key, count in self.batch_counts.items():  # "1" means one batch, not 100%
            value = config.get(key)
            if isinstance(value, float) and value == count:
                kwargs.setdefault(key, count)
        trainer = super().instantiate_trainer(plugins=with_atomic_checkpoints(plugins), **kwargs)
        if any(isinstance(lg, _WandbLogger) for lg in trainer.loggers):
            trainer.callbacks.append(WandbRunId())
        return trainer

    def before_fit(self) -> None:
        """Remove temporary files that killed checkpoint writes left in the checkpoint folders."""
        for cb in self.trainer.checkpoint_callbacks:
            if getattr(cb, "dirpath", None):
                remove_stale_temporaries(cb.dirpath, older_than=self._started)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.data_shape", "model.data_shape", apply_on="instantiate")
        # LightningCLI's --optimizer / --lr_scheduler (any torch class by class path, the same syntax),
        # passed to the model as plain dicts, so they are saved with its hyperparameters and a resumed
        # or reloaded model rebuilds them; none given: the model's default, lvm.optim.Adam
        schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        for key, bases, skip in (
            ("optimizer", (torch.optim.Optimizer,), {"params"}),
            ("lr_scheduler", schedulers, {"optimizer"}),
        ):
            parser.add_subclass_arguments(
                bases, key, instantiate=False, fail_untyped=False, skip=skip, required=False
            )
            parser.link_arguments(key, f"model.{key}", compute_fn=_plain)
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, evaluate the best checkpoint (or the last weights) on the test set.",
        )

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        ckpt = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=True)
        if results and "test/elbo" in results[0]:
            r = results[0]
            rank_zero_info(
                f"[lvm] test ELBO: {r['test/elbo']:.3f} nats per datapoint "
                f"(+/- {r.get('test/elbo_stderr', float('nan')):.3f} s.e., n={int(r.get('test/count', 0))}); "
                f"checkpoint: {ckpt or 'last weights'}"
            )
            objective = self.model.hparams.get("objective", "elbo")
            if objective != "elbo" and "test/bound" in r:
                rank_zero_info(
                    f"[lvm] test {objective} bound (k={self.model.hparams.num_samples}): "
                    f"{r['test/bound']:.3f} nats per datapoint "
                    f"(+/- {r.get('test/bound_stderr', float('nan')):.3f} s.e.)"
                )


def _plain(value: Any) -> Any:
    """A parsed ``{class_path, init_args}`` (a jsonargparse Namespace) as a plain dict; None stays None."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _formatter() -> type:
    """jsonargparse's help formatter, keeping the line breaks of the description (argparse's
    ``RawDescriptionHelpFormatter``)."""
    from jsonargparse import DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    return Formatter


help_formatter = _formatter()
