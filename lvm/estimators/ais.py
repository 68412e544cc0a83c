"""Annealed importance sampling of log p(x) with Hamiltonian Monte Carlo transitions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from lvm.distributions import normal_params
from lvm.estimators.base import Estimate, Estimator
from lvm.estimators.diagnostics import LogWeights
from lvm.estimators.noise import NormalNoise, Stream, stream_seed, transition_seed
from lvm.estimators.registry import register_estimator
from lvm.estimators.sampling import LatentSampler, log_density
from lvm.estimators.threads import AdaptiveThreads

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = [
    "SCHEDULES",
    "STARTS",
    "AnnealedImportanceSampling",
    "anneal",
    "annealing_schedule",
    "check_differentiable",
]

SCHEDULES = ("sigmoid", "linear")
STARTS = ("posterior", "prior")


def annealing_schedule(name: str, steps: int, radius: float = 4.0) -> list[float]:
    r"""beta_0 = 0 < beta_1 < ... < beta_T = 1 for T = ``steps``.

    ``linear``: beta_t = t / T. ``sigmoid``: beta_t proportional to sigma(radius (2 t / T - 1)),
    shifted and scaled to [0, 1], which spends more steps near both ends (Grosse, Ghahramani &
    Adams 2015, sec. 6; Wu et al. 2017, sec. 4).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"the number of annealing steps T must be an integer >= 1; got {steps!r}")
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    if name == "sigmoid" and steps > 1:
        s = torch.sigmoid(radius * (2 * t - 1))
        t = (s - s[0]) / (s[-1] - s[0])
    return t.tolist()


def check_differentiable(model: LatentVariableModel, x: Tensor, z: Tensor) -> None:
    """Raise ValueError if log p(x | z) carries no gradient to z (checked on one chain, before any work)."""
    with torch.inference_mode(False), torch.enable_grad():
        z = z[:1].clone().requires_grad_(True)
        log_lik = model.observation(z).log_prob(x.clone())
    if not log_lik.requires_grad:
        lik = getattr(model, "likelihood", None)
        name = getattr(lik, "name", type(lik).__name__)
        raise ValueError(
            f"ais needs a likelihood whose log_prob is differentiable in z (Hamiltonian Monte Carlo); "
            f"{name!r} gives log p(x | z) without a gradient"
        )


def anneal(
    model: LatentVariableModel,
    x: Tensor,
    z: Tensor,
    betas: Sequence[float],
    start: tuple[Tensor, Tensor],
    *,
    index: Tensor | None,
    seed: int,
    chain_start: int,
    leapfrog_steps: int = 10,
    step_size: float = 0.5,
    target_accept: float = 0.65,
    precondition: Tensor | None = None,
    step_sizes: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One AIS run per chain along f_b(z) = r(z)^{1-b} (p(z) p(x | z))^b, b = betas[0..T]; log w (C, B).

    With l(z) = log p(z) + log p(x | z) - log r(z), for t = 1..T: log w += (b_t - b_{t-1}) l(z),
    then z ~ an HMC kernel leaving f_{b_t} invariant (skipped after the last increment, which it
    cannot change). With betas rising from 0 to 1 and z ~ r this is Neal's (2001) AIS:
    E[w] = p(x), so log w is a stochastic lower bound. With betas falling from 1 to 0 and z an
    exact posterior sample it is reverse AIS: E[w] = 1 / p(x), so -log w is a stochastic upper
    bound (Grosse, Ghahramani & Adams 2015, sec. 4).

    Each transition is Hamiltonian Monte Carlo (Neal 2011) with ``leapfrog_steps`` leapfrog steps,
    mass matrix diag(1 / s^2) for ``precondition`` s (B, L) (q's scale: whitened coordinates) and
    a Metropolis test. The step sizes eps_t (one per datapoint and step) are either given
    (``step_sizes``), so every chain runs the same fixed kernels and each weight is exactly
    unbiased, or adapted here after each transition, eps <- eps exp(mean_c a_c - target) with
    a_c = min(1, exp(-Delta H_c)) the acceptance probabilities of the C chains, which holds the
    acceptance rate near ``target_accept`` (0.65, as in Wu et al. 2017, sec. 4). Adapted kernels
    depend on the chains' own past, which biases their weights (a per-chain version shrank the
    posterior's spread by 7% on a Gaussian), so estimators adapt on pilot chains and then run
    the counted chains with the recorded step sizes. The momenta and the test's uniforms are
    counter-based noise keyed by (:func:`~lvm.estimators.noise.transition_seed` of ``seed`` and
    the step, dataset index, chain number ``chain_start + c``),
    so a chain does not depend on its batch or chunk. Gradients come from ``log_prob`` by
    autograd (with respect to z only; parameter gradients are untouched).

    Args:
        model: The latent variable model.
        x: Data (B, ...).
        z: Initial states (C, B, L).
        betas: The schedule b_0, ..., b_T.
        start: (loc, scale) of the diagonal Gaussian r(z) at b = 0, broadcastable to (B, L).
        index: Dataset indices (B,), or None.
        seed: Seed of the transitions' noise.
        chain_start: Chain number of z[0].
        leapfrog_steps: L.
        step_size: Initial leapfrog step size (in the preconditioned coordinates).
        target_accept: Target acceptance probability of the step-size adaptation.
        precondition: s (B, L), or None for the identity.
        step_sizes: eps_t for t = 1..T-1, (T - 1, B), or None to adapt them.

    Returns:
        log w, (C, B) float64, the final states z_T, (C, B, L), and the step sizes used, (T - 1, B).
    """
    loc, scale = start
    count, batch, dim = z.shape
    s = torch.ones_like(z[0]) if precondition is None else precondition.to(z.dtype)  # (B, L)
    log_norm = -scale.log().sum(-1) - 0.5 * dim * math.log(2 * math.pi)
    with torch.inference_mode(False):  # a test loop's inference tensors cannot be saved for backward
        log_prior, x = log_density(model.prior()), x.clone()

    def evaluate(z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """log gamma(z), its gradient, log r(z), its gradient."""
        with torch.inference_mode(False), torch.enable_grad():
            z_ = z.clone().requires_grad_(True)
            log_g = model.observation(z_).log_prob(x) + log_prior(z_)  # (C, B)
            (g_g,) = torch.autograd.grad(log_g.sum(), z_)
        u = (z - loc) / scale
        return log_g.detach(), g_g, log_norm - 0.5 * u.square().sum(-1), -u / scale

    eps = torch.full((batch,), float(step_size), dtype=z.dtype, device=z.device)
    used = []
    log_w = torch.zeros(count, batch, dtype=torch.float64, device=z.device)
    steps = len(betas) - 1
    # Each step is one unit of the thread policy, and so is the first evaluation (t = 0): left at
    # the caller's threads, on a crowded machine it cost several steps at one thread
    # (benchmarks/results/threads_ais_k100_busy1_{before,after}.json, with the policy's other changes).
    for t in AdaptiveThreads().loop([count] * (steps + 1)):
        if t == 0:
            log_g, g_g, log_r, g_r = evaluate(z)
            continue
        b = betas[t]
        log_w += (b - betas[t - 1]) * (log_g - log_r).to(torch.float64)
        if t == steps:
            break
        draws = NormalNoise(index, transition_seed(seed, t), batch, dim + 1, z.device, z.dtype).draw(
            chain_start, count
        )
        v0, log_u = draws[..., :dim], torch.special.log_ndtr(draws[..., dim])  # (C, B, L), (C, B)
        if step_sizes is not None:
            eps = step_sizes[t - 1]
        used.append(eps)
        e = eps[:, None] * s  # (B, L)
        v = v0 + 0.5 * e * (g_r + b * (g_g - g_r))
        z1 = z
        for step in range(leapfrog_steps):
            z1 = z1 + e * v
            lg1, gg1, lr1, gr1 = evaluate(z1)
            v = v + (e if step < leapfrog_steps - 1 else 0.5 * e) * (gr1 + b * (gg1 - gr1))
        h0 = log_r + b * (log_g - log_r) - 0.5 * v0.square().sum(-1)
        h1 = lr1 + b * (lg1 - lr1) - 0.5 * v.square().sum(-1)
        log_accept = torch.nan_to_num(h1 - h0, nan=-math.inf, posinf=-math.inf).clamp_max(0)  # (C, B)
        accept = log_u < log_accept
        z = torch.where(accept[..., None], z1, z)
        g_g, g_r = torch.where(accept[..., None], gg1, g_g), torch.where(accept[..., None], gr1, g_r)
        log_g, log_r = torch.where(accept, lg1, log_g), torch.where(accept, lr1, log_r)
        if step_sizes is None:
            eps = eps * (log_accept.exp().mean(0) - target_accept).exp()
    return log_w, z, torch.stack(used) if used else eps.new_zeros(0, batch)


@register_estimator("ais")
class AnnealedImportanceSampling(Estimator):
    r"""log p-hat(x) = log (1/K) sum_k w_k, w_k the weights of K independent AIS chains.

    Annealed importance sampling (Neal 2001) from r(z | x) (``start``: q(z | x) or the prior
    p(z)) to p(z | x) proportional to p(z) p(x | z), through T - 1 intermediate densities
    f_t = r^{1 - beta_t} (p(z) p(x | z))^{beta_t} on a ``linear`` or ``sigmoid`` schedule, with
    HMC transitions (:func:`anneal`), as Wu et al. (2017, "On the quantitative analysis of
    decoder-based generative models", sec. 4) use to evaluate VAEs and GANs. E[w] = p(x) for any
    T, so the estimate is a stochastic lower bound that tightens as T grows, and with the exact
    posterior as ``start`` every weight equals p(x). The chains are run ``chunk_size`` at a time
    (memory independent of K), exactly K of them, each from its own counter-based noise, all
    with the per-datapoint step sizes that ``pilot_chains`` extra chains adapted first; the
    final log weights give log p-hat, the ESS, ``mc_stderr`` and ``pareto_k``
    (:class:`~lvm.estimators.diagnostics.LogWeights`). Works with any likelihood whose
    ``log_prob`` is differentiable in z; it costs 1 + (T - 1) L decoder forward and backward
    passes per chain, for K + ``pilot_chains`` chains.

    Args:
        num_samples: K, independent chains per datapoint.
        chunk_size: Chains per chunk (None: automatic).
        steps: T >= 1, the number of distributions after the start (T = 1 is importance sampling).
        schedule: ``sigmoid`` or ``linear``.
        start: ``posterior`` (q(z | x)) or ``prior``.
        leapfrog_steps: L, leapfrog steps per HMC transition.
        step_size: Initial step size, in q's whitened coordinates.
        target_accept: Acceptance probability the step sizes adapt towards.
        pilot_chains: Chains run first, only to adapt the step sizes (not counted in K).

    Raises:
        ValueError: for T < 1, an unknown schedule or start (listing the allowed ones), L < 1,
            and at estimation for a likelihood whose log_prob has no gradient in z.
    """

    name: ClassVar[str] = "ais"

    def __init__(
        self,
        num_samples: int = 1,
        chunk_size: int | None = None,
        steps: int = 100,
        schedule: str = "sigmoid",
        start: str = "posterior",
        leapfrog_steps: int = 10,
        step_size: float = 0.5,
        target_accept: float = 0.65,
        pilot_chains: int = 4,
    ) -> None:
        super().__init__(num_samples, chunk_size)
        self.betas = annealing_schedule(schedule, steps)
        if start not in STARTS:
            raise ValueError(f"unknown start {start!r}; allowed: {', '.join(STARTS)}")
        for key, value in (("leapfrog_steps", leapfrog_steps), ("pilot_chains", pilot_chains)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ais: {key} must be an integer >= 1; got {value!r}")
        if not (step_size > 0 and math.isfinite(step_size)) or not 0 < target_accept < 1:
            raise ValueError(
                f"ais: need step_size > 0 and 0 < target_accept < 1; got {step_size!r}, {target_accept!r}"
            )
        self.steps, self.schedule, self.start = steps, schedule, start
        self.leapfrog_steps, self.step_size, self.target_accept = leapfrog_steps, step_size, target_accept
        self.pilot_chains = pilot_chains

    @property
    def evaluations_per_chain(self) -> int:
        """1 + (T - 1) L: p(x | z) and its gradient at the start and after every leapfrog step."""
        return 1 + (self.steps - 1) * self.leapfrog_steps

    def decoder_evaluations(self, model: LatentVariableModel) -> int:
        """(K + pilot_chains)(1 + (T - 1) L) + 1 per datapoint, each with a backward pass but the last.

        Every chain, pilot or counted, decodes its start and the end of each of the L leapfrog
        steps of the T - 1 transitions (the last increment of log w needs no transition); the
        differentiability check decodes one more z, forward only.
        """
        return (self.num_samples + self.pilot_chains) * self.evaluations_per_chain + 1

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        return self.run_chains(model, x, index, seed, stream_seed(seed, Stream.AIS_PILOT))

    def run_chains(
        self,
        model: LatentVariableModel,
        x: Tensor,
        index: Tensor | None,
        seed: int,
        pilot_seed: int,
        exact_z: Tensor | None = None,
    ) -> Estimate:
        """Forward AIS, or reverse AIS from exact posterior samples ``exact_z`` (B, L): the weights' estimate.

        ``pilot_chains`` chains adapt the step sizes (:func:`anneal`), then the K counted chains
        run ``chunk_size`` at a time with them; their starts and transitions draw from
        ``pilot_seed`` and ``seed``. Forward: chains start at draws of r(z | x) and anneal to
        p(z | x) (after a check that log p(x | z) has a gradient in z), so E[w] = p(x). Reverse:
        they start at ``exact_z`` and anneal back to r, so E[w] = 1 / p(x) and -log p-hat is a
        stochastic upper bound on log p(x) (Grosse, Ghahramani & Adams 2015, sec. 4).

        Raises:
            ValueError: for a start r that is not a diagonal Gaussian, or (forward) a likelihood
                without a gradient in z.
        """
        q = model.posterior(x)
        r = q if self.start == "posterior" else model.prior()
        params, q_params = normal_params(r), normal_params(q)
        if params is None:
            raise ValueError(f"ais needs a diagonal Gaussian {self.start}; got {type(r).__name__}")
        kwargs = {"leapfrog_steps": self.leapfrog_steps, "step_size": self.step_size,
                  "target_accept": self.target_accept, "precondition": None if q_params is None else q_params[1]}  # fmt: skip

        def starts(noise_seed: int) -> Callable[[int, int], Tensor]:
            """(first chain, count) -> the chains' initial states, (count, B, L)."""
            if exact_z is not None:
                return lambda first, count: exact_z[None].expand(count, *exact_z.shape)
            sampler = LatentSampler(r, x.shape[0], index, noise_seed)
            return lambda first, count: sampler.sample(first, count)[0]

        main, pilot = starts(seed), starts(pilot_seed)
        if exact_z is None:
            check_differentiable(model, x, main(0, 1))
        betas = self.betas if exact_z is None else self.betas[::-1]
        _, _, step_sizes = anneal(model, x, pilot(0, self.pilot_chains), betas, params, index=index,
                                  seed=pilot_seed, chain_start=0, **kwargs)  # fmt: skip
        acc = LogWeights(self.num_samples)
        for first, count in self.chunks(model, x, adaptive=False):  # anneal() adapts per step
            z = main(first, count)  # (C, B, L)
            log_w, _, _ = anneal(model, x, z, betas, params, index=index, seed=seed, chain_start=first,
                                 step_sizes=step_sizes, **kwargs)  # fmt: skip
            acc.update(log_w.to(z.dtype))
        return acc.estimate()

    def __repr__(self) -> str:
        return (
            f"AnnealedImportanceSampling(num_samples={self.num_samples}, steps={self.steps}, "
            f"schedule={self.schedule!r}, start={self.start!r}, leapfrog_steps={self.leapfrog_steps})"
        )
