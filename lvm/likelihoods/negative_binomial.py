"""Negative binomial observation model for overdispersed counts: mean and inverse dispersion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.distributions import NegativeBinomial as _NegativeBinomial

from lvm.likelihoods.base import ParamSpec
from lvm.likelihoods.counts import CountLikelihood
from lvm.likelihoods.registry import register_likelihood

__all__ = ["NegativeBinomial", "mean_dispersion_nb"]

_DISPERSIONS = ("feature", "datapoint")


def mean_dispersion_nb(log_mean: Tensor, log_theta: Tensor) -> _NegativeBinomial:
    """NB(mu, theta) as ``torch.distributions.NegativeBinomial(total_count=theta, logits=log mu - log theta)``.

    torch's success probability is p = sigma(log mu - log theta) = mu / (mu + theta), so its mean
    theta p / (1 - p) is mu and its log_prob
    lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) - theta softplus(log mu - log theta)
    - x softplus(log theta - log mu) is the mean-dispersion form, evaluated in log space.
    """
    log_theta = log_theta.expand_as(log_mean)
    return _NegativeBinomial(total_count=log_theta.exp(), logits=log_mean - log_theta, validate_args=False)


@register_likelihood("negative_binomial")
class NegativeBinomial(CountLikelihood):
    r"""Factorised negative binomial with mean mu and inverse dispersion theta (a gamma-Poisson mixture).

    p(x | mu, theta) = Gamma(x + theta) / (Gamma(theta) x!) (theta / (theta + mu))^theta
    (mu / (theta + mu))^x, so E[x] = mu and Var[x] = mu + mu^2 / theta (Hilbe 2011, eq. 8.29;
    the parameterisation of scVI, Lopez et al. 2018). mu = s e^f with the log link (s the
    optional size factor); theta = e^g is

    - ``"feature"``: one learned value per feature (column), shared by all datapoints (scVI's
      ``dispersion="gene"``), initialised at ``init_theta``;
    - ``"datapoint"``: predicted by the decoder for each element (scVI's ``"gene-cell"``).

    Args:
        event_shape: Shape of one datapoint; ``(D + 1,)`` with ``size_factor``.
        dispersion: ``"feature"`` or ``"datapoint"``.
        init_theta: Initial inverse dispersion of ``"feature"``, > 0.
        size_factor: Whether each datapoint's last value is its size factor s.
    """

    name: ClassVar[str] = "negative_binomial"
    log_mean_param: ClassVar[str] = "log_mean"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        dispersion: str = "feature",
        init_theta: float = 1.0,
        size_factor: bool = False,
    ) -> None:
        if dispersion not in _DISPERSIONS:
            raise ValueError(
                f"{self.name} likelihood: dispersion must be one of {', '.join(_DISPERSIONS)}; got {dispersion!r}"
            )
        if (
            isinstance(init_theta, bool)
            or not isinstance(init_theta, (int, float))
            or not 0 < init_theta < float("inf")
        ):
            raise ValueError(
                f"{self.name} likelihood: init_theta must be a positive number; got {init_theta!r}"
            )
        super().__init__(event_shape, size_factor)
        self.params = (ParamSpec("log_mean"),) + (
            (ParamSpec("log_theta"),) if dispersion == "datapoint" else ()
        )
        self.dispersion = dispersion
        if dispersion == "feature":
            self.log_theta = nn.Parameter(torch.full(self.count_shape, float(init_theta)).log())

    def distribution(self, log_mean: Tensor, log_theta: Tensor | None = None) -> Distribution:  # type: ignore[override]
        return mean_dispersion_nb(log_mean, self.log_theta if log_theta is None else log_theta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dispersion={self.dispersion!r}"
