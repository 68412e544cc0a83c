"""A streaming log-mean-exp over chunks of log weights, with the effective sample size and their variance."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LogMeanExp"]


class LogMeanExp:
    r"""Accumulates log (1/K) sum_k exp(lw_k) over chunks of log weights lw (C, B), memory O(B).

    Keeps a running maximum m and the sums s1 = sum_k exp(lw_k - m), s2 = sum_k exp(2 (lw_k - m)),
    rescaled by exp(m_old - m_new) (and its square) when m grows, so nothing overflows or
    underflows whatever the scale of lw. At the end

    - log p-hat = m + log s1 - log K,
    - ESS = (sum w)^2 / sum w^2 = exp(2 log s1 - log s2) (Kong 1992; in [1, K]),
    - Var[lw] by Chan, Golub & LeVeque's (1979) pairwise merge of per-chunk means and squared
      deviations (unbiased, 0 for K = 1).

    Per-datapoint sums are float64; a chunk is reduced in the dtype of lw.
    """

    def __init__(self) -> None:
        self.count = 0
        self.dtype: torch.dtype | None = None  # of the log weights, for the caller's results
        self._max: Tensor | None = None
        self._s1: Tensor | None = None
        self._s2: Tensor | None = None
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, lw: Tensor) -> None:
        """Add a chunk of log weights, (C, B) with C >= 1."""
        if lw.dim() != 2 or lw.shape[0] < 1:
            raise ValueError(f"log weights must have shape (C >= 1, B); got {tuple(lw.shape)}")
        c = lw.shape[0]
        self.dtype = lw.dtype
        chunk_max = lw.amax(0)  # (B,)
        new_max = chunk_max if self._max is None else torch.maximum(self._max, chunk_max)
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))  # all -inf: no shift
        e = (lw - shift).exp_()  # (C, B), <= 1
        s1, s2 = e.sum(0, dtype=torch.float64), e.square_().sum(0, dtype=torch.float64)
        chunk_mean = lw.mean(0, dtype=torch.float64)  # (B,)
        chunk_m2 = (lw - chunk_mean.to(lw.dtype)).square_().sum(0, dtype=torch.float64)
        if self._max is None:
            self._s1, self._s2, self._mean, self._m2 = s1, s2, chunk_mean, chunk_m2
        else:
            assert self._s1 is not None and self._s2 is not None and self._mean is not None
            assert self._m2 is not None
            old_shift = torch.where(torch.isfinite(self._max), self._max, torch.zeros_like(self._max))
            r = (old_shift - shift).to(torch.float64).exp()
            self._s1 = self._s1 * r + s1
            self._s2 = self._s2 * r * r + s2
            n = self.count + c
            delta = chunk_mean - self._mean
            self._mean = self._mean + delta * (c / n)
            self._m2 = self._m2 + chunk_m2 + delta.square() * (self.count * c / n)
        self._max = new_max
        self.count += c

    def log_mean_exp(self) -> Tensor:
        """log (1/K) sum_k exp(lw_k), (B,) float64."""
        self._check()
        assert self._max is not None and self._s1 is not None
        shift = torch.where(torch.isfinite(self._max), self._max, torch.zeros_like(self._max))
        return shift.to(torch.float64) + self._s1.log() - math.log(self.count)

    def ess(self) -> Tensor:
        """Effective sample size of the normalised weights, (sum w)^2 / sum w^2, (B,) float64."""
        self._check()
        assert self._s1 is not None and self._s2 is not None
        return (2 * self._s1.log() - self._s2.log()).exp()

    def variance(self) -> Tensor:
        """Unbiased sample variance of the log weights, (B,) float64 (0 when K = 1)."""
        self._check()
        assert self._m2 is not None
        return self._m2 / max(self.count - 1, 1)

    def results(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log mean exp, ESS, variance), each (B,) in the dtype of the log weights."""
        return self.log_mean_exp().to(self.dtype), self.ess().to(self.dtype), self.variance().to(self.dtype)

    def _check(self) -> None:
        if self.count == 0:
            raise ValueError("no log weights were added; call update() with at least one chunk")
