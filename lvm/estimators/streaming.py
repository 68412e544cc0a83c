"""A streaming log-mean-exp over chunks of log weights, with the effective sample size and their variance."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LogMeanExp"]


class LogMeanExp:
    r"""Accumulates log (1/K) sum_k exp(lw_k) over chunks of log weights lw (C, B), memory O(B).

    Keeps the running log-sums log s1 = log sum_k exp(lw_k) and log s2 = log sum_k exp(2 lw_k),
    each chunk's ``logsumexp`` joined to them with ``logaddexp``, so nothing overflows or
    underflows whatever the scale of lw. At the end

    - log p-hat = log s1 - log K,
    - ESS = (sum w)^2 / sum w^2 = exp(2 log s1 - log s2) (Kong 1992; in [1, K]),
    - Var[lw] by Chan, Golub & LeVeque's (1979) pairwise merge of per-chunk means and squared
      deviations (unbiased, 0 for K = 1).

    Per-datapoint sums are float64; results are returned in the dtype of lw by :meth:`results`.
    """

    def __init__(self) -> None:
        self.count = 0
        self.dtype: torch.dtype | None = None  # of the log weights, for the caller's results
        self._log_s1: Tensor | None = None
        self._log_s2: Tensor | None = None
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, lw: Tensor) -> None:
        """Add a chunk of log weights, (C, B) with C >= 1."""
        if lw.dim() != 2 or lw.shape[0] < 1:
            raise ValueError(f"log weights must have shape (C >= 1, B); got {tuple(lw.shape)}")
        c, self.dtype = lw.shape[0], lw.dtype
        lw = lw.double()
        log_s1, log_s2 = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)  # (B,)
        mean = lw.mean(0)
        m2 = (lw - mean).square().sum(0)
        if self._log_s1 is None or self._log_s2 is None or self._mean is None or self._m2 is None:
            self._log_s1, self._log_s2, self._mean, self._m2 = log_s1, log_s2, mean, m2
        else:
            self._log_s1 = torch.logaddexp(self._log_s1, log_s1)
            self._log_s2 = torch.logaddexp(self._log_s2, log_s2)
            n, delta = self.count + c, mean - self._mean
            self._mean = self._mean + delta * (c / n)
            self._m2 = self._m2 + m2 + delta.square() * (self.count * c / n)
        self.count += c

    def log_mean_exp(self) -> Tensor:
        """log (1/K) sum_k exp(lw_k), (B,) float64."""
        return self._checked(self._log_s1) - math.log(self.count)

    def ess(self) -> Tensor:
        """Effective sample size of the normalised weights, (sum w)^2 / sum w^2, (B,) float64."""
        return (2 * self._checked(self._log_s1) - self._checked(self._log_s2)).exp()

    def variance(self) -> Tensor:
        """Unbiased sample variance of the log weights, (B,) float64 (0 when K = 1)."""
        return self._checked(self._m2) / max(self.count - 1, 1)

    def results(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log mean exp, ESS, variance), each (B,) in the dtype of the log weights."""
        return self.log_mean_exp().to(self.dtype), self.ess().to(self.dtype), self.variance().to(self.dtype)

    def _checked(self, state: Tensor | None) -> Tensor:
        if state is None:
            raise ValueError("no log weights were added; call update() with at least one chunk")
        return state
