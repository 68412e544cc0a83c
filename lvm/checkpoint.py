"""Checkpoints that survive a kill (written beside the target, then renamed over it) and carry the RNG state."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from torch import Tensor

__all__ = [
    "DATAMODULE_KEY",
    "AtomicCheckpointIO",
    "record_datamodule",
    "rng_state",
    "set_rng_state",
    "with_atomic_checkpoints",
]

#: Checkpoint key of the data module's ``{"class_path": ..., "init_args": {...}}`` (read by ``lvm compare``).
DATAMODULE_KEY = "lvm_datamodule"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints so that a kill at any moment leaves the old file or the new one, never a torn one.

    ``torch.save`` writes to ``<path>.tmp-<pid>`` in the target's own directory; the file is
    flushed and fsynced, then ``os.replace`` renames it over ``path`` (atomic, because both names
    lie on one filesystem) and the directory is fsynced. Lightning's default instead writes
    through an fsspec transaction: a temporary file in the system temp directory, moved with
    ``shutil.move``, which is a copy, not a rename, when that directory and the checkpoint
    directory are on different filesystems (the usual case on clusters), so a kill during the
    copy leaves a truncated checkpoint. A kill leaves at most a stray ``.tmp-<pid>`` file; an
    exception removes it. Remote paths (``s3://``, ...) use Lightning's default.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        path = os.path.abspath(os.fspath(path))
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """Trainer ``plugins`` with an :class:`AtomicCheckpointIO` added unless a CheckpointIO is already there."""
    if plugins is None:
        plugins = []
    elif not isinstance(plugins, Sequence) or isinstance(plugins, str):
        plugins = [plugins]
    plugins = list(plugins)
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def record_datamodule(checkpoint: dict[str, Any], trainer: Any) -> None:
    """Store the trainer's data module as ``{"class_path", "init_args"}`` under :data:`DATAMODULE_KEY`.

    The init arguments are the data module's saved hyperparameters (``save_hyperparameters``),
    as LightningCLI's ``class_path`` / ``init_args``, so ``lvm compare`` rebuilds exactly the
    data the model was trained on. Nothing is stored without a data module.
    """
    dm = getattr(trainer, "datamodule", None)
    if dm is None:
        return
    cls = type(dm)
    init_args = dict(getattr(dm, "hparams", None) or {})
    checkpoint[DATAMODULE_KEY] = {
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": init_args,
    }


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
