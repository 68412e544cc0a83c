"""Larochelle & Murray's statically binarised MNIST (50000/10000/10000), from .npz or .amat files."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import torch

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.files import find_file, missing_files_error, resolve_data_dir

__all__ = ["BinarizedMNISTDataModule", "read_amat", "read_packed"]

SUBDIR = "binarized_mnist"
PACKED = "binarized_mnist_packed.npz"
#: Our split name -> the file's split name.
FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
_ROW_BYTES = 2 * 784  # "0 1 0 ... 1\n"


def _check_bits(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim != 2 or a.shape[1] != 784 or a.size and a.max() > 1:
        raise ValueError(
            f"{path}: expected rows of 784 values in {{0, 1}}; got shape {a.shape}, max {a.max() if a.size else None}"
        )
    return a


def read_amat(path: str | Path) -> np.ndarray:
    """Read a ``binarized_mnist_*.amat`` file (gzip or plain text) into uint8 (N, 784) in {0, 1}.

    The common layout, one digit and one separator per value, is parsed straight from the bytes;
    anything else falls back to ``np.loadtxt``.

    Raises:
        ValueError: if the rows do not hold 784 values in {0, 1}.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    b = np.frombuffer(raw, np.uint8)
    sep = b[1::2]
    if b.size % _ROW_BYTES == 0 and ((sep == 32) | (sep == 10)).all():
        bits = b[::2].reshape(-1, 784) - np.uint8(48)  # ASCII "0"/"1"; a value < "0" wraps to > 1
    else:
        bits = np.loadtxt(io.BytesIO(raw), dtype=np.uint8, ndmin=2)
    return _check_bits(bits, path)


def read_packed(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``binarized_mnist_packed.npz`` (``np.packbits`` rows) into uint8 (N, 784) per file split."""
    path = Path(path)
    with np.load(path) as z:
        missing = [s for s in FILE_SPLITS.values() if s not in z.files]
        if missing:
            raise ValueError(f"{path} lacks key(s) {missing}; it has {z.files}")
        return {s: _check_bits(np.unpackbits(z[s], axis=1), path) for s in FILE_SPLITS.values()}


class BinarizedMNISTDataModule(InMemoryDataModule):
    """The fixed binarisation of MNIST by Larochelle & Murray (2011, "The Neural Autoregressive
    Distribution Estimator", AISTATS): 50000 train, 10000 valid, 10000 test images in {0, 1}, no labels.

    Reads ``<data_dir>/binarized_mnist/binarized_mnist_packed.npz`` if present, else the three
    ``binarized_mnist_{train,valid,test}.amat`` (or ``.amat.gz``) files; writes nothing. When
    files are missing, ``prepare_data`` tries to download the ``.amat`` files and otherwise
    raises a FileNotFoundError naming them and the folder to put them in.

    Args:
        data_dir: Data root; default ``$LVM_DATA_DIR``, else ``./data``.
        flatten: Datapoints of shape (784,) if True, else (1, 28, 28).
        batch_size: Training batch size per rank.
        eval_batch_size: Validation/test batch size per rank.
        seed: Seed of the shuffling.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        flatten: bool = True,
        batch_size: int = 100,
        eval_batch_size: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.save_hyperparameters()
        self.data_dir, self.flatten = resolve_data_dir(data_dir), bool(flatten)

    @property
    def folder(self) -> Path:
        return self.data_dir / SUBDIR

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (784,) if self.flatten else (1, 28, 28)

    def missing_files(self) -> list[str]:
        """Names of the ``.amat`` files not found (none when the packed ``.npz`` is present)."""
        if (self.folder / PACKED).is_file():
            return []
        names = [f"binarized_mnist_{s}.amat" for s in FILE_SPLITS.values()]
        return [n for n in names if find_file(self.folder, n) is None]

    def _missing_error(self, missing: list[str], cause: BaseException | None = None) -> FileNotFoundError:
        hint = (
            f"(or the single {PACKED}; .amat.gz also works). Original source: {URL.format(split='<split>')}."
        )
        return missing_files_error("binarized_mnist", self.data_dir, SUBDIR, missing, hint, cause)

    def prepare_data(self) -> None:
        """Download the missing ``.amat`` files; writes only then."""
        missing = self.missing_files()
        if not missing:
            return
        try:
            from torchvision.datasets.utils import download_url

            for name in missing:
                split = name.removeprefix("binarized_mnist_").removesuffix(".amat")
                download_url(URL.format(split=split), root=os.fspath(self.folder), filename=name)
        except Exception as err:  # noqa: BLE001 - no network shows up as many exception types
            raise self._missing_error(missing, err) from err
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing)

    def _load(self) -> dict[str, Split]:
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing)
        packed = self.folder / PACKED
        if packed.is_file():
            bits = read_packed(packed)
        else:
            bits = {
                s: read_amat(find_file(self.folder, f"binarized_mnist_{s}.amat"))
                for s in FILE_SPLITS.values()
            }
        return {
            name: Split(torch.from_numpy(bits[s]).to(torch.float32).reshape(-1, *self.data_shape))
            for name, s in FILE_SPLITS.items()
        }
