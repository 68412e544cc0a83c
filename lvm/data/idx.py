"""A reader for the IDX files of MNIST and Fashion-MNIST (gzip or plain) that writes nothing to disk."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from lvm.errors import CorruptFileError

__all__ = ["IDX_DTYPES", "read_idx"]

#: IDX type codes (third magic byte) and their big-endian numpy dtypes.
IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into a native-endian numpy array.

    The format (LeCun et al.): two zero bytes, a type code, the number of dimensions, then each
    dimension as a big-endian uint32, then the values in row-major order.

    Args:
        path: The file; gzip is detected from its first bytes, not its name.

    Returns:
        A writable array of the stored shape, e.g. uint8 (60000, 28, 28) for MNIST images.

    Raises:
        CorruptFileError: if the gzip stream is truncated or corrupt (names the file).
        ValueError: if the magic number is wrong or the size does not match the header.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise CorruptFileError(
                f"corrupt file {path}: {err} (delete it and copy or download it again)"
            ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: magic bytes {raw[:4].hex()}, expected 0000 then a type code in "
            f"{[hex(c) for c in IDX_DTYPES]} and the number of dimensions"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: IDX header declares {ndim} dimensions but the file has only {len(raw)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the data has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
