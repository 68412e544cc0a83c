"""The LightningCLI behind ``lvm fit`` / ``validate`` / ``test``: VAE model, any data module, atomic checkpoints."""

from __future__ import annotations

import argparse
import contextlib
import os
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
from lvm.evaluation import DATAMODULE_KEY, check_data_provenance
from lvm.loggers import RUN_ID_KEY, WandbRunId
from lvm.run_folder import RunFolderLock, refuse_old_checkpoints

__all__ = ["LVMCLI", "LogConfig", "allow_globals_of", "check_config_matches", "help_formatter"]


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
        trust_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        self.batch_counts = dict(batch_counts or {})
        self.trust_checkpoint = trust_checkpoint
        self._checkpoint: dict[str, Any] | None = None
        self._checkpoint_path: str | None = None
        self._lock: RunFolderLock | None = None
        self._started = time.time()
        try:
            super().__init__(*args, save_config_callback=save_config_callback, **kwargs)
        finally:
            if self._lock is not None:
                self._lock.release()

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
            self._checkpoint = read_checkpoint(ckpt, trust=self.trust_checkpoint)
            self._checkpoint_path = str(ckpt)
            if self.trust_checkpoint:  # so that Lightning's own weights_only loads of it succeed too
                allow_globals_of(ckpt)
            check_config_matches(self.config[sub].get("model"), self._checkpoint, str(ckpt))

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
        plugins = with_atomic_checkpoints(plugins, trust=self.trust_checkpoint)
        trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        if any(isinstance(lg, _WandbLogger) for lg in trainer.loggers):
            trainer.callbacks.append(WandbRunId())
        return trainer

    def before_fit(self) -> None:
        """Lock the run folder, refuse a new run over an old run's checkpoints, and remove temporary
        files that killed checkpoint writes left in the checkpoint folders."""
        folders = [
            Path(cb.dirpath) for cb in self.trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)
        ]
        if self.trainer.checkpoint_callbacks and not folders and self.trainer.logger is None:
            folders.append(Path(self.trainer.default_root_dir) / "checkpoints")  # Lightning's default then
        if self.trainer.global_rank == 0 and _launching_rank():
            self._lock = RunFolderLock(self.trainer.default_root_dir).acquire()
            refuse_old_checkpoints(folders, resuming=bool(self.config.fit.get("ckpt_path")))
        for folder in folders:
            remove_stale_temporaries(folder, older_than=self._started)
        self._check_data_provenance()

    def before_validate(self) -> None:
        self._check_data_provenance()

    def before_test(self) -> None:
        self._check_data_provenance()

    def _check_data_provenance(self) -> None:
        """A data file that the checkpoint fingerprinted and the config names again must be unchanged.

        A config that names other files passes other data on purpose; the same path with other
        content would silently draw another split (:func:`~lvm.evaluation.check_data_provenance`).
        """
        record = (self._checkpoint or {}).get(DATAMODULE_KEY) or {}
        paths = getattr(self.datamodule, "paths", None) or {}
        same = {
            split: saved
            for split, saved in (record.get("files") or {}).items()
            if split in paths and os.path.abspath(paths[split]) == os.path.abspath(saved["path"])
        }
        hint = "to use the file as it is now, copy it under another name and point the config at the copy"
        check_data_provenance({"files": same}, self.datamodule, f"checkpoint {self._checkpoint_path}", hint)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data.data_shape", "model.data_shape", compute_fn=self._data_shape, apply_on="instantiate"
        )
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

    def _data_shape(self, shape: Any) -> Any:
        """The data module's ``data_shape`` for the model, checked against a checkpoint's first."""
        recorded = ((self._checkpoint or {}).get("hyper_parameters") or {}).get("data_shape")
        if recorded is not None and shape is not None and list(recorded) != list(shape):
            raise ValueError(
                f"checkpoint {self._checkpoint_path} is of a model of datapoints of shape {list(recorded)}, "
                f"but the data module gives datapoints of shape {list(shape)}: a checkpoint of another "
                f"model, or other data"
            )
        return shape

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


#: Model arguments that may differ between a checkpoint and the config that resumes or tests it:
#: they change what is evaluated or checked, not the model or how it is trained.
_FREE_ON_RESUME = frozenset({"estimators", "eval_seed", "check_finite", "plugins", "data_shape"})


def _plain(value: Any) -> Any:
    """``value`` as YAML would hold it: tuples as lists, Namespaces and mappings as dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_config_matches(model_config: Any, checkpoint: dict[str, Any], path: str) -> None:
    """Stop when the config sets a model argument to another value than the checkpoint's.

    Lightning would silently build the model from the checkpoint's hyperparameters, so a resumed
    or tested run would not be the one the config describes. An argument the config leaves at
    :class:`~lvm.vae.VAE`'s default is taken from the checkpoint.

    Raises:
        ValueError: naming the first differing key, the config's value and the checkpoint's.
    """
    if model_config is None:
        return
    import inspect

    from lvm.vae import VAE

    defaults = {
        k: _plain(p.default)
        for k, p in inspect.signature(VAE.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    config, saved = _plain(model_config), _plain(checkpoint.get("hyper_parameters") or {})
    for key, value in config.items():
        if key in _FREE_ON_RESUME or key not in saved or value is None:
            continue
        if value != saved[key] and not (key in defaults and value == defaults[key]):
            raise ValueError(
                f"the config sets model.{key} = {value!r}, but checkpoint {path} was trained with "
                f"{key} = {saved[key]!r}; use the checkpoint's value, or start a new run without --ckpt_path"
            )


def allow_globals_of(path: str | Path) -> None:
    """Allow the globals a trusted checkpoint needs in ``torch.load(weights_only=True)`` (this process).

    Only for files the user trusts (``--trust-checkpoint``): importing a global runs its module.
    """
    import importlib

    import torch

    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is None:  # torch < 2.5: Lightning's own loads then refuse the file, with torch's message
        return
    allowed = []
    for name in find(str(path)):
        module, _, attr = name.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError, ValueError):
            allowed.append(getattr(importlib.import_module(module), attr))
    torch.serialization.add_safe_globals(allowed)


def _launching_rank() -> bool:
    """Whether this is the process that launched the run (not a DDP worker that a launcher started)."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _formatter() -> type:
    """jsonargparse's help formatter, keeping the line breaks of the description (argparse's
    ``RawDescriptionHelpFormatter``)."""
    from jsonargparse import DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    return Formatter


help_formatter = _formatter()
