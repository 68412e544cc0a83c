"""Poisson observation model for counts, with the log link."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.distributions import Poisson as _Poisson

from lvm.likelihoods.base import ParamSpec
from lvm.likelihoods.counts import CountLikelihood
from lvm.likelihoods.registry import register_likelihood

__all__ = ["LogRatePoisson", "Poisson"]


class LogRatePoisson(_Poisson):
    """``torch.distributions.Poisson`` from its log rate eta: log p = x eta - e^eta - lgamma(x + 1).

    x eta stands for torch's xlogy(x, e^eta), which is -inf for x > 0 once e^eta underflows
    (eta < -103 in float32); the gradient in eta is x - e^eta.
    """

    def __init__(self, log_rate: Tensor) -> None:
        self.log_rate = log_rate
        super().__init__(log_rate.exp(), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return value * self.log_rate - self.rate - torch.lgamma(value + 1)


@register_likelihood("poisson")
class Poisson(CountLikelihood):
    r"""Factorised Poisson, p(x | z) = prod_j Poisson(x_j | lambda_j(z)), x_j in {0, 1, 2, ...}.

    log p = x log lambda - lambda - log x!, per element, with the log link lambda = s e^f (the
    canonical link of the Poisson GLM; s the optional size factor, see
    :class:`~lvm.likelihoods.counts.CountLikelihood`).

    Args:
        event_shape: Shape of one datapoint; ``(D + 1,)`` with ``size_factor``.
        size_factor: Whether each datapoint's last value is its size factor s.
    """

    name: ClassVar[str] = "poisson"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("log_rate"),)
    log_mean_param: ClassVar[str] = "log_rate"

    def distribution(self, log_rate: Tensor) -> Distribution:  # type: ignore[override]
        return LogRatePoisson(log_rate)
