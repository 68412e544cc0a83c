"""A data module for any tensors the user already holds."""

from __future__ import annotations

import torch
from torch import Tensor

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.loader import Transform

__all__ = ["TensorDataModule"]


class TensorDataModule(InMemoryDataModule):
    """Serve user tensors (N, *shape) as train/val/test splits; ``data_shape`` is ``train.shape[1:]``.

    Args:
        train: Training data, cast to float32.
        val: Optional validation data of the same datapoint shape.
        test: Optional test data of the same datapoint shape.
        train_labels: Optional labels for ``train``, served as ``"y"`` (likewise ``val_labels``,
            ``test_labels``).
        batch_size: Training batch size per rank.
        eval_batch_size: Validation/test batch size per rank; defaults to ``batch_size``.
        seed: Seed of the shuffling and of ``transform``.
        transform: Optional training-batch transform ``(x, generator) -> x``.

    Raises:
        ValueError: for a split whose datapoint shape differs from ``train``'s, or mismatched labels.
    """

    def __init__(
        self,
        train: Tensor,
        val: Tensor | None = None,
        test: Tensor | None = None,
        *,
        train_labels: Tensor | None = None,
        val_labels: Tensor | None = None,
        test_labels: Tensor | None = None,
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        if not torch.is_tensor(train) or train.dim() < 1 or train.shape[0] == 0:
            raise ValueError(
                f"train must be a non-empty tensor (N, ...); got {getattr(train, 'shape', type(train))}"
            )
        self._shape = tuple(train.shape[1:])
        self._transform = transform
        self._given: dict[str, Split] = {}
        for name, x, y in (
            ("train", train, train_labels),
            ("val", val, val_labels),
            ("test", test, test_labels),
        ):
            if x is None:
                if y is not None:
                    raise ValueError(f"{name}_labels given without {name} data")
                continue
            if tuple(x.shape[1:]) != self._shape:
                raise ValueError(
                    f"{name} datapoints have shape {tuple(x.shape[1:])}; train's are {self._shape}"
                )
            if y is not None and y.shape[0] != x.shape[0]:
                raise ValueError(f"{name} has {x.shape[0]} datapoints but {y.shape[0]} labels")
            self._given[name] = Split(x.detach().to(torch.float32), y)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def train_transform(self) -> Transform | None:
        return self._transform

    def _load(self) -> dict[str, Split]:
        return dict(self._given)
