"""log p(x) of a model with a 1-D or 2-D latent space by midpoint quadrature, with its grid error."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from lvm.estimators.base import CHUNK_BYTES, Estimate, Estimator
from lvm.estimators.registry import register_estimator

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["MAX_LATENT_DIM", "Grid", "Quadrature", "grid_log_px", "log_lik_pairs"]

#: The largest latent size a dense grid is built for (n^L points).
MAX_LATENT_DIM = 2

LogLik = Callable[[torch.nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Grid:
    """The midpoint rule on [-lim, lim]^L with n cells of side h = 2 lim / n per axis."""

    lim: float
    n: int

    def __post_init__(self) -> None:
        if not (self.lim > 0 and self.n >= 1):
            raise ValueError(f"grid needs lim > 0 and n >= 1; got lim={self.lim}, n={self.n}")

    @property
    def h(self) -> float:
        return 2 * self.lim / self.n

    def axis(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """Cell centres along one axis, (n,)."""
        return -self.lim + self.h * (torch.arange(self.n, dtype=dtype) + 0.5)

    def points(self, dim: int = 2, dtype: torch.dtype = torch.float64) -> Tensor:
        """All n^dim cell centres, (n^dim, dim), row-major."""
        a = self.axis(dtype)
        return a[:, None] if dim == 1 else torch.cartesian_prod(*[a] * dim)

    def __str__(self) -> str:
        return f"{self.n} per axis over [-{self.lim:g}, {self.lim:g}] (h = {self.h:.4g})"


def log_lik_pairs(model: torch.nn.Module, x: Tensor, z: Tensor) -> Tensor:
    """log p(x_b | z_c) for every pair, (B, C) float64, for x (B, ...) and z (C, L).

    The decoder runs once per grid point; ``log_prob`` broadcasts p(x | z_c), batch (C, 1),
    against the B datapoints. Any likelihood, no special cases.
    """
    return model.observation(z[:, None, :]).log_prob(x).to(torch.float64).T  # (B, C)


@torch.no_grad()
def grid_log_px(
    model: torch.nn.Module,
    x: Tensor,
    grid: Grid,
    chunk: int = 8192,
    progress: Callable[[int], None] | None = None,
    log_lik: LogLik = log_lik_pairs,
) -> Tensor:
    r"""log p(x) = log \int p(x | z) p(z) dz by the midpoint rule, (B,) float64.

    log p(x) ~= logsumexp_i [log p(x | z_i) + log p(z_i)] + L log h over the cell centres z_i
    of ``grid``, streamed over chunks of grid points so memory stays O(B chunk). The error has
    two parts: truncation (mass outside the box) and the rule's discretisation (O(h^2) for a
    smooth integrand); compare two grids to bound them.

    Args:
        model: A model with ``observation(z)``, ``prior()`` and ``latent_dim`` <= 2.
        x: Data (B, *event_shape), in the model's dtype.
        grid: The quadrature grid.
        chunk: Grid points per decoder call.
        progress: Called with the number of points done after each chunk (e.g. a tqdm update).
        log_lik: (model, x, z) -> log p(x_b | z_c), (B, C) float64; a faster exact form may be passed.

    Raises:
        ValueError: if the latent space has more than two dimensions.
    """
    dim = int(getattr(model, "latent_dim", 2))
    if not 1 <= dim <= MAX_LATENT_DIM:
        raise ValueError(
            f"quadrature needs latent_dim <= {MAX_LATENT_DIM} (a grid of n^L points); got latent_dim={dim}"
        )
    dtype = next(model.parameters()).dtype
    pts = grid.points(dim, torch.float64).to(x.device)  # (n^L, L)
    log_prior = model.prior().log_prob
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    for start in range(0, pts.shape[0], chunk):
        z = pts[start : start + chunk].to(dtype)  # (C, L)
        lj = log_lik(model, x, z) + log_prior(z).to(torch.float64)  # (B, C)
        acc = torch.logaddexp(acc, torch.logsumexp(lj, dim=1))
        if progress is not None:
            progress(z.shape[0])
    return acc + dim * math.log(grid.h)


@register_estimator("quadrature")
class Quadrature(Estimator):
    r"""log p(x) = log \int p(x | z) p(z) dz by the midpoint rule on a grid, for latent_dim <= 2.

    Deterministic and, up to its grid error, exact: the reference against which the Monte
    Carlo estimators are checked on models with a 2-D latent space (such as the 2-D latent VAE
    of Kingma & Welling 2014, fig. 4). The grid [-lim, lim]^L has ``points`` cells per axis; the
    estimate is also computed on the grid with ``points // 2`` cells, and
    |log p_n - log p_{n/2}| is reported as ``mc_stderr``: with the midpoint rule's O(h^2)
    error that is about three times the fine grid's own error, a conservative bound.
    It does not see mass outside the box (with the standard normal prior, about 4e-9 of it for
    lim = 6, but a posterior can lie further out); raise ``lim`` when in doubt.

    Args:
        num_samples: Ignored (the grid sets the cost); accepted so that the estimator can be
            created like the others. The estimate's ``num_samples`` is the number of grid points.
        chunk_size: Grid points per decoder call (None: automatic).
        points: Cells per axis of the fine grid, n >= 2.
        lim: Half-width of the box.

    Raises:
        ValueError: for ``points`` < 2 or ``lim`` <= 0, and at estimation for latent_dim > 2.
    """

    name: ClassVar[str] = "quadrature"

    def __init__(
        self, num_samples: int = 1, chunk_size: int | None = None, points: int = 200, lim: float = 6.0
    ) -> None:
        super().__init__(num_samples, chunk_size)
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"quadrature: points must be an integer >= 2; got {points!r}")
        self.fine, self.coarse = Grid(float(lim), points), Grid(float(lim), points // 2)

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        chunk = self.chunk_size
        if chunk is None:
            raw_size = int(getattr(model.likelihood, "raw_size", 0) or x[0].numel())
            chunk = max(1, CHUNK_BYTES // (x.shape[0] * raw_size * x.element_size()))
        fine = grid_log_px(model, x, self.fine, chunk)
        coarse = grid_log_px(model, x, self.coarse, chunk)
        n = self.fine.n ** int(model.latent_dim)
        return Estimate(fine.to(x.dtype), n, mc_stderr=(fine - coarse).abs().to(x.dtype))

    def decoder_evaluations(self, model: LatentVariableModel) -> int:
        """n^L + (n/2)^L grid points, decoded once per batch and shared by all its datapoints."""
        dim = int(model.latent_dim)
        return self.fine.n**dim + self.coarse.n**dim

    def __repr__(self) -> str:
        return f"Quadrature(points={self.fine.n}, lim={self.fine.lim:g}, chunk_size={self.chunk_size})"
