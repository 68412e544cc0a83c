"""Beta observation model for proportions in (0, 1), in the mean-precision parameterisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Beta as _Beta
from torch.distributions import Distribution

from lvm.likelihoods.base import Likelihood, ParamSpec
from lvm.likelihoods.registry import register_likelihood
from lvm.likelihoods.violations import first_violation

__all__ = ["Beta"]

_NO_SAMPLES = torch.Size()


class _OpenBeta(_Beta):
    """``torch.distributions.Beta`` from (alpha, beta), with log_prob written out and draws kept inside (0, 1).

    A draw that rounds to 0 or 1 (likely when alpha or beta is small) is moved to the nearest
    float inside, where the density is finite; the probability moved is below the float's spacing.
    """

    def __init__(self, alpha: Tensor, beta: Tensor) -> None:
        self.alpha, self.beta = alpha, beta
        super().__init__(alpha, beta, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        a, b = self.alpha, self.beta
        return (
            (a - 1) * value.log()
            + (b - 1) * (1 - value).log()
            + torch.lgamma(a + b)
            - torch.lgamma(a)
            - torch.lgamma(b)
        )

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        x = super().rsample(sample_shape)
        info = torch.finfo(x.dtype)
        return x.clamp(info.tiny, 1 - info.eps / 2)


@register_likelihood("beta")
class Beta(Likelihood):
    r"""Factorised beta for proportions, p(x | z) = prod_j Beta(x_j | mu_j phi_j, (1 - mu_j) phi_j), x_j in (0, 1).

    The mean-precision parameterisation of beta regression (Ferrari & Cribari-Neto 2004, eq. 2):
    E[x] = mu = sigma(f_1) and Var[x] = mu (1 - mu) / (1 + phi) with the precision
    phi = softplus(f_2) + ``min_precision``. alpha = sigma(f_1) phi and beta = sigma(-f_1) phi are
    taken from the logit, so neither rounds to 0 when mu is near 1; log p = (alpha - 1) log x +
    (beta - 1) log(1 - x) - log B(alpha, beta). 0 and 1 are outside the support.

    Args:
        event_shape: Shape of one datapoint.
        min_precision: Floor on phi, > 0.
    """

    name: ClassVar[str] = "beta"
    support: ClassVar[str] = "(0, 1)"

    def __init__(self, event_shape: Sequence[int] | int, min_precision: float = 1e-3) -> None:
        if (
            isinstance(min_precision, bool)
            or not isinstance(min_precision, (int, float))
            or not 0 < min_precision < float("inf")
        ):
            raise ValueError(
                f"beta likelihood: min_precision must be a positive number; got {min_precision!r}"
            )
        super().__init__(event_shape)
        self.min_precision = float(min_precision)
        self.params = (ParamSpec("mean_logit"), ParamSpec("precision", "softplus", self.min_precision))

    def distribution(self, mean_logit: Tensor, precision: Tensor) -> Distribution:
        return _OpenBeta(torch.sigmoid(mean_logit) * precision, torch.sigmoid(-mean_logit) * precision)

    def support_violation(self, x: Tensor) -> str | None:
        return first_violation(x, (x <= 0) | (x >= 1), "outside (0, 1)")
