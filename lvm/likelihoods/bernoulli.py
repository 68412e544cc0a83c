"""Bernoulli observation model parameterised by logits."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli as _Bernoulli
from torch.distributions import Distribution

from lvm.likelihoods.base import Likelihood, ParamSpec
from lvm.likelihoods.registry import register_likelihood

__all__ = ["Bernoulli"]


@register_likelihood("bernoulli")
class Bernoulli(Likelihood):
    r"""Factorised Bernoulli, p(x | z) = prod_j sigma(f_j)^{x_j} (1 - sigma(f_j))^{1 - x_j}.

    Seed 001, eq. (3); Kingma & Welling (2014), appendix C.1. The decoder predicts logits
    f_j (identity link) and the log density is evaluated from them,
    log p = x f - softplus(f), which never underflows or takes log(0) in float32. Data may be
    binary or grey values in [0, 1] (then the log density is the negative cross-entropy).
    The mean (``mean``) is the activation probability sigma(f), what seed 001 Task 3 plots.
    """

    name: ClassVar[str] = "bernoulli"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("logits", "identity"),)
    support: ClassVar[str] = "[0, 1]"

    def distribution(self, logits: Tensor) -> Distribution:  # type: ignore[override]
        return _Bernoulli(logits=logits, validate_args=False)

    def support_violation(self, x: Tensor) -> str | None:
        lo, hi = x.min(), x.max()
        if lo < 0 or hi > 1:
            return f"got min={lo.item():.4g}, max={hi.item():.4g}"
        return None

    def raw_from_mean(self, mean: Tensor) -> Tensor:
        p = mean.clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)
