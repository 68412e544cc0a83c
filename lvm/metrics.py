"""Dataset means of per-datapoint values that are right across batches and DDP ranks."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["MeanWithStdErr"]


class MeanWithStdErr(Metric):
    """Mean and standard error of per-datapoint values, kept as sums (torchmetrics ``MeanMetric`` style).

    States ``total`` = sum v, ``total_sq`` = sum v^2 and ``count`` = n are summed across
    processes before :meth:`compute`, so the mean is weighted by datapoints, not by batches
    or ranks. Float64 states keep sum v^2 exact enough at n = 10^4 and |v| ~ 10^2.

    ``compute`` returns ``(mean, stderr, count)`` with stderr = s / sqrt(n), s the sample
    standard deviation (0 when n < 2).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:  # type: ignore[override]
        v = values.detach().to(torch.float64).reshape(-1)
        self.total += v.sum()
        self.total_sq += (v * v).sum()
        self.count += v.numel()

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        n = self.count
        mean = self.total / n.clamp_min(1)
        var = (self.total_sq - n * mean * mean).clamp_min(0) / (n - 1).clamp_min(1)
        stderr = torch.where(n > 1, (var / n.clamp_min(1)).sqrt(), torch.zeros_like(var))
        return mean, stderr, n
