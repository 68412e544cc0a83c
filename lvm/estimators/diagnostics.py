"""Monte Carlo error and Pareto tail shape of importance weights, streamed over chunks of log weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lvm.estimators.base import Estimate
from lvm.estimators.streaming import LogMeanExp

__all__ = ["LogWeights", "mc_stderr", "pareto_k", "pareto_tail_size"]


def pareto_tail_size(num_samples: int) -> int:
    """M = ceil(min(K / 5, 3 sqrt(K))), the weights in the Pareto fit (Vehtari et al. 2024, sec. 3)."""
    return math.ceil(min(0.2 * num_samples, 3 * math.sqrt(num_samples)))


def mc_stderr(ess: Tensor, num_samples: int) -> Tensor:
    r"""Delta-method standard error of log p-hat = log mean_k w_k, (B,) float64.

    With p-hat the mean of K weights, Var[log p-hat] ~= Var[w] / (K mean(w)^2), and with the
    unbiased sample variance of w written through the normalised weights wbar_k = w_k / sum w,
    sum_k wbar_k^2 = 1 / ESS:

        se^2 = (K sum_k wbar_k^2 - 1) / (K - 1) = (K / ESS - 1) / (K - 1).

    Computed from the ESS, itself from log sums of weights relative to their maximum, so it is
    float32-safe. Only as good as the variance of w is finite (see :func:`pareto_k`). NaN for
    K = 1 (one weight says nothing about its spread).

    Args:
        ess: Effective sample size (sum w)^2 / sum w^2, (B,).
        num_samples: K.
    """
    ess = ess.to(torch.float64)
    if num_samples < 2:
        return torch.full_like(ess, math.nan)
    return ((num_samples / ess - 1) / (num_samples - 1)).clamp_min(0).sqrt()


def pareto_k(top_log_w: Tensor, prior_strength: float = 10.0) -> Tensor:
    r"""Shape k of a generalised Pareto fit to the largest weights, one fit per datapoint, (B,) float64.

    ``top_log_w`` (B, M + 1) holds each datapoint's M + 1 largest log weights. The exceedances
    x_i = w_(i) - u over the threshold u = the smallest of them, taken relative to the largest
    weight (exp(lw - max), so nothing over- or underflows), are fitted by the estimator of
    Zhang & Stephens (2009): on a grid of G = 30 + floor(sqrt(M)) values
    b_j = 1 / x_(M) + (1 - sqrt(G / (j - 1/2))) / (3 x_(M/4)), b_j < 1 / max x,
    k(b) = mean_i log(1 - b x_i) (k > 0 for heavy tails) and the profile log-likelihood
    l(b) = M (log(-b / k(b)) - k(b) - 1); b-hat is the mean of the b_j under weights softmax(l),
    k-hat = k(b-hat), shrunk towards 0.5 by the weakly informative prior of Vehtari et al.
    ("Pareto smoothed importance sampling", 2015/2024, sec. 3 and appendix C):
    (M k-hat + 5) / (M + 10).

    k < 0.5: finite variance, the Monte Carlo error is reliable; 0.5 < k < 0.7: finite mean,
    slow convergence; k > 0.7: the variance of the weights is effectively infinite and neither
    the estimate nor its standard error can be trusted (Vehtari et al., sec. 3.2).

    Returns NaN where M < 5 (too few weights for a fit) and -inf where all M + 1 weights are
    equal (a bounded, constant tail, as with the exact posterior as proposal).
    """
    lw = top_log_w.to(torch.float64).sort(-1).values  # (B, M + 1) ascending
    m = lw.shape[-1] - 1
    out = torch.full(lw.shape[:-1], math.nan, dtype=torch.float64, device=lw.device)
    if m < 5:
        return out
    top = lw[:, -1:]
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    w = (lw - top).exp()  # (B, M + 1), largest 1
    x = w[:, 1:] - w[:, :1]  # (B, M) exceedances, ascending
    degenerate = x[:, -1] <= 0
    x = torch.where(degenerate[:, None], torch.ones_like(x), x)  # placeholder, overwritten below
    n_grid = 30 + int(math.sqrt(m))
    j = torch.arange(1, n_grid + 1, dtype=torch.float64, device=lw.device)
    quartile = x[:, max(int(m / 4 + 0.5) - 1, 0)].clamp_min(torch.finfo(torch.float64).tiny)
    b = 1 - (n_grid / (j - 0.5)).sqrt()  # (G,)
    b = b[None, :] / (3 * quartile[:, None]) + 1 / x[:, -1:]  # (B, G), "b" = -theta
    k_grid = torch.log1p(-b[:, :, None] * x[:, None, :]).mean(-1)  # (B, G)
    profile = m * ((-b / k_grid).log() - k_grid - 1)  # (B, G)
    weights = torch.softmax(torch.nan_to_num(profile, nan=-math.inf), -1)
    b_hat = (weights * b).sum(-1, keepdim=True)  # (B, 1)
    k_hat = torch.log1p(-b_hat * x).mean(-1)  # (B,)
    k_hat = (m * k_hat + 0.5 * prior_strength) / (m + prior_strength)
    out = torch.where(degenerate, torch.full_like(k_hat, -math.inf), k_hat)
    return out


class LogWeights:
    r"""Streams chunks of log weights lw (C, B) into log p-hat, ESS, Var[lw], MC error and Pareto k.

    Wraps :class:`~lvm.estimators.streaming.LogMeanExp` (the running logsumexp, ESS and
    variance) and keeps each datapoint's M + 1 largest log weights, merged chunk by chunk with
    ``torch.topk``, M = :func:`pareto_tail_size` (K); memory O(B sqrt(K)), and the result does
    not depend on how the K weights are split into chunks.

    Args:
        num_samples: K, the number of weights that will be added.
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples
        self.tail_size = pareto_tail_size(num_samples) + 1
        self.acc = LogMeanExp()
        self._top: Tensor | None = None

    def update(self, lw: Tensor) -> None:
        """Add a chunk of log weights, (C, B)."""
        self.acc.update(lw)
        both = lw if self._top is None else torch.cat([self._top, lw])
        self._top = both.topk(min(self.tail_size, both.shape[0]), dim=0).values  # (<= M + 1, B)

    def estimate(self) -> Estimate:
        """The :class:`~lvm.estimators.base.Estimate` of all weights added, tensors (B,)."""
        assert self.acc.count == self.num_samples, (self.acc.count, self.num_samples)
        assert self._top is not None
        log_px, ess, var = self.acc.results()
        dtype = log_px.dtype
        return Estimate(
            log_px,
            self.num_samples,
            ess,
            var,
            mc_stderr=mc_stderr(self.acc.ess(), self.num_samples).to(dtype),
            pareto_k=pareto_k(self._top.T).to(dtype),
        )
