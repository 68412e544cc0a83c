"""The datapoints an evaluation runs on: a tensor or a data module's test split, checked as ``lvm fit`` checks data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lvm.model import LatentVariableModel

if TYPE_CHECKING:
    import lightning as L

__all__ = ["check_data", "evaluation_data"]


def check_data(
    x: Tensor, model: LatentVariableModel, source: str = "data", index: Tensor | None = None
) -> None:
    """Validate data as ``lvm fit`` does (shape, then ``likelihood.check``), naming the first bad datapoint.

    ``lvm fit`` runs the likelihood's own check (finite values, support) on every split; here
    the same check runs on ``x``, and on failure a bisection over datapoints finds the first one
    that fails, so the message names its dataset index and the offending value.

    Args:
        x: Data (N, *event_shape).
        model: The model whose likelihood defines the support.
        source: What ``x`` is, for the message, e.g. ``"MNISTDataModule test split"``.
        index: Dataset indices of the datapoints (default 0..N-1).

    Raises:
        ValueError: naming ``source``, the datapoint's index and the likelihood's complaint.
    """
    shape = tuple(model.event_shape)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{source}: datapoints have shape {tuple(x.shape[1:])}; the model expects {shape} "
            "(check the data module's flatten option)"
        )
    lik = model.likelihood
    try:
        lik.check(x)
        return
    except ValueError as err:
        first = err
    lo, hi = 0, x.shape[0]  # a failing datapoint lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            lik.check(x[lo:mid])
            lo = mid
        except ValueError:
            hi = mid
    i = int(index[lo]) if index is not None else lo
    try:
        lik.check(x[lo])  # one datapoint: the message's element index lies inside it
    except ValueError as err:
        raise ValueError(f"{source}, datapoint {i}: {err}") from None
    raise ValueError(f"{source}: {first}") from None


def evaluation_data(data: Tensor | L.LightningDataModule, index: Tensor | None) -> tuple[Tensor, Tensor, str]:
    """(x, dataset indices, description) of a tensor or of a data module's whole test split.

    Raises:
        ValueError: for an empty tensor or split, or indices of the wrong shape.
        TypeError: for anything but a tensor or a LightningDataModule.
    """
    if torch.is_tensor(data):
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data must be a non-empty tensor (N, ...); got shape {tuple(data.shape)}")
        index = torch.arange(data.shape[0]) if index is None else torch.as_tensor(index).to(torch.int64)
        if index.shape != data.shape[:1]:
            raise ValueError(f"index must have shape ({data.shape[0]},); got {tuple(index.shape)}")
        return data, index, "data"
    if index is not None:
        raise ValueError("index is taken from the data module; pass it only with a tensor")
    name = f"{type(data).__name__} test split"
    if not (hasattr(data, "setup") and hasattr(data, "test_dataloader")):
        raise TypeError(f"data must be a tensor or a LightningDataModule; got {type(data).__name__}")
    _prepare(data)
    data.setup("test")
    if hasattr(data, "split"):  # an InMemoryDataModule: the whole split, unsharded
        split = data.split("test")
        if split is None or split.x.shape[0] == 0:
            raise ValueError(f"{type(data).__name__} has no test split to evaluate")
        return split.x, torch.arange(split.x.shape[0]), name
    return (*_collect(data.test_dataloader(), name), name)


def _prepare(dm: L.LightningDataModule) -> None:
    """``prepare_data`` on rank 0 (downloads, file checks), then a barrier, as Lightning does."""
    from lvm.data.loader import dist_info  # lazily: lvm.data imports Lightning

    world, rank = dist_info()
    if rank == 0:
        dm.prepare_data()
    if world > 1:
        torch.distributed.barrier()


def _collect(loader: Iterable[Any], name: str) -> tuple[Tensor, Tensor]:
    """All batches of a loader of ``{"x", "index"}`` dicts (or tensors, numbered in order)."""
    xs, idx, n = [], [], 0
    for batch in loader:
        x = batch["x"] if isinstance(batch, dict) else batch[0] if isinstance(batch, list | tuple) else batch
        index = batch.get("index") if isinstance(batch, dict) else None
        idx.append(torch.arange(n, n + x.shape[0]) if index is None else torch.as_tensor(index).cpu())
        xs.append(x.cpu())
        n += x.shape[0]
    if n == 0:
        raise ValueError(f"the {name} is empty")
    return torch.cat(xs), torch.cat(idx).to(torch.int64)
