"""Batches sliced from tensors already in memory, sharded across DDP ranks, usable as a Lightning dataloader."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["SHARD_MODES", "InMemoryLoader", "Transform", "derive_seed", "dist_info"]

#: A batch transform, e.g. dynamic binarisation: ``(x, generator) -> x``.
Transform = Callable[[Tensor, torch.Generator], Tensor]

SHARD_MODES = ("train", "eval", "none")


def dist_info() -> tuple[int, int]:
    """(world size, rank) from ``torch.distributed`` if it is initialised, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixing ``keys`` (numpy ``SeedSequence``), so nearby keys give unrelated streams."""
    state = np.random.SeedSequence([int(k) % 2**64 for k in keys]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


class InMemoryLoader:
    """An iterable of batches gathered from a tensor in memory: no per-item Dataset, no collate.

    Each batch is a dict ``{"x": float32 (b, *shape), "index": int64 (b,), "y": labels[index]}``
    (``"y"`` only when ``labels`` is given), where ``index`` holds the dataset indices.

    Shuffling uses ``torch.randperm`` with a generator seeded from ``(seed, epoch)``, the same on
    every rank. The epoch is set with :meth:`set_epoch`; otherwise every new iteration advances it
    by one, so consecutive epochs differ and are reproducible. Iteration is lazy: ``iter(loader)``
    alone (as Lightning does to check a dataloader) neither draws nor advances anything.
    :meth:`state_dict` / :meth:`load_state_dict` make it resumable mid-epoch (see there).

    Sharding across ``torch.distributed`` ranks (W ranks, this one r):

    - ``"train"``: the permutation is truncated to a multiple of W and rank r takes ``perm[r::W]``.
      Every rank gets the same number of batches, so gradient all-reduce never waits on a rank
      that has finished; up to W - 1 datapoints are left out of each epoch (a different few
      each epoch when shuffling).
    - ``"eval"``: rank r takes indices ``r, r + W, r + 2W, ...``; no padding, no duplicates, so
      every datapoint is evaluated exactly once across ranks. Ranks may differ by one
      datapoint (and so by one batch): aggregate with a sum-state metric, never per-step syncs.
    - ``"none"``: every rank sees all the data.

    ``shard=True`` means ``"train"`` when shuffling and ``"eval"`` otherwise; ``False`` means
    ``"none"``. This is not a ``torch.utils.data.DataLoader``, so Lightning uses it as it is and
    injects no ``DistributedSampler``.

    Args:
        x: Data, (N, *shape); batches are cast to float32.
        batch_size: Datapoints per batch.
        shuffle: Draw a new permutation every epoch.
        drop_last: Drop this rank's last batch when it is smaller than ``batch_size``.
        labels: Optional per-datapoint labels, (N, ...), returned as ``"y"``.
        transform: Applied to each batch's ``x`` with a generator seeded from (seed, epoch, rank).
        seed: Base seed for the permutation and the transform.
        shard: One of ``"train"``, ``"eval"``, ``"none"``, or a bool (see above).

    Raises:
        ValueError: for a non-positive batch size, labels of the wrong length or an unknown shard mode.
    """

    def __init__(
        self,
        x: Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        labels: Tensor | None = None,
        transform: Transform | None = None,
        seed: int = 0,
        shard: bool | str = True,
    ) -> None:
        if not torch.is_tensor(x) or x.dim() < 1:
            raise ValueError(
                f"InMemoryLoader expects a tensor of shape (N, ...); got {type(x).__name__} {getattr(x, 'shape', '')}"
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if labels is not None and labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have one entry per datapoint: {x.shape[0]} datapoints, got {labels.shape[0]} labels"
            )
        if shard is True:
            shard = "train" if shuffle else "eval"
        elif shard is False:
            shard = "none"
        if shard not in SHARD_MODES:
            raise ValueError(f"shard must be a bool or one of {SHARD_MODES}; got {shard!r}")
        self.x, self.labels, self.transform = x, labels, transform
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.seed, self.shard = int(seed), str(shard)
        self.epoch = 0  # epoch of the current (or last) iteration
        self._next_epoch = 0
        self._skip = 0  # batches the next iteration skips (resuming mid-epoch)
        self._yielded: int | None = None  # batches the current iteration has yielded; None before any

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch`` (later ones continue from it)."""
        self._next_epoch, self._skip, self._yielded = int(epoch), 0, None

    def state_dict(self) -> dict[str, int]:
        """Where iteration stands: ``{"epoch": e, "batches": b}``, b batches of epoch e yielded.

        Lightning saves this in checkpoints (it treats loaders with ``state_dict`` and
        ``load_state_dict`` as resumable), so a run resumed mid-epoch sees the same batches.
        """
        if self._yielded is None:
            return {"epoch": self._next_epoch, "batches": self._skip}
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration continue epoch ``state["epoch"]`` after ``state["batches"]`` batches.

        The skipped batches are drawn (and transformed) but not yielded, so what follows is
        exactly what an uninterrupted iteration gives; exact only for the same world size.
        """
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):  # the epoch had ended
            epoch, batches = epoch + 1, 0
        self._next_epoch, self._skip, self._yielded = epoch, batches, None

    def _world(self) -> tuple[int, int]:
        return (1, 0) if self.shard == "none" else dist_info()

    def num_samples(self) -> int:
        """Number of datapoints this rank sees per epoch."""
        n = self.x.shape[0]
        world, rank = self._world()
        if self.shard == "train":
            return n // world
        return len(range(rank, n, world))

    def __len__(self) -> int:
        m = self.num_samples()
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def indices(self, epoch: int) -> Tensor:
        """Dataset indices, int64, that this rank visits in ``epoch``, in order."""
        n = self.x.shape[0]
        world, rank = self._world()
        if self.shuffle:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch)))
        else:
            perm = torch.arange(n)
        if self.shard == "train":
            perm = perm[: n - n % world]
        return perm[rank::world]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        epoch = self.epoch = self._next_epoch
        skip, self._skip, self._yielded = self._skip, 0, 0
        self._next_epoch = epoch + 1
        idx = self.indices(epoch).to(self.x.device)
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        idx = idx[:stop]
        # One gather per epoch, then zero-copy slices: much faster on CPU than a gather per batch,
        # and the batches never alias the dataset itself.
        xs = self.x.index_select(0, idx).to(torch.float32)
        ys = None if self.labels is None else self.labels.index_select(0, idx.to(self.labels.device))
        gen = None
        if self.transform is not None:
            gen = torch.Generator(device=self.x.device)
            gen.manual_seed(derive_seed(self.seed, epoch, self._world()[1], 1))
        for start in range(0, stop, self.batch_size):
            end = start + self.batch_size
            xb = xs[start:end]
            if gen is not None:
                xb = self.transform(xb, gen)  # also for skipped batches: advances the generator
            if skip > 0:
                skip -= 1
                self._yielded += 1
                continue
            batch = {"x": xb, "index": idx[start:end]}
            if ys is not None:
                batch["y"] = ys[start:end]
            self._yielded += 1
            yield batch

    def __repr__(self) -> str:
        return (
            f"InMemoryLoader(n={self.x.shape[0]}, shape={tuple(self.x.shape[1:])}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, shard={self.shard!r}, batches={len(self)})"
        )
