"""The base LightningDataModule for data sets held as tensors in memory, served by InMemoryLoader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch import Tensor

from lvm.data.loader import InMemoryLoader, Transform, derive_seed

if TYPE_CHECKING:
    from lvm.likelihoods.base import Likelihood

__all__ = ["SPLITS", "InMemoryDataModule", "Split"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split of a data set: data ``x`` (N, *data_shape) float32 and optional labels ``y`` (N,)."""

    x: Tensor
    y: Tensor | None = None


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test tensors in memory, loaded once per process and served by :class:`InMemoryLoader`.

    Subclasses implement :attr:`data_shape` (known without loading) and :meth:`_load`, and may set
    :attr:`train_transform` (e.g. dynamic binarisation). ``prepare_data`` (rank 0 only) does file
    checks and downloads; ``setup`` loads on every rank and is cached, so calling it twice is free.

    Training batches are shuffled and sharded in ``"train"`` mode (equal batch counts per rank);
    validation and test batches are unshuffled and sharded in ``"eval"`` mode (each datapoint
    exactly once across ranks). A split that is absent or empty gives ``[]``, which Lightning skips.

    Args:
        batch_size: Training batch size (per rank).
        eval_batch_size: Validation/test batch size (per rank); defaults to ``batch_size``.
        seed: Seed of the shuffling and of the training transform.
    """

    def __init__(self, *, batch_size: int, eval_batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.batch_size, self.eval_batch_size, self.seed = int(batch_size), int(eval_batch_size), int(seed)
        self._splits: dict[str, Split] | None = None

    # -- subclass contract --------------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one datapoint, known without loading the data."""
        raise NotImplementedError

    @property
    def train_transform(self) -> Transform | None:
        """Transform applied to every training batch, ``(x, generator) -> x``; None by default."""
        return None

    def _load(self) -> dict[str, Split]:
        """Load the splits (keys among ``"train"``, ``"val"``, ``"test"``; ``"train"`` required)."""
        raise NotImplementedError

    # -- loading ------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load all splits (every rank loads its own copy); later calls do nothing."""
        if self._splits is not None:
            return
        splits = self._load()
        if "train" not in splits or set(splits) - set(SPLITS):
            raise ValueError(
                f"{type(self).__name__}._load must return 'train' and optionally 'val', 'test'; got {sorted(splits)}"
            )
        for name, s in splits.items():
            if tuple(s.x.shape[1:]) != self.data_shape:
                raise ValueError(
                    f"{name} split has datapoints of shape {tuple(s.x.shape[1:])}; expected {self.data_shape}"
                )
            if s.y is not None and s.y.shape[0] != s.x.shape[0]:
                raise ValueError(f"{name} split has {s.x.shape[0]} datapoints but {s.y.shape[0]} labels")
        self._splits = splits

    def split(self, name: str) -> Split | None:
        """The split ``name`` ("train", "val" or "test"), or None if this data set has none."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        if self._splits is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before reading the {name} split")
        return self._splits.get(name)

    def _x(self, name: str) -> Tensor | None:
        s = self.split(name)
        return None if s is None else s.x

    @property
    def train(self) -> Tensor:
        """Training data, (N, *data_shape)."""
        return self._x("train")

    @property
    def val(self) -> Tensor | None:
        """Validation data, or None."""
        return self._x("val")

    @property
    def test(self) -> Tensor | None:
        """Test data, or None."""
        return self._x("test")

    # -- loaders ------------------------------------------------------------------------------
    def train_dataloader(self) -> InMemoryLoader:
        self.setup("fit")
        s = self.split("train")
        loader = InMemoryLoader(
            s.x, labels=s.y, batch_size=self.batch_size, shuffle=True, drop_last=False,
            transform=self.train_transform, seed=self.seed, shard="train",
        )  # fmt: skip
        if self.trainer is not None:  # resume: continue the shuffling sequence at the restored epoch
            loader.set_epoch(self.trainer.current_epoch)
        return loader

    def _eval_loader(self, name: str) -> InMemoryLoader | list:
        self.setup(name)
        s = self.split(name)
        if s is None or s.x.shape[0] == 0:
            return []
        return InMemoryLoader(
            s.x, labels=s.y, batch_size=self.eval_batch_size, shuffle=False, drop_last=False,
            seed=self.seed, shard="eval",
        )  # fmt: skip

    def val_dataloader(self) -> InMemoryLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> InMemoryLoader | list:
        return self._eval_loader("test")

    # -- checks and statistics ----------------------------------------------------------------
    def check(self, likelihood: Likelihood) -> None:
        """Run ``likelihood.check`` on every split, so bad data fails before training starts.

        The training split is checked as the model sees it, after :attr:`train_transform`.

        Raises:
            ValueError: naming the split and the likelihood's complaint (NaN, support, shape).
        """
        self.setup()
        for name in SPLITS:
            s = self.split(name)
            if s is None or s.x.shape[0] == 0:
                continue
            x = s.x
            if name == "train" and self.train_transform is not None:
                x = self.train_transform(x, torch.Generator().manual_seed(derive_seed(self.seed, 2)))
            try:
                likelihood.check(x)
            except ValueError as err:
                raise ValueError(f"{type(self).__name__} {name} split: {err}") from err

    def train_mean(self) -> Tensor:
        """Mean of the training data over datapoints, (*data_shape); for grey images E[binarised pixel]."""
        self.setup()
        return self.train.double().mean(0).to(torch.float32)
