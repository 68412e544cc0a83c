"""Data modules that hold their splits as tensors in memory and serve them with a fast loader."""

from __future__ import annotations

import difflib
from typing import Any

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.binarized_mnist import BinarizedMNISTDataModule
from lvm.data.file_data import FileDataModule
from lvm.data.idx import read_idx
from lvm.data.loader import InMemoryLoader, dist_info
from lvm.data.mnist import MNISTDataModule, binarize_batch
from lvm.data.semi_supervised import SemiSupervisedDataModule
from lvm.data.tabular import TabularDataModule, sample_tabular, tabular_log_density
from lvm.data.tensor import TensorDataModule
from lvm.registry import UnknownNameError

__all__ = [
    "DATAMODULES",
    "BinarizedMNISTDataModule",
    "FileDataModule",
    "InMemoryDataModule",
    "InMemoryLoader",
    "MNISTDataModule",
    "SemiSupervisedDataModule",
    "Split",
    "TabularDataModule",
    "TensorDataModule",
    "binarize_batch",
    "create_datamodule",
    "dist_info",
    "read_idx",
    "sample_tabular",
    "tabular_log_density",
]

#: Data modules by name.
DATAMODULES: dict[str, type[InMemoryDataModule]] = {
    "mnist": MNISTDataModule,
    "binarized_mnist": BinarizedMNISTDataModule,
    "tabular": TabularDataModule,
    "tensor": TensorDataModule,
    "files": FileDataModule,
}


def create_datamodule(name: str, **kwargs: Any) -> InMemoryDataModule:
    """Build the data module registered as ``name`` with ``kwargs``.

    Raises:
        UnknownNameError: for an unknown name, listing the known ones and the closest match.
    """
    if name not in DATAMODULES:
        close = difflib.get_close_matches(name, DATAMODULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown data module {name!r}; known: {', '.join(DATAMODULES)}.{hint}")
    return DATAMODULES[name](**kwargs)
