"""Discretised mixture of logistics for 8-bit images (PixelCNN++), each pixel's K components from the decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints

from lvm.likelihoods.base import Likelihood
from lvm.likelihoods.registry import register_likelihood
from lvm.likelihoods.violations import first_violation

__all__ = ["DiscretizedLogistic", "DiscretizedLogisticMixture"]

_NO_SAMPLES = torch.Size()
#: Bin edges handled per pass of ``mean`` and ``variance`` (bounds their temporary arrays).
_EDGES_PER_PASS = 32


class DiscretizedLogisticMixture(Distribution):
    r"""A mixture of logistics rounded to the grid {0, 1/(L-1), ..., 1}, the end bins open (Salimans et al. 2017, eq. 2).

    Bin v has mass sum_k pi_k [sigma(a_k) - sigma(b_k)], a_k = (v + delta - mu_k) / s_k,
    b_k = (v - delta - mu_k) / s_k, delta = 1 / (2 (L - 1)); the bin at 0 takes all mass below
    delta and the bin at 1 all mass above 1 - delta. Each component's log mass is
    log sigma(a) + log sigma(-b) + log(1 - e^{-(a - b)}), exact and finite for any scale, as
    sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^{b - a}); the end bins drop the terms of
    the missing edge. (PixelCNN++'s code switches to the density at the bin centre where the
    difference underflows; this form needs no switch.)

    Args:
        logits: Mixture logits, (*batch, K).
        loc: Component locations mu_k on the [0, 1] scale, (*batch, K).
        scale: Component scales s_k > 0, (*batch, K).
        levels: L, the number of grey levels.
    """

    arg_constraints: ClassVar[dict] = {}
    has_enumerate_support = True
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor, levels: int = 256) -> None:
        self.logits, self.loc, self.scale, self.levels = logits, loc, scale, levels
        self.half_bin = 0.5 / (levels - 1)
        super().__init__(logits.shape[:-1], validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.interval(0.0, 1.0)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        v = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device) / (self.levels - 1)
        v = v.reshape(-1, *(1,) * len(self.batch_shape))
        return v.expand(-1, *self.batch_shape) if expand else v

    def log_prob(self, value: Tensor) -> Tensor:
        x = value.to(self.loc.dtype).unsqueeze(-1)  # (..., 1) against (*batch, K)
        inv = self.scale.reciprocal()
        a = (x + self.half_bin - self.loc) * inv
        b = (x - self.half_bin - self.loc) * inv
        width = torch.log(-torch.expm1(-2 * self.half_bin * inv))  # log(1 - e^{-(a - b)}), (*batch, K)
        top, bottom = x >= 1 - self.half_bin, x <= self.half_bin
        log_mass = (
            torch.where(top, 0.0, F.logsigmoid(a))
            + torch.where(bottom, 0.0, F.logsigmoid(-b))
            + torch.where(top | bottom, 0.0, width)
        )
        return torch.logsumexp(log_mass + torch.log_softmax(self.logits, -1), -1)

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        with torch.no_grad():
            k = Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            loc = self.loc.expand(*sample_shape, *self.loc.shape).gather(-1, k).squeeze(-1)
            scale = self.scale.expand(*sample_shape, *self.scale.shape).gather(-1, k).squeeze(-1)
            u = torch.rand_like(loc).clamp(torch.finfo(loc.dtype).tiny, 1 - torch.finfo(loc.dtype).eps)
            x = loc + scale * (u.log() - torch.log1p(-u))
            return torch.round(x.clamp(0, 1) * (self.levels - 1)) / (self.levels - 1)

    def _cdf_at_edges(self) -> tuple[Tensor, Tensor]:
        """The grid's inner edges e_i = v_i + delta, (L - 1,), and the mixture CDF there, (L - 1, *batch), in passes."""
        edges = (torch.arange(self.levels - 1, dtype=self.loc.dtype, device=self.loc.device) + 0.5) / (
            self.levels - 1
        )
        weights = torch.softmax(self.logits, -1)
        cdf = [
            (torch.sigmoid((e.reshape(-1, *(1,) * self.loc.dim()) - self.loc) / self.scale) * weights).sum(-1)
            for e in edges.split(_EDGES_PER_PASS)
        ]
        return edges, torch.cat(cdf)

    def _moment(self, power: int) -> Tensor:
        # E[x^p] = 1 - sum_i (v_{i+1}^p - v_i^p) P(x <= v_i) (summation by parts over the grid, v_{L-1} = 1)
        edges, cdf = self._cdf_at_edges()
        v = torch.arange(self.levels, dtype=edges.dtype, device=edges.device) / (self.levels - 1)
        steps = (v[1:] ** power - v[:-1] ** power).reshape(-1, *(1,) * len(self.batch_shape))
        return 1 - (steps * cdf).sum(0)

    @property
    def mean(self) -> Tensor:
        return self._moment(1)

    @property
    def variance(self) -> Tensor:
        return self._moment(2) - self.mean.square()


@register_likelihood("discretized_logistic")
class DiscretizedLogistic(Likelihood):
    r"""Factorised discretised mixture of logistics for images with L grey levels, x_j in {0, 1/(L-1), ..., 1}.

    p(x_j | z) = sum_k pi_jk [sigma((x_j + delta - mu_jk) / s_jk) - sigma((x_j - delta - mu_jk) / s_jk)],
    the end bins open (Salimans et al. 2017, PixelCNN++, eq. 2; here each subpixel independent
    given z, without PixelCNN++'s coupling of the channels). For each element the decoder predicts
    K mixture logits, K locations mu (identity link, on the [0, 1] scale of the data) and K scales
    s = softplus(g) + ``min_scale``; raw layout (3, K, *event). Data are grey values k / (L - 1),
    as lvm's image data modules give them (x / 255).

    Args:
        event_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``.
        num_components: K >= 1.
        levels: L >= 2 (256 for 8-bit images).
        min_scale: Floor on s, > 0.
    """

    name: ClassVar[str] = "discretized_logistic"

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        num_components: int = 5,
        levels: int = 256,
        min_scale: float = 1e-4,
    ) -> None:
        for option, value, least in (("num_components", num_components, 1), ("levels", levels, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"discretized_logistic likelihood: {option} must be an integer >= {least}; got {value!r}"
                )
        if (
            isinstance(min_scale, bool)
            or not isinstance(min_scale, (int, float))
            or not 0 < min_scale < math.inf
        ):
            raise ValueError(
                f"discretized_logistic likelihood: min_scale must be a positive number; got {min_scale!r}"
            )
        super().__init__(event_shape)
        self.num_components, self.levels, self.min_scale = num_components, levels, float(min_scale)

    @property
    def support(self) -> str:
        return f"{{0, 1/{self.levels - 1}, ..., 1}}"

    @property
    def num_params(self) -> int:
        return 3 * self.num_components

    def split(self, raw: Tensor) -> dict[str, Tensor]:
        """Mixture logits, locations and scales, each (*batch, *event, K), from raw (*batch, 3 K prod(event))."""
        if raw.shape[-1] != self.raw_size:
            raise ValueError(
                f"{self.name} likelihood expects {self.raw_size} decoder outputs per datapoint "
                f"(3 x {self.num_components} components x {self.event_numel} elements); got raw shape {tuple(raw.shape)}"
            )
        batch = raw.shape[:-1]
        blocks = raw.reshape(*batch, 3, self.num_components, *self.event_shape).movedim(len(batch) + 1, -1)
        logits, loc, g = blocks.unbind(len(batch))
        return {"logits": logits, "loc": loc, "scale": F.softplus(g) + self.min_scale}

    def distribution(self, logits: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        return DiscretizedLogisticMixture(logits, loc, scale, self.levels)

    def support_violation(self, x: Tensor) -> str | None:
        k = x * (self.levels - 1)
        bad = (x < 0) | (x > 1) | ((k - torch.round(k)).abs() > 1e-3)
        return first_violation(x, bad, f"off the grid k/{self.levels - 1}, k = 0..{self.levels - 1}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_components={self.num_components}, levels={self.levels}"
