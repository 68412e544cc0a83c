"""Training objectives: the ELBO and the importance-weighted bound of Burda et al. (2016)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lvm.model import LatentVariableModel
from lvm.registry import Registry

__all__ = ["OBJECTIVES", "Bound", "elbo", "iwae_bound", "prior_mc_bound"]


@dataclass(frozen=True)
class Bound:
    """Per-datapoint terms of a bound on log p(x), each of shape (B,), in nats.

    Attributes:
        value: The bound itself (ELBO or IWAE bound), at full KL weight.
        reconstruction: Monte Carlo estimate of E_q[log p(x | z)].
        kl: KL(q(z | x) || p(z)) (closed form where available).
        objective: What the optimiser maximises (differs from ``value`` under KL warm-up).
    """

    value: Tensor
    reconstruction: Tensor
    kl: Tensor
    objective: Tensor


def elbo(model: LatentVariableModel, x: Tensor, num_samples: int = 1, kl_weight: float = 1.0) -> Bound:
    r"""ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) (Kingma & Welling 2014, eq. 10).

    The expectation uses ``num_samples`` reparameterised draws z = mu + sigma * eps; the KL is
    analytic for the Gaussian pair (Monte Carlo, log q - log p, if torch has no closed form).
    """
    q = model.posterior(x)
    z = q.rsample((num_samples,))  # (S, B, L)
    log_px_z = model.observation(z).log_prob(x)  # (S, B)
    rec = log_px_z[0] if num_samples == 1 else log_px_z.mean(0)  # (B,)
    try:
        kl = model.kl(q)
    except NotImplementedError:
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    value = rec - kl
    return Bound(value, rec, kl, value if kl_weight == 1.0 else rec - kl_weight * kl)


def iwae_bound(model: LatentVariableModel, x: Tensor, num_samples: int = 5, kl_weight: float = 1.0) -> Bound:
    r"""IWAE bound L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z | x).

    Burda, Grosse & Salakhutdinov (2016), eq. (8). L_1 is the ELBO and L_k increases with k
    towards log p(x). Computed with ``logsumexp`` over the k log weights. Under KL warm-up the
    optimised objective scales log p(z) - log q(z | x) inside the weights by ``kl_weight``.
    """
    q = model.posterior(x)
    z = q.rsample((num_samples,))  # (k, B, L)
    log_px_z = model.observation(z).log_prob(x)  # (k, B)
    log_ratio = model.prior().log_prob(z) - q.log_prob(z)  # (k, B)
    log_k = math.log(num_samples)
    value = torch.logsumexp(log_px_z + log_ratio, 0) - log_k
    objective = value if kl_weight == 1.0 else torch.logsumexp(log_px_z + kl_weight * log_ratio, 0) - log_k
    return Bound(value, log_px_z.mean(0), -log_ratio.mean(0), objective)


def prior_mc_bound(
    model: LatentVariableModel, x: Tensor, num_samples: int = 128, kl_weight: float = 1.0
) -> Bound:
    r"""Prior Monte Carlo bound log (1/K) sum_k p(x | z_k), z_k ~ p(z), trained directly.

    The naive Monte Carlo estimate of p(x) = E_{p(z)}[p(x | z)] (Kingma & Welling 2014, sec. 2.1,
    the estimator that the variational bound replaces), taken in log space with ``logsumexp``.
    By Jensen's inequality its expectation is a lower bound on log p(x): it is the IWAE bound
    (Burda et al. 2016, eq. 8) with the prior as proposal, so it needs no encoder, and its
    gradient flows only through the decoder (z_k does not depend on the parameters). With few
    samples and a peaked p(x | z) one z_k dominates each sum, which is why training stalls as the
    latent space grows. ``reconstruction`` is the mean of log p(x | z_k), the ELBO with q = p(z),
    and ``kl`` is 0 (q is the prior); ``kl_weight`` has nothing to weight and is ignored.
    """
    z = model.prior().sample((num_samples, x.shape[0]))  # (K, B, L)
    log_px_z = model.observation(z).log_prob(x)  # (K, B)
    value = torch.logsumexp(log_px_z, 0) - math.log(num_samples)
    return Bound(value, log_px_z.mean(0), torch.zeros_like(value), value)


#: Training objectives by name: ``fn(model, x, num_samples, kl_weight) -> Bound``.
OBJECTIVES: Registry[Callable[..., Bound]] = Registry("objective", "lvm.objectives")
OBJECTIVES.add("elbo", elbo)
OBJECTIVES.add("iwae", iwae_bound)
OBJECTIVES.add("prior_mc", prior_mc_bound)
