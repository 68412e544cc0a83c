"""Bidirectional Monte Carlo: a sandwich of stochastic lower and upper bounds on log p(x) for simulated data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lvm.distributions import normal_params
from lvm.estimators.ais import AnnealedImportanceSampling
from lvm.estimators.base import Estimator
from lvm.estimators.noise import NormalNoise, Stream, stream_seed
from lvm.estimators.registry import create_estimator

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["Sandwich", "SandwichDistance", "bdmc", "compare_to_sandwich", "simulate", "stderr_of_mean"]


@dataclass(frozen=True)
class Sandwich:
    """Stochastic bounds lower <= log p(x) <= upper (in expectation) for each simulated datapoint.

    Attributes:
        x: The simulated data, (N, *event_shape).
        z: The latents they were drawn from, (N, L): exact posterior samples.
        lower: Forward AIS, log (1/K) sum_k w_k, (N,).
        upper: Reverse AIS, -log (1/K) sum_k w'_k, (N,).
        lower_stderr: Monte Carlo standard error of ``lower`` (delta method over the chains), (N,).
        upper_stderr: The same for ``upper``, (N,).
        steps: T.
        num_chains: K, chains per datapoint and direction.
        lower_decoder_evaluations: z decoded per datapoint by forward AIS
            (:meth:`~lvm.estimators.ais.AnnealedImportanceSampling.decoder_evaluations`).
        upper_decoder_evaluations: The same for reverse AIS, (K + pilot chains)(1 + (T - 1) L).
    """

    x: Tensor
    z: Tensor
    lower: Tensor
    upper: Tensor
    lower_stderr: Tensor
    upper_stderr: Tensor
    steps: int
    num_chains: int
    lower_decoder_evaluations: int
    upper_decoder_evaluations: int

    @property
    def width(self) -> Tensor:
        """upper - lower, (N,): a stochastic bound on the error of either bound."""
        return self.upper - self.lower

    def means(self) -> dict[str, float]:
        """Means over the datapoints of ``lower``, ``upper`` and ``width``, each with its MC standard error.

        Keys ``lower``, ``lower_mc_stderr``, ``upper``, ``upper_mc_stderr``, ``width``,
        ``width_mc_stderr`` (:func:`stderr_of_mean`; the two directions are independent, so the
        width's adds theirs in quadrature).
        """
        width_se = torch.hypot(self.lower_stderr, self.upper_stderr)
        out = {}
        for name, values, se in (("lower", self.lower, self.lower_stderr), ("upper", self.upper, self.upper_stderr),
                                 ("width", self.width, width_se)):  # fmt: skip
            out[name], out[f"{name}_mc_stderr"] = float(values.double().mean()), stderr_of_mean(se)
        return out


def stderr_of_mean(se: Tensor) -> float:
    """sqrt(sum_n se_n^2) / N: the standard error of a mean of N independent estimates with errors se_n."""
    return float(se.double().square().sum().sqrt() / len(se))


@dataclass(frozen=True)
class SandwichDistance:
    """How one estimator's log p-hat sits in the sandwich, means over the simulated datapoints.

    Attributes:
        estimator: The estimator's repr.
        mean_log_px: Mean log p-hat.
        below_upper: Mean of upper - log p-hat (>= 0 up to noise for a lower-bound estimator).
        above_lower: Mean of log p-hat - lower.
        width: Mean width of the sandwich.
        inside: Share of datapoints with lower <= log p-hat <= upper.
        mc_stderr: Monte Carlo standard error of ``mean_log_px`` (:func:`stderr_of_mean` of each
            datapoint's ``Estimate.mc_stderr``), or None if the estimator does not report it.
    """

    estimator: str
    mean_log_px: float
    below_upper: float
    above_lower: float
    width: float
    inside: float
    mc_stderr: float | None = None


@torch.no_grad()
def simulate(model: LatentVariableModel, num_datapoints: int, seed: int) -> tuple[Tensor, Tensor]:
    """(z, x) ~ p(z) p(x | z): z from counter-based noise keyed by (seed, index), x with a seeded RNG.

    The z noise is a stream of its own, so that no AIS chain run with the same ``seed`` starts
    from (a transform of) the true z.
    """
    prior = normal_params(model.prior())
    if prior is None:
        raise ValueError(f"bdmc needs a diagonal Gaussian prior; got {type(model.prior()).__name__}")
    loc, scale = prior
    device = loc.device
    index = torch.arange(num_datapoints, device=device)
    eps = NormalNoise(
        index, stream_seed(seed, Stream.BDMC_SIMULATION), num_datapoints, model.latent_dim, device, loc.dtype
    )
    eps = eps.draw(0, 1)[0]
    z = loc + scale * eps  # (N, L)
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        x = model.observation(z).sample()
    return z, x


def bdmc(
    model: LatentVariableModel,
    num_datapoints: int,
    steps: int,
    num_chains: int = 10,
    seed: int = 0,
    batch_size: int = 100,
    **ais_options: Any,
) -> Sandwich:
    r"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015, sec. 4) on data simulated from the model.

    Draws (z_n, x_n) ~ p(z) p(x | z), so z_n is an exact sample of p(z | x_n). Forward AIS from
    r(z | x) to p(z | x) (:class:`~lvm.estimators.ais.AnnealedImportanceSampling`) gives
    weights with E[w] = p(x): log (1/K) sum w is a stochastic lower bound. Reverse AIS, started
    at z_n and annealed back from p(z | x) to r along the same path, gives weights with
    E[w'] = 1 / p(x): -log (1/K) sum w' is a stochastic upper bound. Both tighten as T grows and
    their gap bounds the error of either (Wu et al. 2017, sec. 4.2 use it to validate AIS on
    VAEs). The K reverse chains of a datapoint share its exact start; their step sizes are
    adapted on pilot chains from that start, like the forward ones.

    Args:
        model: The latent variable model (a trained one: the bounds hold for its own p(x)).
        num_datapoints: N, datapoints to simulate.
        steps: T, annealing steps of both directions.
        num_chains: K, chains per datapoint and direction.
        seed: Seed of the simulation and of both directions' noise.
        batch_size: Datapoints per batch.
        **ais_options: Passed to :class:`~lvm.estimators.ais.AnnealedImportanceSampling`
            (``schedule``, ``start``, ``leapfrog_steps``, ``pilot_chains``, ``chunk_size``, ...).

    Raises:
        ValueError: as the AIS estimator does, before any annealing.
    """
    ais = AnnealedImportanceSampling(num_samples=num_chains, steps=steps, **ais_options)
    z, x = simulate(model, num_datapoints, seed)
    index = torch.arange(num_datapoints, device=z.device)
    parts = []
    for b in range(0, num_datapoints, batch_size):
        sl = slice(b, b + batch_size)
        forward = ais.estimate(model, x[sl], index=index[sl], seed=seed)
        upper, upper_se = _reverse(ais, model, x[sl], z[sl], index[sl], seed)
        parts.append((forward.log_px, upper, forward.mc_stderr, upper_se))
    lower, upper, lower_se, upper_se = (torch.cat(p) for p in zip(*parts))
    assert lower_se is not None
    forward_evals = ais.decoder_evaluations(model)  # reverse AIS skips the differentiability check
    return Sandwich(
        x, z, lower, upper, lower_se, upper_se, steps, num_chains, forward_evals, forward_evals - 1
    )


@torch.no_grad()
def _reverse(
    ais: AnnealedImportanceSampling,
    model: LatentVariableModel,
    x: Tensor,
    z: Tensor,
    index: Tensor,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Reverse AIS from the exact z (B, L): the upper bound and its MC standard error, each (B,)."""
    est = ais.run_chains(
        model, x, index, stream_seed(seed, Stream.REVERSE_AIS), stream_seed(seed, Stream.REVERSE_AIS_PILOT), z
    )
    assert est.mc_stderr is not None
    return -est.log_px, est.mc_stderr  # log p-hat estimates -log p(x): E[w] = 1 / p(x)


def compare_to_sandwich(
    model: LatentVariableModel,
    sandwich: Sandwich,
    estimators: Sequence[str | dict[str, Any] | Estimator],
    seed: int = 1,
) -> list[SandwichDistance]:
    """Evaluate each estimator on the sandwich's simulated x and report where it falls, one row each.

    Args:
        model: The model the sandwich was drawn from.
        sandwich: The result of :func:`bdmc`.
        estimators: Estimator objects or specs for :func:`~lvm.estimators.registry.create_estimator`.
        seed: Evaluation seed of the estimators (dataset indices 0..N-1).
    """
    index = torch.arange(sandwich.x.shape[0], device=sandwich.x.device)
    rows = []
    for spec in estimators:
        est = spec if isinstance(spec, Estimator) else create_estimator(spec)
        result = est.estimate(model, sandwich.x, index=index, seed=seed)
        log_px = result.log_px.to(sandwich.lower.dtype)
        se = result.mc_stderr
        inside = (log_px >= sandwich.lower) & (log_px <= sandwich.upper)
        rows.append(
            SandwichDistance(
                estimator=repr(est),
                mean_log_px=float(log_px.mean()),
                below_upper=float((sandwich.upper - log_px).mean()),
                above_lower=float((log_px - sandwich.lower).mean()),
                width=float(sandwich.width.mean()),
                inside=float(inside.float().mean()),
                mc_stderr=None if se is None else stderr_of_mean(se),
            )
        )
    return rows
