"""Proposals r(z | x) for importance sampling: the posterior q, the prior, a defensive mixture, a Student t."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from lvm.distributions import normal_params
from lvm.estimators.noise import NormalNoise
from lvm.estimators.sampling import LatentSampler, log_density

__all__ = ["PROPOSALS", "Proposal", "check_proposal"]

#: Names accepted by ``ImportanceSampling(proposal=...)``.
PROPOSALS = ("posterior", "prior", "defensive", "student_t")


def check_proposal(name: str, alpha: float, df: int, widen: float) -> None:
    """Raise ValueError for an unknown proposal name or an out-of-range option, naming the value."""
    if name not in PROPOSALS:
        raise ValueError(f"unknown proposal {name!r}; allowed: {', '.join(PROPOSALS)}")
    if not 0 < alpha <= 1:
        raise ValueError(f"defensive proposal: alpha must be in (0, 1]; got {alpha!r}")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"student_t proposal: df must be a positive integer; got {df!r}")
    if not (widen > 0 and math.isfinite(widen)):
        raise ValueError(f"student_t proposal: widen must be positive and finite; got {widen!r}")


class Proposal:
    r"""Draws z ~ r(z | x) chunk by chunk with log r(z | x), from counter-based noise.

    - ``posterior``: r = q(z | x) = N(mu, diag(sigma^2)).
    - ``prior``: r = p(z); the weights are p(x | z) (simple Monte Carlo).
    - ``defensive``: r = alpha q + (1 - alpha) p, the defensive mixture of Hesterberg (1995),
      which bounds the weights by p(x | z) / (1 - alpha). Each sample's component is chosen by
      one extra standard normal draw, u = Phi(eps_{L+1}) < alpha.
    - ``student_t``: r = multivariate t with nu = ``df`` degrees of freedom, location mu and
      scale ``widen`` sigma: z = mu + widen sigma eps / sqrt(W / nu), W = sum of nu squared extra
      normal draws ~ chi^2_nu; log r = log Gamma((nu + L)/2) - log Gamma(nu/2) - L/2 log(nu pi)
      - sum_l log(widen sigma_l) - (nu + L)/2 log(1 + |u|^2 / nu), u = (z - mu) / (widen sigma)
      (Geweke 1989 on heavier-tailed importance densities).

    Every draw is a pure function of (seed, dataset index, sample number), as for the other
    estimators (:class:`~lvm.estimators.noise.NormalNoise`).

    Args:
        name: One of :data:`PROPOSALS`.
        q: q(z | x), batch (B,), event (L,).
        prior: p(z), event (L,).
        index: Dataset indices (B,), or None.
        seed: Evaluation seed.
        alpha: Weight of q in the defensive mixture.
        df: nu of the Student t.
        widen: Factor on q's scale for the Student t.
    """

    def __init__(
        self,
        name: str,
        q: Distribution,
        prior: Distribution,
        index: Tensor | None,
        seed: int,
        alpha: float = 0.5,
        df: int = 5,
        widen: float = 1.0,
    ) -> None:
        check_proposal(name, alpha, df, widen)
        self.name, self.alpha, self.df, self.widen = name, float(alpha), int(df), float(widen)
        self.batch_size = q.batch_shape[0]
        if name in ("posterior", "prior"):
            self.sampler = LatentSampler(q if name == "posterior" else prior, self.batch_size, index, seed)
            return
        params = normal_params(q)
        if params is None:
            raise ValueError(f"{name} proposal needs a diagonal Gaussian q(z | x); got {type(q).__name__}")
        self.loc, self.scale = params  # (B, L)
        self.latent_dim = self.loc.shape[-1]
        self.log_q, self.log_p = log_density(q), log_density(prior)
        prior_params = normal_params(prior)
        if name == "defensive" and prior_params is None:
            raise ValueError(
                f"defensive proposal needs a diagonal Gaussian prior; got {type(prior).__name__}"
            )
        self.prior_loc, self.prior_scale = prior_params or (self.loc, self.scale)
        extra = 1 if name == "defensive" else self.df
        dtype, device = self.loc.dtype, self.loc.device
        self.noise = NormalNoise(index, seed, self.batch_size, self.latent_dim + extra, device, dtype)

    def sample(self, start: int, count: int) -> tuple[Tensor, Tensor]:
        """z for samples [start, start + count), (C, B, L), and log r(z | x), (C, B)."""
        if self.name in ("posterior", "prior"):
            z, log_r = self.sampler.sample(start, count, with_log_prob=True)
            assert log_r is not None
            return z, log_r
        eps = self.noise.draw(start, count)  # (C, B, L + extra)
        eps, extra = eps[..., : self.latent_dim], eps[..., self.latent_dim :]
        if self.name == "defensive":
            from_q = torch.special.ndtr(extra[..., 0]) < self.alpha  # (C, B)
            z_q = torch.addcmul(self.loc, self.scale, eps)
            z = torch.where(from_q[..., None], z_q, torch.addcmul(self.prior_loc, self.prior_scale, eps))
        else:
            w = extra.square().sum(-1, keepdim=True)  # chi^2_nu, (C, B, 1)
            z = torch.addcmul(self.loc, self.widen * self.scale, eps * (self.df / w).sqrt())
        return z, self.log_prob(z)

    def log_prob(self, z: Tensor) -> Tensor:
        """log r(z | x) for z (..., B, L), (..., B)."""
        if self.name in ("posterior", "prior"):
            return self.sampler.dist.log_prob(z)
        if self.name == "defensive":
            if self.alpha == 1:
                return self.log_q(z)
            return torch.logaddexp(
                self.log_q(z) + math.log(self.alpha), self.log_p(z) + math.log1p(-self.alpha)
            )
        nu, dim = self.df, self.latent_dim
        scale = self.widen * self.scale
        u2 = ((z - self.loc) / scale).square().sum(-1)
        const = math.lgamma((nu + dim) / 2) - math.lgamma(nu / 2) - dim / 2 * math.log(nu * math.pi)
        return const - scale.log().sum(-1) - (nu + dim) / 2 * torch.log1p(u2 / nu)
