"""Student's t observation model: a heavy-tailed Gaussian with fixed, shared learned or predicted degrees of freedom."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.distributions import StudentT as _StudentT

from lvm.likelihoods.base import Likelihood, ParamSpec, inverse_softplus
from lvm.likelihoods.registry import register_likelihood

__all__ = ["StudentT"]

_LEARNED = ("shared", "per_output")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"student_t likelihood: {name} must be a positive number; got {value!r}")
    return float(value)


@register_likelihood("student_t")
class StudentT(Likelihood):
    r"""Factorised Student's t, p(x | z) = prod_j t_nu(x_j | mu_j(z), sigma_j(z)).

    log p = lgamma((nu + 1)/2) - lgamma(nu/2) - 1/2 log(nu pi) - log sigma
    - (nu + 1)/2 log(1 + ((x - mu)/sigma)^2 / nu), per element: a scale mixture of Gaussians,
    robust to outliers (Lange, Little & Taylor 1989). mu is the decoder output (identity link),
    sigma = softplus(f) + ``min_scale``. The degrees of freedom nu are

    - a number: fixed, > 0;
    - ``"shared"``: one learned scalar, softplus(g) + ``min_df``, initialised at ``init_df``;
    - ``"per_output"``: predicted by the decoder for each element, softplus(g) + ``min_df``.

    The mean exists for nu > 1 and the variance for nu > 2 (NaN / inf otherwise, as torch's).

    Args:
        event_shape: Shape of one datapoint.
        df: A fixed nu > 0, ``"shared"`` or ``"per_output"``.
        init_df: Initial nu of ``"shared"``.
        min_df: Floor on a learned nu, > 0.
        min_scale: Floor on sigma, > 0.
    """

    name: ClassVar[str] = "student_t"
    support: ClassVar[str] = "(-inf, inf)"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        df: float | str = 4.0,
        init_df: float = 4.0,
        min_df: float = 0.1,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(event_shape)
        if isinstance(df, str):
            if df not in _LEARNED:
                raise ValueError(
                    f"student_t likelihood: df must be a positive number, 'shared' or 'per_output'; got {df!r}"
                )
        else:
            df = _positive("df", df)
        self.min_df, self.min_scale = _positive("min_df", min_df), _positive("min_scale", min_scale)
        self.init_df = _positive("init_df", init_df)
        if df == "shared" and self.init_df <= self.min_df:
            raise ValueError(f"student_t likelihood: init_df={init_df} must exceed min_df={min_df}")
        self.df = df
        self.params = (ParamSpec("loc"), ParamSpec("scale", "softplus", self.min_scale))
        if df == "per_output":
            self.params = (*self.params, ParamSpec("df", "softplus", self.min_df))
        if df == "shared":
            self.raw_df = nn.Parameter(inverse_softplus(torch.tensor(self.init_df - self.min_df)))

    def distribution(self, loc: Tensor, scale: Tensor, df: Tensor | None = None) -> Distribution:  # type: ignore[override]
        if df is None:
            df = (
                F.softplus(self.raw_df) + self.min_df
                if self.df == "shared"
                else torch.tensor(self.df, dtype=loc.dtype)
            )
            df = df.to(loc.dtype).expand_as(loc)
        return _StudentT(df, loc, scale, validate_args=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, df={self.df!r}"
