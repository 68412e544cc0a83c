"""One run per folder: an advisory lock on a fit's run folder, and no new run over an old run's checkpoints."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

from lvm.checkpoint import pid_alive

__all__ = ["LOCK_NAME", "RunFolderBusyError", "RunFolderLock", "refuse_old_checkpoints"]

#: The lock file inside a run folder; it holds the PID of the fit that holds the lock.
LOCK_NAME = ".lvm-run.lock"

try:  # POSIX: the kernel releases the lock when the process ends, however it ends
    import fcntl
except ImportError:  # pragma: no cover - Windows: the PID in the file decides whether it is stale
    fcntl = None  # type: ignore[assignment]


class RunFolderBusyError(ValueError):
    """Another live process holds the run folder's lock."""


def _holder(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip() or "x")
    return None


class RunFolderLock:
    """An advisory lock on ``folder`` held for the life of a fit (``with RunFolderLock(folder): ...``).

    The lock is ``flock`` on ``folder/.lvm-run.lock`` where the platform has it, so a crash or
    ``kill -9`` releases it; elsewhere the file's PID is checked and a dead holder's lock is taken
    over. Either way the file names the holder's PID, which the error for a second fit quotes.

    Raises:
        RunFolderBusyError: on :meth:`acquire` when a live process holds the lock.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise self._busy(_holder(self.path)) from None
            else:  # pragma: no cover
                pid = _holder(self.path)
                if pid is not None and pid != os.getpid() and pid_alive(pid):
                    raise self._busy(pid)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _busy(self, pid: int | None) -> RunFolderBusyError:
        who = f"PID {pid}" if pid is not None else "another process"
        return RunFolderBusyError(
            f"run folder {self.folder} is in use by another lvm fit ({who}); wait for it to end, "
            f"or give this run its own folder (--trainer.default_root_dir)"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def refuse_old_checkpoints(folders: list[Path], resuming: bool) -> None:
    """Stop a new fit (no ``ckpt_path``) whose checkpoint folders already hold ``.ckpt`` files.

    Lightning would write beside them under ``-v1`` names, or over a file of the same name, so
    two runs' checkpoints would mix; resuming is the one way to write into such a folder.

    Raises:
        ValueError: naming the folder and up to three of its checkpoints.
    """
    if resuming:
        return
    for folder in folders:
        found = sorted(p.name for p in Path(folder).glob("*.ckpt")) if Path(folder).is_dir() else []
        if found:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise ValueError(
                f"checkpoint folder {folder} already holds checkpoints of an earlier run ({shown}); "
                f"resume that run with --ckpt_path last (or a file), or give this run another folder "
                f"(--trainer.default_root_dir)"
            )
