"""Where data files live on disk, and an error that says how to get the ones that are missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_file", "missing_files_error", "resolve_data_dir"]


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` if given, else the environment variable ``LVM_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("LVM_DATA_DIR") or "data").expanduser()


def find_file(folder: Path, name: str, suffixes: Sequence[str] = ("", ".gz")) -> Path | None:
    """The first of ``folder / (name + suffix)`` that exists, or None."""
    for suffix in suffixes:
        path = folder / (name + suffix)
        if path.is_file():
            return path
    return None


def missing_files_error(
    dataset: str,
    data_dir: Path,
    subdir: str,
    missing: Sequence[str],
    hint: str,
    cause: BaseException | None = None,
) -> FileNotFoundError:
    """A FileNotFoundError naming the missing files, the folder they belong in and how to get them.

    Args:
        dataset: Human-readable dataset name.
        data_dir: The data root.
        subdir: The folder under ``data_dir`` that the files must be put in, e.g. ``"MNIST/raw"``.
        missing: File names, as they may be placed there.
        hint: Where to get them (a URL or a download call).
        cause: The download error, if a download was tried.
    """
    folder = data_dir / subdir
    msg = (
        f"{dataset}: {len(missing)} file(s) missing from {folder.resolve()}: {', '.join(missing)}. "
        f"Put them in that exact folder, e.g. from a local copy: "
        f"mkdir -p {folder} && cp /path/to/{subdir}/* {folder}/ ; or pass data_dir= (or set the environment "
        f"variable LVM_DATA_DIR) to a folder that already holds {subdir}/. {hint}"
    )
    if cause is not None:
        text = str(cause)  # torchvision lists every mirror it tried: keep the first reason only
        start = text.find("<urlopen error ")
        if start >= 0:
            reason = text[start + len("<urlopen error ") : text.find(">", start)]
        else:
            reason = f"{type(cause).__name__}: {(text.strip().splitlines() or [''])[0][:200]}"
        msg += f" The download failed: {reason}"
    return FileNotFoundError(msg)
