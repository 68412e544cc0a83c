"""Data modules that hold their splits as tensors in memory and serve them with a fast loader."""

from __future__ import annotations

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.binarized_mnist import BinarizedMNISTDataModule
from lvm.data.file_data import FileDataModule
from lvm.data.idx import read_idx
from lvm.data.loader import InMemoryLoader, dist_info
from lvm.data.mnist import MNISTDataModule, binarize_batch
from lvm.data.semi_supervised import SemiSupervisedDataModule
from lvm.data.tabular import TabularDataModule, sample_tabular, tabular_log_density
from lvm.data.tensor import TensorDataModule
from lvm.registry import Registry

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
    "dist_info",
    "read_idx",
    "sample_tabular",
    "tabular_log_density",
]

#: Data modules by name (``DATAMODULES.create("tabular", n_train=5)``), and plugins from the
#: entry-point group ``lvm.datamodules``.
DATAMODULES: Registry[type[InMemoryDataModule]] = Registry("data module", "lvm.datamodules")
for _name, _cls in (
    ("mnist", MNISTDataModule),
    ("binarized_mnist", BinarizedMNISTDataModule),
    ("tabular", TabularDataModule),
    ("tensor", TensorDataModule),
    ("files", FileDataModule),
):
    DATAMODULES.add(_name, _cls)
