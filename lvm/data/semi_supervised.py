"""A data module that hides all but a class-balanced subset of training labels, for semi-supervised learning."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.loader import InMemoryLoader, Transform, derive_seed

__all__ = ["LabelledUnlabelledLoader", "SemiSupervisedDataModule"]


class LabelledUnlabelledLoader:
    """Training batches that each join a labelled mini-batch and an unlabelled mini-batch.

    Kingma et al. (2014)'s setup: one epoch is one pass over the unlabelled points; the (small)
    labelled set is cycled, reshuffled on every cycle. Each batch is ``{"x", "index", "y"}`` with
    the labelled points first and ``y = -1`` on the unlabelled ones; ``index`` holds indices into
    the full training split. Without unlabelled points an epoch is one pass over the labelled ones.

    Args:
        labelled: Loader over the labelled points (``labels`` given).
        labelled_index: Training-split index of each labelled point, (N_l,).
        unlabelled: Loader over the unlabelled points, or None when there are none.
        unlabelled_index: Training-split index of each unlabelled point, (N_u,).
    """

    def __init__(
        self,
        labelled: InMemoryLoader,
        labelled_index: Tensor,
        unlabelled: InMemoryLoader | None = None,
        unlabelled_index: Tensor | None = None,
    ) -> None:
        if len(labelled) == 0:
            raise ValueError(f"the labelled loader yields no batches: {labelled!r}")
        self.labelled, self.unlabelled = labelled, unlabelled
        self.labelled_index, self.unlabelled_index = labelled_index, unlabelled_index
        self._next_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch`` (later ones continue from it)."""
        self._next_epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.unlabelled) if self.unlabelled is not None else len(self.labelled)

    @staticmethod
    def _remap(batch: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        return {**batch, "index": index[batch["index"]]}

    def _labelled_stream(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        cycles = math.ceil(len(self) / len(self.labelled))
        for k in range(cycles):  # labelled epochs epoch * cycles + k never repeat across epochs
            self.labelled.set_epoch(epoch * cycles + k)
            for batch in self.labelled:
                yield self._remap(batch, self.labelled_index)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        if self.unlabelled is None:
            yield from self._labelled_stream(epoch)
            return
        self.unlabelled.set_epoch(epoch)
        for lab, unl in zip(self._labelled_stream(epoch), self.unlabelled):
            unl = self._remap(unl, self.unlabelled_index)
            yield {key: torch.cat([lab[key], unl[key]]) for key in ("x", "index", "y")}

    def __repr__(self) -> str:
        return f"LabelledUnlabelledLoader(labelled={self.labelled!r}, unlabelled={self.unlabelled!r})"


class SemiSupervisedDataModule(InMemoryDataModule):
    """Wrap a labelled data module, keeping the labels of ``num_labels`` training points only.

    The labelled subset is class-balanced (``num_labels / num_classes`` points of each class),
    drawn once with ``label_seed``; every other training label becomes -1 (unobserved). Training
    batches are a labelled mini-batch of ``labelled_batch_size`` points followed by an unlabelled
    mini-batch of ``base.batch_size`` points (:class:`LabelledUnlabelledLoader`), both under the
    base module's training transform (e.g. dynamic binarisation). Validation and test splits
    keep all their labels, to measure accuracy.

    Args:
        base: The labelled data module, e.g. ``MNISTDataModule()``; its splits need labels ``y``.
        num_labels: Labelled training points in all; a positive multiple of ``num_classes``.
        num_classes: Number of classes C; labels must lie in [0, C).
        labelled_batch_size: Labelled points per training batch (default ``base.batch_size``).
        label_seed: Seed of the choice of labelled points.

    Raises:
        ValueError: for ``num_labels`` not a positive multiple of ``num_classes`` (here), and on
            ``setup`` for a training split without labels, labels outside [0, C), or a class
            with fewer than ``num_labels / num_classes`` points.
    """

    def __init__(
        self,
        base: InMemoryDataModule,
        num_labels: int = 3000,
        num_classes: int = 10,
        labelled_batch_size: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(batch_size=base.batch_size, eval_batch_size=base.eval_batch_size, seed=base.seed)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        if int(num_labels) != num_labels or num_labels < 1 or num_labels % num_classes:
            raise ValueError(
                f"num_labels must be a positive multiple of num_classes={num_classes} (class-balanced "
                f"subset); got {num_labels!r}"
            )
        lbs = base.batch_size if labelled_batch_size is None else labelled_batch_size
        if int(lbs) != lbs or lbs < 1:
            raise ValueError(f"labelled_batch_size must be a positive integer; got {lbs!r}")
        self.base, self.num_labels, self.num_classes = base, int(num_labels), int(num_classes)
        self.labelled_batch_size, self.label_seed = int(lbs), int(label_seed)
        self.labelled_index: Tensor | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.base.data_shape

    @property
    def train_transform(self) -> Transform | None:
        return self.base.train_transform

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def _load(self) -> dict[str, Split]:
        self.base.setup()
        splits = {name: s for name in ("train", "val", "test") if (s := self.base.split(name)) is not None}
        train = splits["train"]
        if train.y is None:
            raise ValueError(f"{type(self.base).__name__} has no training labels 'y' to keep a subset of")
        y = train.y.long()
        for name, s in splits.items():
            if s.y is not None and s.y.numel() and (s.y.min() < 0 or s.y.max() >= self.num_classes):
                raise ValueError(
                    f"{name} labels must be in [0, {self.num_classes}); "
                    f"got min={int(s.y.min())}, max={int(s.y.max())}"
                )
        if self.num_labels > len(y):
            raise ValueError(f"num_labels={self.num_labels} exceeds the {len(y)} training points")
        per_class = self.num_labels // self.num_classes
        counts = torch.bincount(y, minlength=self.num_classes)
        if counts.min() < per_class:
            raise ValueError(
                f"num_labels={self.num_labels} needs {per_class} points per class; class "
                f"{int(counts.argmin())} has only {int(counts.min())}"
            )
        g = torch.Generator().manual_seed(derive_seed(self.label_seed, 3))
        chosen = [(y == c).nonzero().squeeze(-1) for c in range(self.num_classes)]
        chosen = [idx[torch.randperm(len(idx), generator=g)[:per_class]] for idx in chosen]
        self.labelled_index = torch.cat(chosen).sort().values
        observed = torch.full_like(y, -1)
        observed[self.labelled_index] = y[self.labelled_index]
        splits["train"] = Split(train.x, observed)
        return splits

    def train_dataloader(self) -> LabelledUnlabelledLoader:
        self.setup("fit")
        s = self.split("train")
        lab = self.labelled_index
        unl = (s.y < 0).nonzero().squeeze(-1)
        common = dict(shuffle=True, drop_last=False, transform=self.train_transform, shard="train")
        labelled = InMemoryLoader(
            s.x[lab], labels=s.y[lab], batch_size=self.labelled_batch_size,
            seed=derive_seed(self.seed, 4), **common,
        )  # fmt: skip
        unlabelled = None
        if len(unl):
            unlabelled = InMemoryLoader(
                s.x[unl],
                labels=s.y[unl],
                batch_size=self.batch_size,
                seed=derive_seed(self.seed, 5),
                **common,
            )
        loader = LabelledUnlabelledLoader(labelled, lab, unlabelled, unl)
        if self.trainer is not None:  # resume: continue the shuffling sequence at the restored epoch
            loader.set_epoch(self.trainer.current_epoch)
        return loader
