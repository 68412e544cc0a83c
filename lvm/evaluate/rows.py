"""The results of evaluating a trained model, as frozen rows: estimators against K, and the BDMC sandwich."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lvm.estimators.bdmc import Sandwich, SandwichDistance

__all__ = ["PARETO_K_THRESHOLD", "BoundsRow", "ComparisonRow", "Datapoints", "SandwichRow", "scalar_fields"]

#: Above this Pareto shape the importance weights' variance is effectively infinite and the MC
#: standard error cannot be trusted (Vehtari et al., "Pareto smoothed importance sampling", section 3).
PARETO_K_THRESHOLD = 0.7


def scalar_fields(row_type: type) -> list[str]:
    """The fields of a row type that hold one value (all but per-datapoint ones): the CSV columns."""
    return [f.name for f in fields(row_type) if f.name != "datapoints"]


@dataclass(frozen=True)
class Datapoints:
    """Per-datapoint values of one (estimator, K), ordered by dataset index; tensors (N,) on the CPU.

    ``mc_stderr``, ``pareto_k`` and ``ess`` are None when the estimator does not report them.
    """

    index: Tensor
    log_px: Tensor
    mc_stderr: Tensor | None = None
    pareto_k: Tensor | None = None
    ess: Tensor | None = None

    def to_dict(self) -> dict[str, list[float] | list[int] | None]:
        """Plain lists (None for a value the estimator does not report), for JSON."""
        return {f.name: None if (v := getattr(self, f.name)) is None else v.tolist() for f in fields(self)}


def _mean(v: Tensor | None) -> float | None:
    return None if v is None else float(v.double().mean())


@dataclass(frozen=True)
class ComparisonRow:
    """Dataset statistics of one estimator at one K; log p(x) in nats per datapoint.

    Attributes:
        estimator: The estimator's label (its name, with the spec's options if any).
        K: Samples of z per datapoint.
        mean_log_px: Mean over the N datapoints of the per-datapoint estimates.
        stderr: Standard error of that mean across datapoints, s / sqrt(N) (0 for N = 1).
        mean_mc_stderr: Mean over datapoints of each estimate's own Monte Carlo standard error
            (``Estimate.mc_stderr``), or None if the estimator does not report it.
        mean_ess: Mean effective sample size of the importance weights, or None.
        max_pareto_k: Largest Pareto shape k of the weights' tail over datapoints, or None
            if the estimator reports none (NaN, too few weights to fit, is ignored).
        share_k_over_0_7: Share of the N datapoints with k > :data:`PARETO_K_THRESHOLD` (0.7),
            or None like ``max_pareto_k``.
        seconds: Estimation time (the slowest process's, under DDP), data transfer excluded.
        datapoints_per_s: N / seconds.
        num_datapoints: N.
        mean_nll: -mean_log_px.
        bits_per_dim: mean_nll / (D log 2), D values per datapoint.
        mean_log_weight_var: Mean sample variance of the log weights, or None.
        datapoints: The per-datapoint values.
    """

    estimator: str
    K: int  # the symbol of the papers and of the table
    mean_log_px: float
    stderr: float
    mean_mc_stderr: float | None
    mean_ess: float | None
    max_pareto_k: float | None
    share_k_over_0_7: float | None
    seconds: float
    datapoints_per_s: float
    num_datapoints: int
    mean_nll: float
    bits_per_dim: float
    mean_log_weight_var: float | None
    datapoints: Datapoints = field(repr=False, compare=False)

    @classmethod
    def from_datapoints(
        cls,
        estimator: str,
        k: int,
        points: Datapoints,
        seconds: float,
        num_dims: int,
        log_weight_var: Tensor | None = None,
    ) -> ComparisonRow:
        """The statistics of per-datapoint values (all of them: every process's, gathered).

        The mean and its standard error are :class:`~lvm.metrics.MeanWithStdErr`'s.
        """
        from lvm.metrics import MeanWithStdErr  # torchmetrics: imported on use, import lvm stays light

        metric = MeanWithStdErr(sync_on_compute=False)  # the values are every process's already
        metric.update(points.log_px)
        mean, stderr, count = (float(v) for v in metric.compute())
        n = int(count)
        k_hat = points.pareto_k
        finite_k = torch.zeros(0) if k_hat is None else k_hat[~k_hat.isnan()]  # NaN: too few weights to fit
        return cls(
            estimator=estimator,
            K=k,
            mean_log_px=mean,
            stderr=stderr,
            mean_mc_stderr=_mean(points.mc_stderr),
            mean_ess=_mean(points.ess),
            max_pareto_k=float(finite_k.max()) if finite_k.numel() else None,
            share_k_over_0_7=(
                float((k_hat > PARETO_K_THRESHOLD).double().mean()) if finite_k.numel() else None
            ),
            seconds=seconds,
            datapoints_per_s=n / seconds if seconds > 0 else math.inf,
            num_datapoints=n,
            mean_nll=-mean,
            bits_per_dim=-mean / (num_dims * math.log(2)),
            mean_log_weight_var=_mean(log_weight_var),
            datapoints=points,
        )

    def to_dict(self, per_datapoint: bool = False) -> dict[str, Any]:
        """The statistics as a dict, with the per-datapoint lists under ``"datapoints"`` if asked."""
        out = {name: getattr(self, name) for name in scalar_fields(type(self))}
        if per_datapoint:
            out["datapoints"] = self.datapoints.to_dict()
        return out

    @property
    def heavy_tailed(self) -> bool:
        """Whether any datapoint's weights have k > 0.7 (the MC standard error is not to be trusted)."""
        return bool(self.share_k_over_0_7)


@dataclass(frozen=True)
class BoundsRow:
    """The sandwich at one T, means over the N simulated datapoints; nats per datapoint.

    Each ``*_mc_stderr`` is the Monte Carlo standard error of its mean
    (:meth:`~lvm.estimators.bdmc.Sandwich.means`); the width's adds both directions' in
    quadrature, since they are independent.
    """

    T: int
    lower: float
    lower_mc_stderr: float
    upper: float
    upper_mc_stderr: float
    width: float
    width_mc_stderr: float
    chains: int
    num_datapoints: int
    seconds: float

    @classmethod
    def from_sandwich(cls, sandwich: Sandwich, seconds: float) -> BoundsRow:
        """The means of a sandwich, and the seconds it took."""
        return cls(
            T=sandwich.steps,
            **sandwich.means(),
            chains=sandwich.num_chains,
            num_datapoints=sandwich.x.shape[0],
            seconds=seconds,
        )


@dataclass(frozen=True)
class SandwichRow:
    """One estimator at K samples on the simulated data, placed in the sandwich of the largest T.

    The fields after ``T`` are those of :class:`~lvm.estimators.bdmc.SandwichDistance`.
    """

    estimator: str
    K: int
    T: int
    mean_log_px: float
    mc_stderr: float | None
    above_lower: float
    below_upper: float
    width: float
    inside: float
    seconds: float

    @classmethod
    def from_distance(
        cls, estimator: str, k: int, steps: int, distance: SandwichDistance, seconds: float
    ) -> SandwichRow:
        """The row of ``estimator`` at ``k`` from its distance to the sandwich of T = ``steps``."""
        values = {f: getattr(distance, f) for f in scalar_fields(cls) if hasattr(distance, f)}
        return cls(**{**values, "estimator": estimator, "K": k, "T": steps, "seconds": seconds})
