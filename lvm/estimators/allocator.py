"""Keep glibc from handing large freed blocks back to the OS, so chunked estimation stops page-faulting."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


def keep_freed_memory(mmap_threshold: int = _MMAP_MAX, trim_threshold: int = 2**30) -> bool:
    """Tune this process's glibc ``malloc`` so blocks up to ``mmap_threshold`` bytes are reused.

    By default glibc serves large blocks with ``mmap`` and returns them on ``free``, and trims the
    heap when its free top exceeds twice the last such block. A chunked estimator allocates and
    frees the same few-MB tensors (decoder outputs, likelihood temporaries) every chunk, so each
    chunk pays fresh page faults on all of them: in a VM this doubled the time of the importance
    estimator on the IWAE MNIST model (``benchmarks/bench_estimator.py``). With
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` raised the blocks stay in the heap and are
    reused; the price is that the process keeps up to its peak working set.

    A process-wide setting, for command-line entry points (``lvm compare``), not libraries.
    The same effect without code: ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``,
    or jemalloc/tcmalloc through ``LD_PRELOAD``.

    Args:
        mmap_threshold: Blocks at least this large still use ``mmap`` (at most 32 MiB).
        trim_threshold: Free heap top, in bytes, kept before trimming.

    Returns:
        True if both settings were applied (glibc on Linux), False elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, min(int(mmap_threshold), _MMAP_MAX)) == 1
    return mallopt(_M_TRIM_THRESHOLD, min(int(trim_threshold), 2**31 - 1)) == 1 and ok
