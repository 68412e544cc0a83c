"""Continuous Bernoulli observation model for data in [0, 1], with its normaliser written in the logit."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import ContinuousBernoulli as _ContinuousBernoulli
from torch.distributions import Distribution

from lvm.likelihoods.base import Likelihood, ParamSpec
from lvm.likelihoods.registry import register_likelihood

__all__ = ["ContinuousBernoulli", "LogitContinuousBernoulli"]

#: Below this |logit| the normaliser, mean and variance are their Taylor series (the closed forms cancel).
_TAYLOR = 0.5
#: Coefficients of f^0, f^2, ..., f^16 in log(f / tanh(f/2)); of f^1, f^3, ..., f^17 in
#: 1 / (1 - e^{-f}) - 1/2 - 1/f; of f^0, ..., f^16 in 1/f^2 - 1 / (4 sinh^2(f/2)) (Bernoulli numbers).
_LOG_NORMALISER = (
    math.log(2), 1 / 12, -7 / 1440, 31 / 90720, -127 / 4838400, 73 / 34214400,
    -1414477 / 7846046208000, 8191 / 523069747200, -16931177 / 12194997534720000,
)  # fmt: skip
_MEAN = (
    1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160, -691 / 1307674368000,
    1 / 74724249600, -3617 / 10670622842880000, 43867 / 5109094217170944000,
)  # fmt: skip
_VARIANCE = (
    1 / 12, -1 / 240, 1 / 6048, -1 / 172800, 1 / 5322240, -691 / 118879488000,
    1 / 5748019200, -3617 / 711374856192000, 43867 / 300534953951232000,
)  # fmt: skip


def _poly(f2: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """sum_i c_i f2^i by Horner's rule."""
    out = torch.full_like(f2, coefficients[-1])
    for c in coefficients[-2::-1]:
        out = out * f2 + c
    return out


def log_normaliser(f: Tensor) -> Tensor:
    r"""log C(lambda) for lambda = sigma(f), C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (C = 2 at lambda = 1/2).

    With 1 - 2 sigma(f) = -tanh(f / 2) and artanh(1 - 2 sigma(f)) = -f / 2 this is
    C = f / tanh(f / 2), so log C = log|f| - log|tanh(f / 2)|: no log(lambda) - log(1 - lambda)
    to cancel near lambda = 1/2, where the normaliser's closed form in lambda loses every digit in
    float32 (and where a typo in it once gave negative KL divergences). For |f| < 0.5 its series
    log 2 + f^2/12 - 7 f^4/1440 + 31 f^6/90720 - ..., to f^16 (the rest below 1e-21).
    """
    a = f.abs()
    small = a < _TAYLOR
    safe = torch.where(small, torch.ones_like(a), a)
    closed = safe.log() - torch.tanh(safe / 2).log()
    series = _poly(f * f, _LOG_NORMALISER)
    return torch.where(small, series, closed)


class LogitContinuousBernoulli(_ContinuousBernoulli):
    r"""``torch.distributions.ContinuousBernoulli`` whose normaliser, mean, variance and sampler use the logit f.

    mean = 1 / (1 - e^{-f}) - 1 / f, variance = 1 / f^2 - 1 / (4 sinh^2(f / 2)) (their series
    below |f| = 0.5, to f^17), and the inverse CDF x = log1p(u expm1(f)) / f, taken at -|f| and reflected.
    """

    def __init__(self, logits: Tensor) -> None:
        super().__init__(logits=logits, validate_args=False)

    def _cont_bern_log_norm(self) -> Tensor:
        return log_normaliser(self.logits)

    @property
    def mean(self) -> Tensor:
        f = self.logits
        small = f.abs() < _TAYLOR
        safe = torch.where(small, torch.ones_like(f), f)
        closed = -1 / torch.expm1(-safe) - 1 / safe
        series = 0.5 + f * _poly(f * f, _MEAN)
        return torch.where(small, series, closed)

    @property
    def variance(self) -> Tensor:
        f = self.logits
        small = f.abs() < _TAYLOR
        safe = torch.where(small, torch.ones_like(f), f)
        closed = 1 / safe.square() - 1 / (4 * torch.sinh(safe / 2).square())
        series = _poly(f * f, _VARIANCE)
        return torch.where(small, series, closed)

    def icdf(self, value: Tensor) -> Tensor:
        a = self.logits.abs()
        safe = torch.where(a > 0, a, torch.ones_like(a))
        low = torch.where(a > 0, torch.log1p(value * torch.expm1(-safe)) / -safe, value)  # x ~ CB(-|f|)
        return torch.where(self.logits > 0, 1 - low, low)


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulli(Likelihood):
    r"""Factorised continuous Bernoulli, p(x | z) = prod_j C(lambda_j) lambda_j^{x_j} (1 - lambda_j)^{1 - x_j}, x_j in [0, 1].

    The normalised density of the Bernoulli log likelihood on grey values (Loaiza-Ganem &
    Cunningham 2019, eq. 3 and 4): log p = x f - softplus(f) + log C(sigma(f)), the decoder
    predicting f with lambda = sigma(f). Its mean (what figures show) is not lambda.
    """

    name: ClassVar[str] = "continuous_bernoulli"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("logits"),)
    support: ClassVar[str] = "[0, 1]"

    def distribution(self, logits: Tensor) -> Distribution:  # type: ignore[override]
        return LogitContinuousBernoulli(logits)

    def support_violation(self, x: Tensor) -> str | None:
        lo, hi = x.min(), x.max()
        if lo < 0 or hi > 1:
            return f"got min={lo.item():.4g}, max={hi.item():.4g}"
        return None
