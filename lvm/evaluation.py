"""What lvm's LightningModules share: data checks, val/test means, and what their checkpoints carry.

A checkpoint of an :class:`EvaluatedModule` carries the torch RNG state (so a resumed fit draws
what an uninterrupted one would) and a record of the data module it was trained on (so ``lvm
compare`` rebuilds that data, and can tell when a data file has changed since).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from lvm.checkpoint import check_checkpoint_version, stamp_checkpoint
from lvm.deprecation import warn_deprecated
from lvm.metrics import MeanWithStdErr
from lvm.optim import Adam, build_optimizers

__all__ = [
    "DATAMODULE_KEY",
    "EvaluatedModule",
    "check_data_provenance",
    "file_fingerprint",
    "init_arguments",
    "record_datamodule",
    "rng_state",
    "set_rng_state",
]

#: Checkpoint key of the data module's record (read by ``lvm compare``): ``{"class_path": ...,
#: "init_args": {...}}``, and ``"files"`` for a data module that reads files (:func:`record_datamodule`).
DATAMODULE_KEY = "lvm_datamodule"

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


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """The torch random states a training step draws from: the CPU's and, on a GPU, that device's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (the CUDA state only on a CUDA device)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def init_arguments(hparams: Any) -> dict[str, Any]:
    """The constructor arguments among saved hyperparameters: without the ``_class_path`` and
    ``_instantiator`` entries that LightningCLI adds, which no ``__init__`` accepts."""
    return {k: v for k, v in dict(hparams).items() if not str(k).startswith("_")}


def record_datamodule(checkpoint: dict[str, Any], trainer: Any) -> None:
    """Store the trainer's data module as ``{"class_path", "init_args"}`` under :data:`DATAMODULE_KEY`.

    The init arguments are the data module's saved hyperparameters (``save_hyperparameters``),
    as LightningCLI's ``class_path`` / ``init_args``, so ``lvm compare`` rebuilds exactly the
    data the model was trained on; for a file's random split they hold its fractions and seed.
    A data module that reads files names them in ``paths`` (split -> path, as
    :class:`~lvm.data.FileDataModule` does); their :func:`file_fingerprint` go under ``"files"``,
    so a file changed after training is noticed (:func:`check_data_provenance`). Nothing is
    stored without a data module.
    """
    dm = getattr(trainer, "datamodule", None)
    if dm is None:
        return
    cls = type(dm)
    record = {
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": init_arguments(getattr(dm, "hparams", None) or {}),
    }
    paths = getattr(dm, "paths", None)
    if isinstance(paths, Mapping) and paths:
        record["files"] = {split: file_fingerprint(p) for split, p in paths.items()}
    checkpoint[DATAMODULE_KEY] = record


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of a file: its path as given, its size and a hash of its content.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    stat = Path(path).stat()  # the hash is cached while size and modification time stay the same
    return {
        "path": str(path),
        "bytes": stat.st_size,
        "sha256": _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns),
    }


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_data_provenance(
    record: Mapping[str, Any] | None,
    datamodule: Any,
    source: str = "the checkpoint",
    hint: str = "to evaluate on the file as it is, pass the data explicitly (--data-config)",
) -> None:
    """Raise if a file that a data-module record fingerprinted has changed since (size or content).

    Args:
        record: The checkpoint's data-module record (``checkpoint[DATAMODULE_KEY]``); records
            without ``"files"`` (no files, or written before lvm kept them) are not checked.
        datamodule: The data module rebuilt from the record; its ``paths`` (split -> path) are
            the files checked, else the recorded paths.
        source: What wrote the record, for the message (the checkpoint's path).
        hint: How to go on with the changed file, the message's last words.

    Raises:
        ValueError: naming the file, the recorded and the current sha256 and sizes.
        FileNotFoundError: if a recorded file is gone.
    """
    paths = getattr(datamodule, "paths", None) or {}
    for split, saved in dict((record or {}).get("files") or {}).items():
        now = file_fingerprint(paths.get(split, saved["path"]))
        if now["sha256"] != saved["sha256"] or now["bytes"] != saved["bytes"]:
            raise ValueError(
                f"data file {now['path']} has changed since {source} was written: sha256 "
                f"{saved['sha256']} ({saved['bytes']} bytes) then, {now['sha256']} ({now['bytes']} bytes) "
                f"now; {hint}"
            )
