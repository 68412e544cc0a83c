"""What the count likelihoods share: the support {0, 1, 2, ...} and an optional per-datapoint size factor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, constraints

from lvm.likelihoods.base import Likelihood
from lvm.likelihoods.violations import first_violation

__all__ = ["CountLikelihood", "SizeFactored", "count_violation"]

_NO_SAMPLES = torch.Size()


def count_violation(x: Tensor) -> str | None:
    """A message naming the first value of ``x`` that is not a non-negative integer, or None."""
    return first_violation(x, (x < 0) | (x != torch.round(x)), "that are not non-negative integers")


class SizeFactored(Distribution):
    """p(x_{1:D} | z, s) for datapoints x = (x_1, ..., x_D, s) whose last value is a given size factor s.

    ``log_prob`` adds log s to each count's log mean and returns the counts' log density; the
    s column is conditioned on, not modelled (it adds nothing). ``sample`` and ``mean`` take
    s = 1 and put 1 in that column.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self, likelihood: CountLikelihood, params: dict[str, Tensor], batch_shape: torch.Size
    ) -> None:
        self.likelihood, self.params = likelihood, params
        super().__init__(batch_shape, likelihood.event_shape, validate_args=False)

    def _counts(self, log_size: Tensor | None = None) -> Independent:
        params = dict(self.params)
        if log_size is not None:
            key = self.likelihood.log_mean_param
            params[key] = params[key] + log_size.to(params[key].dtype)
        return Independent(self.likelihood.distribution(**params), 1)

    def log_prob(self, value: Tensor) -> Tensor:
        return self._counts(value[..., -1:].log()).log_prob(value[..., :-1])

    def _with_size(self, counts: Tensor) -> Tensor:
        return torch.cat([counts, torch.ones_like(counts[..., :1])], -1)

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        return self._with_size(self._counts().sample(sample_shape))

    @property
    def mean(self) -> Tensor:
        return self._with_size(self._counts().mean)


class CountLikelihood(Likelihood):
    """Base of the count likelihoods: x_j in {0, 1, 2, ...} with mean parameter mu_j = s exp(f_j).

    The decoder predicts each count's log mean f_j (the log link, as in a Poisson or negative
    binomial GLM) under ``log_mean_param``. With ``size_factor=True`` each datapoint carries its
    size factor s > 0 as its last value, as scVI's library size l_n scales the decoder's
    expression frequencies (Lopez et al. 2018, sec. "Generative model"): the event is (D + 1,),
    the decoder predicts parameters for the D counts, and log p(x | z) = sum_j log p(x_j | s
    exp(f_j), ...), conditional on s. The model, estimators and data modules need no change: s
    is a column of the data (e.g. each row's total count, or that over its median).

    Args:
        event_shape: Shape of one datapoint; ``(D + 1,)`` with ``size_factor``.
        size_factor: Whether the last value of each datapoint is its size factor.
    """

    support: ClassVar[str] = "{0, 1, 2, ...}"
    log_mean_param: ClassVar[str] = "log_mean"

    def __init__(self, event_shape: Sequence[int] | int, size_factor: bool = False) -> None:
        super().__init__(event_shape)
        if not isinstance(size_factor, bool):
            raise TypeError(f"{self.name} likelihood: size_factor must be true or false; got {size_factor!r}")
        if size_factor and (len(self.event_shape) != 1 or self.event_shape[0] < 2):
            raise ValueError(
                f"{self.name} likelihood: size_factor needs flat data (D + 1,) with D >= 1 counts and the size "
                f"factor last; got event_shape {tuple(self.event_shape)}"
            )
        self.size_factor = size_factor
        self.count_shape = torch.Size([self.event_shape[0] - 1]) if size_factor else self.event_shape

    @property
    def raw_size(self) -> int:
        return self.num_params * self.count_shape.numel()

    def split(self, raw: Tensor) -> dict[str, Tensor]:
        if not self.size_factor:
            return super().split(raw)
        if raw.shape[-1] != self.raw_size:
            raise ValueError(
                f"{self.name} likelihood expects {self.raw_size} decoder outputs per datapoint "
                f"({self.num_params} parameter(s) x {self.count_shape[0]} counts); got raw shape {tuple(raw.shape)}"
            )
        chunks = raw.unflatten(-1, (self.num_params, self.count_shape[0])).unbind(-2)
        return {spec.name: spec.apply(c) for spec, c in zip(self.params, chunks)}

    def forward(self, raw: Tensor) -> Distribution:
        if not self.size_factor:
            return super().forward(raw)
        return SizeFactored(self, self.split(raw), raw.shape[:-1])

    def support_violation(self, x: Tensor) -> str | None:
        if not self.size_factor:
            return count_violation(x)
        msg = count_violation(x[..., :-1])
        if msg is not None:
            return msg
        s = x[..., -1]
        if (s <= 0).any():
            return f"the size factor (last column) must be > 0; got min={s.min().item():g}"
        return None

    def raw_from_mean(self, mean: Tensor) -> Tensor | None:
        """log mean counts (over the mean size factor) for the log mean; None with other decoder parameters."""
        if self.num_params != 1:
            return None
        counts = mean[..., :-1] / mean[..., -1:] if self.size_factor else mean
        return counts.clamp(min=1e-4).log().reshape(-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, size_factor={self.size_factor}"
