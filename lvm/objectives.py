"""Training objectives (the ELBO, the IWAE bound, the prior Monte Carlo bound) and their gradient estimators."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

from lvm.model import LatentVariableModel
from lvm.registry import Registry, Spec

__all__ = [
    "GRADIENTS",
    "OBJECTIVES",
    "Bound",
    "Objective",
    "create_objective",
    "elbo",
    "iwae_bound",
    "prior_mc_bound",
]

#: Every gradient estimator an objective may offer; each objective lists the ones it takes.
GRADIENTS = ("reparam", "stl", "dreg", "score")


@dataclass(frozen=True)
class Bound:
    """Per-datapoint terms of a bound on log p(x), each of shape (B,), in nats.

    Attributes:
        value: The bound itself (ELBO or IWAE bound), at full KL weight.
        reconstruction: Monte Carlo estimate of E_q[log p(x | z)].
        kl: KL(q(z | x) || p(z)) (closed form where available).
        objective: What the optimiser maximises (differs from ``value`` under KL warm-up). Its
            value does not depend on the gradient estimator; its gradient is the estimator's.
    """

    value: Tensor
    reconstruction: Tensor
    kl: Tensor
    objective: Tensor


def _takes(*gradients: str) -> Callable[[Callable[..., Bound]], Callable[..., Bound]]:
    """Declare the gradient estimators an objective function accepts as its ``gradient`` keyword."""

    def mark(fn: Callable[..., Bound]) -> Callable[..., Bound]:
        fn.gradients = gradients  # type: ignore[attr-defined]
        return fn

    return mark


def detached(q: Distribution) -> Distribution:
    """``q`` rebuilt from its parameters detached: log q(z) then reaches q's parameters only through z.

    The "stop gradient" of Roeder et al. (2017) and Tucker et al. (2019, sec. 3). Works for
    ``Independent`` wrappers around any distribution built from its ``arg_constraints`` parameters
    (Normal, Laplace, StudentT, ...): one more pass of the distribution, not of the encoder.

    Raises:
        TypeError: for a q that is not rebuilt that way (a transformed or mixture q).
    """
    if isinstance(q, Independent):
        return Independent(detached(q.base_dist), q.reinterpreted_batch_ndims, validate_args=False)
    params = {k: v.detach() for k in q.arg_constraints if isinstance(v := vars(q).get(k), Tensor)}
    if not params:
        raise TypeError(
            f"stl and dreg detach q's parameters; cannot rebuild {type(q).__name__} from its arg_constraints"
        )
    return type(q)(**params, validate_args=False)


def _with_value(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` forward and ``surrogate``'s gradient backward (the surrogate's own value is discarded)."""
    return value.detach() + (surrogate - surrogate.detach())


@_takes("reparam", "stl", "score")
def elbo(
    model: LatentVariableModel,
    x: Tensor,
    num_samples: int = 1,
    kl_weight: float = 1.0,
    gradient: str = "reparam",
) -> Bound:
    r"""ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) (Kingma & Welling 2014, eq. 10).

    The expectation uses ``num_samples`` draws z = mu + sigma * eps; the KL is analytic for the
    Gaussian pair (Monte Carlo, log q - log p, if torch has no closed form). The value is the
    same for every ``gradient``; the gradient of ``objective`` is

    - ``reparam``: through z = mu + sigma * eps (Kingma & Welling 2014, sec. 2.4).
    - ``stl``: sticking the landing (Roeder et al. 2017), the gradient of log p(x, z) -
      log q_{stop}(z | x) through z only, q's parameters detached in log q: the score term
      E_q[grad log q] = 0 is dropped; unbiased, and zero per sample when q is the posterior.
    - ``score``: the score-function (REINFORCE) estimator of the terms the reparameterised ELBO
      estimates by Monte Carlo, f(z) = log p(x | z) (plus log p(z) - log q(z) where the KL has no
      closed form): mean_s (f(z_s) - b_s) grad log q(z_s), with the leave-one-out baseline
      b_s = mean_{j != s} f(z_j) (Kool, van Hoof & Welling 2019), a control variate independent
      of z_s, so it stays unbiased; the analytic KL is differentiated exactly. The estimator the
      reparameterisation trick replaces (Kingma & Welling 2014, sec. 2.2); needs num_samples >= 2.
    """
    q = model.posterior(x)
    z = q.rsample((num_samples,))  # (S, B, L)
    log_px_z = model.observation(z.detach() if gradient == "score" else z).log_prob(x)  # (S, B)
    rec = log_px_z[0] if num_samples == 1 else log_px_z.mean(0)  # (B,)
    try:
        kl = model.kl(q)
        mc_kl = None
    except NotImplementedError:
        zk = z.detach() if gradient == "score" else z
        mc_kl = q.log_prob(zk) - model.prior().log_prob(zk)  # (S, B)
        kl = mc_kl.mean(0)
    value = rec - kl
    objective = value if kl_weight == 1.0 else rec - kl_weight * kl
    if gradient == "reparam":
        return Bound(value, rec, kl, objective)
    if gradient == "stl":
        log_ratio = model.prior().log_prob(z) - detached(q).log_prob(z)  # (S, B)
        surrogate = (log_px_z + kl_weight * log_ratio).mean(0)
    else:  # score
        f = log_px_z if mc_kl is None else log_px_z - kl_weight * mc_kl  # (S, B)
        baseline = (f.sum(0, keepdim=True) - f) / (num_samples - 1)  # leave-one-out
        score = ((f - baseline).detach() * q.log_prob(z.detach())).mean(0)
        surrogate = score + f.mean(0) - (kl_weight * kl if mc_kl is None else 0.0)
    return Bound(value, rec, kl, _with_value(objective, surrogate))


@_takes("reparam", "stl", "dreg")
def iwae_bound(
    model: LatentVariableModel,
    x: Tensor,
    num_samples: int = 5,
    kl_weight: float = 1.0,
    gradient: str = "reparam",
) -> Bound:
    r"""IWAE bound L_k(x) = E[log (1/k) sum_i w_i], w_i = p(x, z_i) / q(z_i | x), z_i ~ q(z | x).

    Burda, Grosse & Salakhutdinov (2016), eq. (8). L_1 is the ELBO and L_k increases with k
    towards log p(x). Computed with ``logsumexp`` over the k log weights. Under KL warm-up the
    optimised objective scales log p(z) - log q(z | x) inside the weights by ``kl_weight``. The
    value is the same for every ``gradient``; with normalised weights wt_i = w_i / sum_j w_j and
    d/dz_i taken with q's parameters held fixed, the encoder's gradient is

    - ``reparam``: sum_i wt_i grad_phi log w_i, through z_i and log q (Burda et al. 2016, sec. 3).
      Its signal-to-noise ratio falls as O(sqrt(M / k)) (Rainforth et al. 2018, Theorem 1).
    - ``stl``: sum_i wt_i d log w_i / dz_i dz_i / dphi, q's parameters detached in log q
      (Roeder et al. 2017). Biased for k > 1: the dropped term sum_i wt_i grad_phi log q(z_i)
      has a non-zero mean, because wt_i depends on z_i (Tucker et al. 2019, sec. 3).
    - ``dreg``: sum_i wt_i^2 d log w_i / dz_i dz_i / dphi, the doubly reparameterised gradient
      (Tucker et al. 2019, sec. 3, the IWAE estimator): unbiased, and its SNR does not collapse
      as k grows. Under a KL weight beta < 1 the factor is wt_i (1 - beta + beta wt_i), the same
      identity applied to the beta-scaled score term.

    The decoder's gradient is sum_i wt_i grad_theta log w_i for all three. ``dreg`` costs no extra
    decoder pass: in the one backward pass a hook rescales the gradient reaching z_i (the decoder's
    parameters get theirs on the way, unscaled); only ``objective``'s gradient is the estimator.
    """
    q = model.posterior(x)
    z = q.rsample((num_samples,))  # (k, B, L)
    log_px_z = model.observation(z).log_prob(x)  # (k, B)
    log_q = (q if gradient == "reparam" else detached(q)).log_prob(z)  # (k, B)
    log_ratio = model.prior().log_prob(z) - log_q  # (k, B)
    log_k = math.log(num_samples)
    value = torch.logsumexp(log_px_z + log_ratio, 0) - log_k
    log_w = log_px_z + log_ratio if kl_weight == 1.0 else log_px_z + kl_weight * log_ratio
    objective = value if kl_weight == 1.0 else torch.logsumexp(log_w, 0) - log_k
    if gradient == "dreg" and z.requires_grad:
        wt = torch.softmax(log_w.detach(), 0)  # (k, B)
        factor = ((1.0 - kl_weight) + kl_weight * wt).unsqueeze(-1)  # (k, B, 1)
        z.register_hook(lambda grad: grad * factor)
    return Bound(value, log_px_z.mean(0), -log_ratio.mean(0), objective)


@_takes("reparam")
def prior_mc_bound(
    model: LatentVariableModel, x: Tensor, num_samples: int = 128, kl_weight: float = 1.0
) -> Bound:
    r"""Prior Monte Carlo bound log (1/K) sum_k p(x | z_k), z_k ~ p(z), trained directly.

    The naive Monte Carlo estimate of p(x) = E_{p(z)}[p(x | z)] (Kingma & Welling 2014, sec. 2.1,
    the estimator that the variational bound replaces), taken in log space with ``logsumexp``.
    By Jensen's inequality its expectation is a lower bound on log p(x): it is the IWAE bound
    (Burda et al. 2016, eq. 8) with the prior as proposal, so it needs no encoder, and its
    gradient flows only through the decoder (z_k does not depend on the parameters; the only
    ``gradient`` is the plain one, named ``reparam``). With few samples and a peaked p(x | z) one
    z_k dominates each sum, which is why training stalls as the latent space grows.
    ``reconstruction`` is the mean of log p(x | z_k), the ELBO with q = p(z), and ``kl`` is 0
    (q is the prior); ``kl_weight`` has nothing to weight and is ignored.
    """
    z = model.prior().sample((num_samples, x.shape[0]))  # (K, B, L)
    log_px_z = model.observation(z).log_prob(x)  # (K, B)
    value = torch.logsumexp(log_px_z, 0) - math.log(num_samples)
    return Bound(value, log_px_z.mean(0), torch.zeros_like(value), value)


#: Training objectives by name: ``fn(model, x, num_samples, kl_weight[, gradient=...]) -> Bound``.
#: A function lists the gradient estimators it takes in its ``gradients`` attribute (a plugin
#: without one takes ``reparam`` only, and is then called without the keyword).
OBJECTIVES: Registry[Callable[..., Bound]] = Registry("objective", "lvm.objectives")
_BUILT_IN = {"elbo": elbo, "iwae": iwae_bound, "prior_mc": prior_mc_bound}
for _name, _fn in _BUILT_IN.items():
    OBJECTIVES.add(_name, _fn)


@dataclass(frozen=True)
class Objective:
    """A registered bound with its gradient estimator, called as ``objective(model, x, k, kl_weight)``.

    Attributes:
        name: The registered objective ("elbo", "iwae", "prior_mc" or a plugin's).
        gradient: The gradient estimator, one of the function's ``gradients``.
        fn: The registered function.
    """

    name: str
    gradient: str
    fn: Callable[..., Bound]

    def __call__(
        self, model: LatentVariableModel, x: Tensor, num_samples: int, kl_weight: float = 1.0
    ) -> Bound:
        if self.gradient == "reparam":
            return self.fn(model, x, num_samples, kl_weight)
        return self.fn(model, x, num_samples, kl_weight, gradient=self.gradient)

    @property
    def label(self) -> str:
        """``"iwae"`` for the plain gradient, ``"iwae(gradient=dreg)"`` otherwise."""
        return self.name if self.gradient == "reparam" else f"{self.name}(gradient={self.gradient})"


def create_objective(spec: Spec | Objective, num_samples: int | None = None) -> Objective:
    """The objective a config names: ``"iwae"`` or ``{"name": "iwae", "gradient": "dreg"}``.

    Args:
        spec: A registered name, a ``{"name": ..., "gradient": ...}`` dict, or an :class:`Objective`.
        num_samples: The samples per datapoint it will be called with, checked where the gradient
            needs more than one (``score``'s leave-one-out baseline); None skips the check.

    Raises:
        UnknownNameError: for an unknown name, listing the known ones.
        ValueError: for an option other than ``gradient``, a gradient the objective does not take
            (naming the objective and the ones it takes), or too few samples for the gradient.
    """
    if isinstance(spec, Objective):
        name, gradient, fn = spec.name, spec.gradient, spec.fn
    else:
        name, options = _parse(spec)
        fn = OBJECTIVES.get(name)
        gradient = options.get("gradient", "reparam")
    allowed: tuple[str, ...] = getattr(fn, "gradients", ("reparam",))
    if gradient not in allowed:
        raise ValueError(_wrong_gradient(name, gradient, allowed))
    if gradient == "score" and num_samples is not None and num_samples < 2:
        raise ValueError(
            f"objective {name!r} with gradient 'score' needs num_samples >= 2 (its baseline for each "
            f"sample is the mean of the others); got {num_samples}"
        )
    return Objective(name, gradient, fn)


def _parse(spec: Spec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"objective must be a name or {{name: ..., gradient: ...}}; got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    extra = sorted(set(options) - {"gradient"})
    if extra:
        raise ValueError(
            f"objective {spec['name']!r} takes the option 'gradient' only; got {', '.join(extra)}"
        )
    return spec["name"], options


def _wrong_gradient(name: str, gradient: object, allowed: tuple[str, ...]) -> str:
    takes = f"objective {name!r} takes gradient {', '.join(allowed)}"
    if gradient in GRADIENTS:
        others = [n for n, f in _BUILT_IN.items() if gradient in f.gradients]  # type: ignore[attr-defined]
        where = f" ({gradient} is for {' and '.join(others)})" if others else ""
        return f"{takes}; got {gradient!r}{where}"
    close = difflib.get_close_matches(str(gradient), GRADIENTS, n=1)
    return f"{takes}; got unknown gradient {gradient!r}" + (f". Did you mean {close[0]!r}?" if close else "")
