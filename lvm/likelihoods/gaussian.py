"""Gaussian observation model with a fixed, shared learned, or decoder-predicted scale."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal

from lvm.likelihoods.base import Likelihood, ParamSpec, inverse_softplus
from lvm.likelihoods.registry import register_likelihood

__all__ = ["Gaussian"]

_SCALES = ("fixed", "shared", "per_output")


@register_likelihood("gaussian")
class Gaussian(Likelihood):
    r"""Factorised Gaussian, p(x | z) = prod_j N(x_j | mu_j(z), sigma_j^2).

    log p = -1/2 ((x - mu) / sigma)^2 - log sigma - 1/2 log(2 pi), per element.
    The location mu is the decoder output (identity link). The scale sigma is

    - ``"fixed"``: the constant ``scale`` for every element;
    - ``"shared"``: one learned scalar, softplus(s) + ``min_scale``, initialised at ``scale``;
    - ``"per_output"``: predicted by the decoder for each element,
      softplus(f) + ``min_scale`` (heteroscedastic, Kingma & Welling 2014, appendix C.2).

    Args:
        event_shape: Shape of one datapoint.
        scale: How sigma is obtained, one of ``"fixed"``, ``"shared"``, ``"per_output"``.
        init_scale: The fixed sigma, or the initial value of the shared one.
        min_scale: Floor added to learned scales, so the density stays bounded.
    """

    name: ClassVar[str] = "gaussian"
    support: ClassVar[str] = "(-inf, inf)"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        scale: str = "per_output",
        init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(event_shape)
        if scale not in _SCALES:
            raise ValueError(f"gaussian scale must be one of {', '.join(_SCALES)}; got {scale!r}")
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"gaussian init_scale must be positive and finite; got {init_scale}")
        if init_scale <= min_scale and scale != "fixed":
            raise ValueError(f"gaussian init_scale={init_scale} must exceed min_scale={min_scale}")
        self.scale_mode = scale
        self.min_scale = float(min_scale)
        self.init_scale = float(init_scale)
        if scale == "per_output":
            self.params = (ParamSpec("loc"), ParamSpec("scale", "softplus", min_scale))
        else:
            self.params = (ParamSpec("loc"),)
        if scale == "shared":
            raw = inverse_softplus(torch.tensor(init_scale - min_scale))
            self.raw_scale = nn.Parameter(raw)

    def _scale(self, loc: Tensor) -> Tensor:
        if self.scale_mode == "fixed":
            return torch.full((), self.init_scale, dtype=loc.dtype, device=loc.device)
        return nn.functional.softplus(self.raw_scale) + self.min_scale

    def distribution(self, loc: Tensor, scale: Tensor | None = None) -> Distribution:  # type: ignore[override]
        if scale is None:
            scale = self._scale(loc).expand_as(loc)
        return Normal(loc, scale, validate_args=False)

    def raw_from_mean(self, mean: Tensor) -> Tensor:
        if self.scale_mode != "per_output":
            return mean.reshape(-1)
        scale = torch.full_like(mean, self.init_scale)
        return torch.cat([mean.reshape(-1), inverse_softplus(scale - self.min_scale).reshape(-1)])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale_mode!r}"
