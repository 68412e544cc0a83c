"""MNIST and Fashion-MNIST read from torchvision's IDX files, grey or binarised, with labels."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.files import find_file, missing_files_error, resolve_data_dir
from lvm.data.idx import read_idx
from lvm.data.loader import Transform, derive_seed

__all__ = ["MNISTDataModule", "binarize_batch"]

#: Seed of the one-off binarisations (static splits; val/test under "dynamic"), fixed so every
#: run, whatever its training seed, is evaluated on the same binary images.
BINARIZE_SEED = 20140101

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
BINARIZE_MODES = ("dynamic", "static", "none")


def binarize_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """x_bin ~ Bernoulli(x) elementwise, for grey values x in [0, 1] (dynamic binarisation: a fresh draw each time, where Salakhutdinov & Murray 2008 fixed one).

    A pixel becomes 1 when a uniform u in [0, 1) falls below its grey value, so P(1) = x exactly;
    this is several times faster than ``torch.bernoulli`` on CPU.
    """
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (u < x).to(x.dtype)


class MNISTDataModule(InMemoryDataModule):
    """MNIST or Fashion-MNIST, 28x28 images with values in [0, 1] and labels 0-9 as ``"y"``.

    Files are read from ``<data_dir>/MNIST/raw/`` or ``<data_dir>/FashionMNIST/raw/`` (torchvision's
    layout, ``.gz`` or extracted) without writing anything. When they are missing,
    ``prepare_data`` tries torchvision's download; without network it raises a FileNotFoundError
    saying which files to put where.

    Splits: train = the first ``60000 - val_size`` training images, val = the last ``val_size``,
    test = the 10000 t10k images. Binarisation: ``"dynamic"`` draws x ~ Bernoulli(grey) afresh for
    every training batch while val/test are binarised
    once with a fixed seed; ``"static"`` binarises every split once with a fixed seed; ``"none"``
    keeps grey values.

    Args:
        data_dir: Data root; default ``$LVM_DATA_DIR``, else ``./data``.
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        binarize: ``"dynamic"``, ``"static"`` or ``"none"``.
        flatten: Datapoints of shape (784,) if True, else (1, 28, 28).
        val_size: Training images held out for validation (0: no validation set).
        batch_size: Training batch size per rank.
        eval_batch_size: Validation/test batch size per rank.
        seed: Seed of the shuffling and of dynamic binarisation.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        dataset: str = "mnist",
        binarize: str = "dynamic",
        flatten: bool = True,
        val_size: int = 10000,
        batch_size: int = 100,
        eval_batch_size: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        if dataset not in FOLDERS:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(FOLDERS)}")
        if binarize not in BINARIZE_MODES:
            raise ValueError(f"binarize must be one of {BINARIZE_MODES}; got {binarize!r}")
        if int(val_size) != val_size or val_size < 0:
            raise ValueError(f"val_size must be a non-negative integer; got {val_size!r}")
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir)
        self.dataset, self.binarize = dataset, binarize
        self.flatten, self.val_size = bool(flatten), int(val_size)

    @property
    def folder(self) -> Path:
        """The folder holding the four IDX files."""
        return self.data_dir / FOLDERS[self.dataset] / "raw"

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (784,) if self.flatten else (1, 28, 28)

    @property
    def train_transform(self) -> Transform | None:
        return binarize_batch if self.binarize == "dynamic" else None

    def missing_files(self) -> list[str]:
        """Names (``.gz`` form) of the IDX files not found in :attr:`folder`."""
        return [f"{name}.gz" for name in FILES.values() if find_file(self.folder, name) is None]

    def _missing_error(self, missing: list[str], cause: BaseException | None = None) -> FileNotFoundError:
        cls = FOLDERS[self.dataset]
        hint = (
            f"With network access, torchvision.datasets.{cls}(root={str(self.data_dir)!r}, download=True) "
            f"fetches them (prepare_data() does this)."
        )
        return missing_files_error(self.dataset, self.data_dir, f"{cls}/raw", missing, hint, cause)

    def prepare_data(self) -> None:
        """Download the IDX files with torchvision if any is missing; writes only then."""
        missing = self.missing_files()
        if not missing:
            return
        try:
            import torchvision.datasets as tvd

            getattr(tvd, FOLDERS[self.dataset])(root=os.fspath(self.data_dir), train=True, download=True)
        except Exception as err:  # noqa: BLE001 - no network shows up as many exception types
            raise self._missing_error(missing, err) from err
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing)

    def _read(self, part: str) -> tuple[Tensor, Tensor]:
        images = read_idx(find_file(self.folder, FILES[f"{part}_images"]))
        labels = read_idx(find_file(self.folder, FILES[f"{part}_labels"]))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(
                f"{self.folder}: {part} images must be (N, 28, 28) with N labels; "
                f"got images {images.shape}, labels {labels.shape}"
            )
        x = torch.from_numpy(images).to(torch.float32).div_(255.0).reshape(-1, *self.data_shape)
        return x, torch.from_numpy(labels).to(torch.int64)

    def _load(self) -> dict[str, Split]:
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing)
        x, y = self._read("train")
        x_test, y_test = self._read("test")
        n = x.shape[0] - self.val_size
        if n < 1:
            raise ValueError(f"val_size={self.val_size} leaves no training data out of {x.shape[0]} images")
        splits = {"train": Split(x[:n], y[:n]), "val": Split(x[n:], y[n:]), "test": Split(x_test, y_test)}
        if self.val_size == 0:
            del splits["val"]
        once = ("train", "val", "test") if self.binarize == "static" else ("val", "test")
        if self.binarize == "none":
            once = ()
        for i, name in enumerate(("train", "val", "test")):
            if name in once and name in splits:
                g = torch.Generator().manual_seed(derive_seed(BINARIZE_SEED, i))
                splits[name] = Split(binarize_batch(splits[name].x, g), splits[name].y)
        return splits
