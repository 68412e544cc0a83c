"""The prior p(z) and the amortised diagonal-Gaussian posterior head P_e."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

__all__ = ["DiagonalGaussianHead", "StandardNormalPrior", "normal_params"]


class StandardNormalPrior(nn.Module):
    """p(z) = N(z | 0, I) over ``latent_dim`` dimensions (Kingma & Welling 2014, sec. 3)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1; got {latent_dim}")
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Independent:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


class DiagonalGaussianHead(nn.Module):
    r"""P_e: q(z | x) = N(z | mu(h), diag(sigma(h)^2)) from encoder features h.

    mu is a linear map of h; sigma = softplus(linear(h)) + ``min_scale`` (the Gaussian head of Kingma & Welling 2014, appendix C.2, with a scale floor),
    which stays positive and finite in float32 where exp(log sigma) can overflow.

    Args:
        in_features: Width of h.
        latent_dim: Size of z.
        min_scale: Floor on sigma.
    """

    def __init__(self, in_features: int, latent_dim: int, min_scale: float = 1e-5) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)
        self.latent_dim = latent_dim
        self.min_scale = min_scale

    def forward(self, h: Tensor) -> Independent:
        loc, raw = self.linear(h).chunk(2, dim=-1)  # (B, L) each
        return Independent(Normal(loc, F.softplus(raw) + self.min_scale, validate_args=False), 1)


def normal_params(dist: Distribution) -> tuple[Tensor, Tensor] | None:
    """(loc, scale) of a diagonal Gaussian ``Independent(Normal, 1)``, else None."""
    if (
        isinstance(dist, Independent)
        and dist.reinterpreted_batch_ndims == 1
        and type(dist.base_dist) is Normal
    ):
        return dist.base_dist.loc, dist.base_dist.scale
    return None
