"""Zero-inflated negative binomial observation model (scVI's default), gate logits from the decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor
from torch.distributions import Distribution

from lvm.likelihoods.base import ParamSpec
from lvm.likelihoods.negative_binomial import NegativeBinomial, mean_dispersion_nb
from lvm.likelihoods.registry import register_likelihood
from lvm.likelihoods.zero_inflated import ZeroInflated

__all__ = ["ZeroInflatedNegativeBinomial"]


@register_likelihood("zinb")
class ZeroInflatedNegativeBinomial(NegativeBinomial):
    r"""Factorised zero-inflated negative binomial, p(x) = pi 1[x = 0] + (1 - pi) NB(x | mu, theta).

    The likelihood of scVI (Lopez et al. 2018, sec. "Generative model"): NB with mean
    mu = s e^f and inverse dispersion theta as :class:`NegativeBinomial` (``dispersion`` per
    feature or per datapoint), and the gate pi = sigma(h), h predicted by the decoder for each
    element. Mean (1 - pi) mu, variance (1 - pi) (mu + mu^2 / theta + pi mu^2).

    Args:
        event_shape: Shape of one datapoint; ``(D + 1,)`` with ``size_factor``.
        dispersion: ``"feature"`` or ``"datapoint"``.
        init_theta: Initial inverse dispersion of ``"feature"``, > 0.
        size_factor: Whether each datapoint's last value is its size factor s.
    """

    name: ClassVar[str] = "zinb"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        dispersion: str = "feature",
        init_theta: float = 1.0,
        size_factor: bool = False,
    ) -> None:
        super().__init__(event_shape, dispersion, init_theta, size_factor)
        self.params = (*self.params, ParamSpec("gate_logits"))

    def distribution(  # type: ignore[override]
        self, log_mean: Tensor, gate_logits: Tensor, log_theta: Tensor | None = None
    ) -> Distribution:
        return ZeroInflated(
            mean_dispersion_nb(log_mean, self.log_theta if log_theta is None else log_theta), gate_logits
        )

    def raw_from_mean(self, mean: Tensor) -> Tensor | None:
        return None
