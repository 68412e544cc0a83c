"""The loop every evaluation of a trained model runs in: eval mode, progress, timing, and its share of the data."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["EvaluationLoop", "gather", "process_group", "shard", "torchrun_world"]

T = TypeVar("T")


class EvaluationLoop:
    """What every evaluation of a trained model shares: eval mode, a progress bar and timings.

    Inside ``with EvaluationLoop(model, total, desc) as loop`` the model is in eval mode (its
    former mode comes back on exit), and :meth:`timed` runs one piece of work, waits for the
    device, advances the bar and returns the result with its seconds. The datapoints of this
    process come from :func:`shard`, what each process computed from :func:`gather`.

    Args:
        model: The model evaluated (the device of its parameters is waited for).
        total: Steps of the progress bar.
        desc: The bar's label.
        progress: Show the bar on stderr (rank 0 only).
        unit: What a step of the bar is.
    """

    def __init__(
        self, model: torch.nn.Module, total: int, desc: str, progress: bool = False, unit: str = "step"
    ) -> None:
        self.model, self.device = model, next(model.parameters()).device
        self.total, self.desc, self.unit = total, desc, unit
        self.progress = progress and _dist_info()[1] == 0

    def __enter__(self) -> EvaluationLoop:
        from tqdm.auto import tqdm

        self._was_training = self.model.training
        self.model.eval()
        self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, disable=not self.progress,
                        file=sys.stderr)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.train(self._was_training)
        self.bar.close()

    def timed(
        self, label: str, work: Callable[..., T], *args: Any, advance: int = 1, **kwargs: Any
    ) -> tuple[T, float]:
        """``work(*args, **kwargs)`` and its seconds (a GPU waited for); the bar shows ``label``, moves by ``advance``."""
        self.bar.set_postfix_str(label)
        t0 = time.perf_counter()
        out = work(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.bar.update(advance)
        return out, seconds


def _dist_info() -> tuple[int, int]:
    from lvm.data.loader import dist_info  # lazily: lvm.data imports Lightning

    return dist_info()


def shard(x: Tensor, index: Tensor, batch_size: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """This process's datapoints r, r + W, ... (rank r of W processes) in batches, on ``device``."""
    world, rank = _dist_info()
    parts = zip(x[rank::world].split(batch_size), index[rank::world].split(batch_size))
    return [(b.to(device), i.to(device)) for b, i in parts]


def gather(value: T) -> list[T]:
    """Every process's ``value``, in rank order (``[value]`` without ``torch.distributed``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def torchrun_world() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """torchrun's process group (nccl on a GPU, else gloo) for the block: (world size, rank); (1, 0) without it.

    An error inside the block is the one raised, not one of the teardown after another rank has gone.
    """
    if torch.distributed.is_initialized():  # a group the caller made: used, and left to the caller
        yield torch.distributed.get_world_size(), torch.distributed.get_rank()
        return
    if torchrun_world() <= 1:
        yield 1, 0
        return
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield torch.distributed.get_world_size(), torch.distributed.get_rank()
    except BaseException:
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()
        raise
    torch.distributed.destroy_process_group()
