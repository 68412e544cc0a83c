"""The evidence lower bound as an estimate of log p(x)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from lvm.estimators.base import Estimate, Estimator
from lvm.estimators.registry import register_estimator
from lvm.estimators.sampling import LatentSampler, log_density

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["ELBO"]


@register_estimator("elbo")
class ELBO(Estimator):
    r"""ELBO(x) = (1/S) sum_s log p(x | z_s) - KL(q(z | x) || p(z)), z_s ~ q(z | x).

    Kingma & Welling (2014), eq. (10). The KL is in closed form where
    torch knows it for the pair (``model.kl``), else the Monte Carlo average of
    log q(z_s | x) - log p(z_s) over the same S samples. A lower bound: log p(x) - ELBO(x) =
    KL(q(z | x) || p(z | x)). Carries no ESS or weight variance.

    Args:
        num_samples: S, samples for the reconstruction term (default 1).
        chunk_size: Samples per chunk (None: automatic).
    """

    name: ClassVar[str] = "elbo"

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        q = model.posterior(x)  # batch (B,), event (L,)
        try:
            kl: Tensor | None = model.kl(q).to(torch.float64)  # (B,)
        except NotImplementedError:
            kl = None
        log_prior = log_density(model.prior())
        sampler = LatentSampler(q, x.shape[0], index, seed)
        rec = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        mc_kl = torch.zeros_like(rec)
        dtype = torch.get_default_dtype()
        for start, count in self.chunks(model, x):
            z, log_q = sampler.sample(start, count, with_log_prob=kl is None)  # (C, B, L)
            log_lik = model.observation(z).log_prob(x)  # (C, B)
            dtype = log_lik.dtype
            rec += log_lik.sum(0, dtype=torch.float64)
            if log_q is not None:
                mc_kl += (log_q - log_prior(z)).sum(0, dtype=torch.float64)
        kl = mc_kl / self.num_samples if kl is None else kl
        log_px = rec / self.num_samples - kl
        return Estimate(log_px.to(dtype), self.num_samples)
