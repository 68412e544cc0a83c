"""Checkpoint files: read without running code, written so that a kill leaves the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from packaging.version import InvalidVersion, Version

from lvm._version import __version__
from lvm.errors import CorruptFileError, NoSpaceError, UnsafeFileError

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_KEY",
    "VERSION_KEY",
    "AtomicCheckpointIO",
    "NewerCheckpointError",
    "check_checkpoint_version",
    "load_torch_file",
    "pid_alive",
    "read_checkpoint",
    "remove_stale_temporaries",
    "stamp_checkpoint",
    "with_atomic_checkpoints",
]

#: Checkpoint keys of the lvm version that wrote the file and of the format of its lvm entries.
VERSION_KEY, FORMAT_KEY = "lvm_version", "lvm_checkpoint_format"
#: The format this lvm writes. 0: no format key (lvm 0.1.0). 1: ``lvm_version`` and the format;
#: hyperparameters ``optimizer`` / ``lr_scheduler`` (class specs) instead of ``lr_schedule``.
CHECKPOINT_FORMAT = 1

_TMP = ".tmp-"
#: A path as Lightning's checkpoint IO receives one.
_Path = str | Path


def read_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", lvm_model: bool = True, *, trust: bool = False
) -> dict[str, Any]:
    """Read an lvm checkpoint, or raise an error that names the file and what is wrong with it.

    Loads with ``torch.load(weights_only=True)``: tensors and plain values only, so no code in the
    file runs. A checkpoint that needs anything else (a pickled class, or a payload that calls a
    function) is refused with :class:`~lvm.errors.UnsafeFileError` naming the file and the global,
    unless ``trust`` is true: then it is unpickled in full, which runs whatever the file asks for.

    Args:
        path: The ``.ckpt`` file.
        map_location: As in ``torch.load``.
        lvm_model: Also require a Lightning checkpoint of an lvm model (``state_dict`` and
            ``hyper_parameters`` with ``latent_dim``); False accepts any dictionary.
        trust: Unpickle in full a file that ``weights_only=True`` refuses; only for files you made
            (the command-line form is ``--trust-checkpoint``).

    Returns:
        The checkpoint dictionary (``state_dict``, ``hyper_parameters``, ...).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IsADirectoryError: if ``path`` is a folder.
        CorruptFileError: if the file is empty, truncated or corrupt, or is not a checkpoint of an
            lvm model (a ``state_dict`` and ``hyper_parameters`` with ``latent_dim``).
        UnsafeFileError: if the file needs more than ``weights_only=True`` allows and ``trust`` is false.
    """
    p = Path(path)
    if p.is_dir():
        ckpts = sorted(q.name for q in p.glob("*.ckpt"))
        hint = f"; it holds {', '.join(ckpts[:5])}" if ckpts else ""
        raise IsADirectoryError(f"checkpoint {p} is a folder, not a .ckpt file{hint}")
    ckpt = load_torch_file(p, "checkpoint", map_location=map_location, trust=trust)
    if not lvm_model and isinstance(ckpt, dict):
        return ckpt
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(hparams, dict):
        keys = sorted(map(str, ckpt))[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CorruptFileError(f"{p} is not a Lightning checkpoint of an lvm model (it holds {keys})")
    if "latent_dim" not in hparams:
        raise CorruptFileError(
            f"{p} is a Lightning checkpoint of another model, not of an lvm model "
            f"(hyperparameters {sorted(hparams)[:6]})"
        )
    check_checkpoint_version(ckpt, p)
    return ckpt


def load_torch_file(
    path: str | os.PathLike, what: str = "file", map_location: Any = "cpu", *, trust: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)``, with an error that names the file and its problem.

    The one place where lvm unpickles a file: tensors and plain values only, so no code in the
    file runs, unless ``trust`` is true (then a file that needs more is unpickled in full).

    Args:
        path: The file.
        what: What the file should be, for the messages ("checkpoint", "data file").
        map_location: As in ``torch.load``.
        trust: Unpickle in full a file that ``weights_only=True`` refuses.

    Raises:
        FileNotFoundError, IsADirectoryError: for a missing file or a folder.
        CorruptFileError: for an empty, truncated or corrupt file, or a plain Python pickle.
        UnsafeFileError: for a file that needs more than ``weights_only=True`` when ``trust`` is false.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{what} {p} is a folder, not a file")
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if p.stat().st_size == 0:
        raise CorruptFileError(f"corrupt {what} {p}: the file is empty (0 bytes)")
    if _is_plain_pickle(p):
        raise CorruptFileError(
            f"{what} {p} is a plain Python pickle, not a file written by torch.save; lvm does not "
            f"unpickle such files (unpickling can run code): save it with torch.save or numpy.save"
        )
    try:
        try:
            return torch.load(p, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            if not trust or not _refused_global(err):
                raise
            return torch.load(p, map_location=map_location, weights_only=False)
    except pickle.UnpicklingError as err:
        name = _refused_global(err)
        if name is None:
            raise _corrupt(p, what, err) from err
        raise UnsafeFileError(
            f"refused to load {what} {p}: it asks to unpickle {name}, and lvm loads only tensors "
            f"and plain values; if you made this file yourself, pass --trust-checkpoint (Python: trust=True)"
        ) from None
    except (RuntimeError, OSError, EOFError, IndexError, ValueError, zipfile.BadZipFile) as err:
        raise _corrupt(p, what, err) from err


class NewerCheckpointError(ValueError):
    """A checkpoint written in a format newer than this lvm reads (by a newer lvm)."""


_warned_versions: set[str] = set()


def stamp_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Record this lvm's version and :data:`CHECKPOINT_FORMAT` in ``checkpoint`` (a module's ``on_save_checkpoint``)."""
    checkpoint[VERSION_KEY] = __version__
    checkpoint[FORMAT_KEY] = CHECKPOINT_FORMAT


def check_checkpoint_version(ckpt: Any, path: str | os.PathLike | None = None) -> None:
    """Refuse a checkpoint whose format is newer than this lvm's; warn once about one from a newer lvm.

    Raises:
        NewerCheckpointError: if the checkpoint's format is newer than :data:`CHECKPOINT_FORMAT`,
            naming both lvm versions.
    """
    if not isinstance(ckpt, dict):
        return
    written, fmt = str(ckpt.get(VERSION_KEY, "0.1.0")), ckpt.get(FORMAT_KEY, 0)
    where = f"checkpoint {path}" if path is not None else "the checkpoint"
    if isinstance(fmt, int) and fmt > CHECKPOINT_FORMAT:
        raise NewerCheckpointError(
            f"{where} was written by lvm {written} (checkpoint format {fmt}); the installed lvm "
            f"{__version__} reads formats up to {CHECKPOINT_FORMAT}: upgrade lvm (pip install -U lvm)"
        )
    try:
        newer = Version(written) > Version(__version__)
    except InvalidVersion:
        newer = False
    if newer and written not in _warned_versions:
        _warned_versions.add(written)
        warnings.warn(
            f"{where} was written by lvm {written}, newer than the installed lvm {__version__}; "
            f"if loading fails, upgrade lvm (pip install -U lvm)",
            UserWarning,
            stacklevel=2,
        )


def _refused_global(err: BaseException) -> str | None:
    """The global that ``torch.load(weights_only=True)`` refused to unpickle, or None for another error."""
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
    return found.group(1) if found else None


#: The first bytes of torch.save's legacy (non-zip) format: pickle protocol 2, then its magic number.
_LEGACY_TORCH = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _is_plain_pickle(p: Path) -> bool:
    """Whether ``p`` is a ``pickle.dump``-ed object: a pickle that is neither of torch.save's formats."""
    with open(p, "rb") as f:
        head = f.read(len(_LEGACY_TORCH))
    return head[:1] == b"\x80" and head != _LEGACY_TORCH and not zipfile.is_zipfile(p)


def _corrupt(p: Path, what: str, err: BaseException) -> CorruptFileError:
    first = (str(err).strip().splitlines() or [""])[0]
    return CorruptFileError(
        f"corrupt {what} {p} ({p.stat().st_size} bytes): not a complete torch file "
        f"({type(err).__name__}: {first})"
    )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (or may run: one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, older_than: float | None = None) -> list[Path]:
    """Remove ``*.ckpt.tmp-<pid>`` files that a killed checkpoint write left in ``folder``.

    A file is stale when its process no longer runs, or (a pid reused by another process) when
    it was last written before ``older_than`` (a ``time.time()``, e.g. the start of this run).
    Files of live writers are kept.

    Returns:
        The removed paths.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f"*{_TMP}*"):
        pid_text = tmp.name.rpartition(_TMP)[2]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            old = older_than is not None and tmp.stat().st_mtime < older_than
            if old or not pid_alive(int(pid_text)):
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints so that a kill at any moment leaves the old file or the new one, never a torn one.

    ``torch.save`` writes to ``<path>.tmp-<pid>`` in the target's own directory; the file is
    flushed and fsynced, then ``os.replace`` renames it over ``path`` (atomic, because both names
    lie on one filesystem) and the directory is fsynced. Lightning's default instead writes
    through an fsspec transaction: a temporary file in the system temp directory, moved with
    ``shutil.move``, which is a copy, not a rename, when that directory and the checkpoint
    directory are on different filesystems (the usual case on clusters), so a kill during the
    copy leaves a truncated checkpoint. A kill leaves at most a stray ``.tmp-<pid>`` file; an
    exception removes it, and the next save into that folder removes those of dead processes
    (:func:`remove_stale_temporaries`). Remote paths (``s3://``, ...) use Lightning's default.
    Loading goes through :func:`read_checkpoint`, so a bad file is named with its problem.
    """

    def __init__(self, trust: bool = False) -> None:
        super().__init__()
        self.trust = trust
        self._started = time.time()
        self._cleaned: set[str] = set()

    def load_checkpoint(
        self, path: _Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        return read_checkpoint(path, map_location=map_location, lvm_model=False, trust=self.trust)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        path = os.path.abspath(os.fspath(path))
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        if folder not in self._cleaned:  # once per folder and run: files of killed writes
            remove_stale_temporaries(folder, older_than=self._started)
            self._cleaned.add(folder)
        tmp = f"{path}{_TMP}{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            if _disk_full(err):
                raise NoSpaceError(errno.ENOSPC, _no_space_message(path)) from err
            raise
        _fsync_dir(folder)


def _disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it: torch.save wraps the OSError) says the disk is full."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        if "No space left on device" in str(err) or "file write failed" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _no_space_message(path: str) -> str:
    """Names the file that could not be written and the newest checkpoint beside it, which is intact."""
    folder = Path(path).parent
    kept = sorted(folder.glob("*.ckpt"), key=lambda q: q.stat().st_mtime)
    last = Path(path) if Path(path).is_file() else (kept[-1] if kept else None)
    intact = f"the last checkpoint {last} is intact" if last else "no earlier checkpoint was written there"
    return f"no space left writing {path}; {intact}. Free some space and resume with --ckpt_path last"


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def with_atomic_checkpoints(plugins: Any, trust: bool = False) -> list[Any]:
    """Trainer ``plugins`` with an :class:`AtomicCheckpointIO` (``trust`` as there) added unless a
    CheckpointIO is already there."""
    if plugins is None:
        plugins = []
    elif not isinstance(plugins, Sequence) or isinstance(plugins, str):
        plugins = [plugins]
    plugins = list(plugins)
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO(trust=trust))
    return plugins


#: Names that lived here in lvm 0.1.0, and their homes now: they warn for one minor version, then go.
_MOVED = {
    "load_vae": "lvm.evaluate.restore",
    "DATAMODULE_KEY": "lvm.evaluation",
    "init_arguments": "lvm.evaluation",
    "record_datamodule": "lvm.evaluation",
    "rng_state": "lvm.evaluation",
    "set_rng_state": "lvm.evaluation",
}


def __getattr__(name: str) -> Any:
    """A name of lvm 0.1.0 that moved (:data:`_MOVED`), with a ``DeprecationWarning`` naming its new home."""
    if name not in _MOVED:
        raise AttributeError(f"module 'lvm.checkpoint' has no attribute {name!r}")
    import importlib
    import warnings

    home = _MOVED[name]
    warnings.warn(
        f"lvm.checkpoint.{name} moved to {home}.{name}; the old name goes in lvm 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(home), name)
