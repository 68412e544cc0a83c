"""Zero-inflated Poisson observation model: a Poisson with extra zeros, gate logits from the decoder."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor
from torch.distributions import Distribution

from lvm.likelihoods.base import ParamSpec
from lvm.likelihoods.counts import CountLikelihood
from lvm.likelihoods.poisson import LogRatePoisson
from lvm.likelihoods.registry import register_likelihood
from lvm.likelihoods.zero_inflated import ZeroInflated

__all__ = ["ZeroInflatedPoisson"]


@register_likelihood("zip")
class ZeroInflatedPoisson(CountLikelihood):
    r"""Factorised zero-inflated Poisson (Lambert 1992), p(x) = pi 1[x = 0] + (1 - pi) Poisson(x | lambda).

    The decoder predicts the log rate f and the gate logits h of each element: lambda = s e^f
    (s the optional size factor), pi = sigma(h), the probability of an excess zero. Mean
    (1 - pi) lambda, variance (1 - pi) lambda (1 + pi lambda).

    Args:
        event_shape: Shape of one datapoint; ``(D + 1,)`` with ``size_factor``.
        size_factor: Whether each datapoint's last value is its size factor s.
    """

    name: ClassVar[str] = "zip"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("log_rate"), ParamSpec("gate_logits"))
    log_mean_param: ClassVar[str] = "log_rate"

    def distribution(self, log_rate: Tensor, gate_logits: Tensor) -> Distribution:  # type: ignore[override]
        return ZeroInflated(LogRatePoisson(log_rate), gate_logits)
