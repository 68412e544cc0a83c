"""Training objectives: the ELBO and the importance-weighted bound of Burda et al. (2016)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lvm.model import LatentVariableModel
from lvm.registry import Registry

__all__ = ["OBJECTIVES", "Bound", "elbo", "iwae_bound"]


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
    rec = model.observation(z).log_prob(x).mean(0)  # (B,)
    try:
        kl = model.kl(q)
    except NotImplementedError:
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    return Bound(rec - kl, rec, kl, rec - kl_weight * kl)


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


#: Training objectives by name: ``fn(model, x, num_samples, kl_weight) -> Bound``.
OBJECTIVES: Registry[Callable[..., Bound]] = Registry("objective", "lvm.objectives")
OBJECTIVES.add("elbo", elbo)
OBJECTIVES.add("iwae", iwae_bound)
