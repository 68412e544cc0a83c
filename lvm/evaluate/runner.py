"""Estimators at several K over a dataset, and the BDMC sandwich, through one evaluation loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lvm.estimators.ais import AnnealedImportanceSampling
from lvm.estimators.bdmc import bdmc, compare_to_sandwich
from lvm.estimators.registry import create_estimator
from lvm.evaluate.data import check_data, evaluation_data
from lvm.evaluate.loop import EvaluationLoop, gather, shard
from lvm.evaluate.rows import BoundsRow, ComparisonRow, Datapoints, SandwichRow
from lvm.model import LatentVariableModel
from lvm.registry import Spec, spec_label

if TYPE_CHECKING:
    import lightning as L

__all__ = ["build_estimators", "check_bdmc", "compare_estimators", "run_bdmc"]

_VALUES = ("log_px", "mc_stderr", "pareto_k", "ess", "log_weight_var")


def build_estimators(
    estimators: Sequence[Spec], num_samples: Sequence[int], chunk_size: int | None = None
) -> list[tuple[str, int, Any]]:
    """(label, K, estimator) for each estimator spec and each K, estimators outermost.

    ``chunk_size`` is passed only when given, so that a spec's own ``chunk_size`` is kept otherwise.

    Raises:
        UnknownNameError, ValueError: for an unknown estimator or bad options, before any work.
    """
    chunking = {} if chunk_size is None else {"chunk_size": chunk_size}
    return [(spec_label(s), int(k), create_estimator(s, num_samples=int(k), **chunking))
            for s in estimators for k in num_samples]  # fmt: skip


def _as_model(model: Any) -> LatentVariableModel:
    if isinstance(model, LatentVariableModel):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, LatentVariableModel):
        return inner
    raise TypeError(f"model must be a LatentVariableModel or a VAE; got {type(model).__name__}")


def compare_estimators(
    model: Any,
    data: Tensor | L.LightningDataModule,
    estimators: Sequence[Spec],
    num_samples: Sequence[int],
    *,
    seed: int = 0,
    index: Tensor | None = None,
    limit: int | None = None,
    batch_size: int = 100,
    chunk_size: int | None = None,
    progress: bool = False,
) -> list[ComparisonRow]:
    """Run every estimator at every K on the same datapoints; one row of dataset statistics each.

    The data is checked as ``lvm fit`` checks it (:func:`~lvm.evaluate.data.check_data`) and
    every estimator is built before any estimation. Each datapoint's randomness is keyed by
    (seed, dataset index), so a datapoint's estimate does not depend on ``limit``,
    ``batch_size`` or the number of processes. Under ``torch.distributed`` rank r of W
    evaluates datapoints r, r + W, ... and the per-datapoint values are gathered, so every rank
    returns the rows one process would (up to timings). The standard error across datapoints
    measures how much the dataset mean would vary with other test data; the MC standard error
    (``Estimate.mc_stderr``, the delta method on the normalised weights) how much each
    datapoint's own estimate would vary with other draws of z, trustworthy only where the
    Pareto k of the weights is at most 0.7 (Vehtari et al., "Pareto smoothed importance
    sampling"). Values an estimator does not report (``Estimate`` fields that are None or
    absent) are None in the rows.

    Args:
        model: A :class:`~lvm.model.LatentVariableModel` or a ``VAE`` (its ``model`` is used);
            evaluated in eval mode, on the device of its parameters.
        data: A tensor (N, *event_shape), or a LightningDataModule, whose test split is used.
        estimators: Registered names or ``{"name": ..., **options}`` specs.
        num_samples: The values of K.
        seed: Evaluation seed.
        index: Dataset indices of a tensor's datapoints (default 0..N-1).
        limit: Use only the first ``limit`` datapoints.
        batch_size: Datapoints per estimator call.
        chunk_size: Samples per chunk (None: each estimator's automatic choice).
        progress: Show a progress bar on stderr (rank 0 only).

    Returns:
        One :class:`~lvm.evaluate.rows.ComparisonRow` per (estimator, K), estimators outermost.

    Raises:
        ValueError: for bad data (naming the split, likelihood, value and datapoint), an empty
            list, K < 1, or bad estimator options; ``UnknownNameError`` for an unknown estimator.
    """
    lvm_model = _as_model(model)
    ks = [int(k) for k in num_samples]
    if not estimators or not ks:
        raise ValueError(f"need at least one estimator and one K; got {list(estimators)} and {ks}")
    if min(ks) < 1 or batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"K, batch_size and limit must be positive; got K={ks}, {batch_size}, {limit}")
    built = build_estimators(estimators, ks, chunk_size)
    x, idx, source = evaluation_data(data, index)
    if limit is not None:
        x, idx = x[:limit], idx[:limit]
    check_data(x, lvm_model, source, idx)
    batches = shard(x, idx, batch_size, next(lvm_model.parameters()).device)
    with EvaluationLoop(lvm_model, len(built) * len(batches), "compare", progress, unit="batch") as loop:
        # an untimed warm-up, so one-time costs (allocator, BLAS set-up) do not land on the first row
        if batches:
            built[0][2].estimate(lvm_model, batches[0][0][:1], index=batches[0][1][:1], seed=seed)
        shards = [_estimate_shard(loop, lvm_model, label, k, est, batches, seed) for label, k, est in built]
    by_rank = gather(shards)
    return [
        _row(label, k, [rank[i] for rank in by_rank], x[0].numel()) for i, (label, k, _) in enumerate(built)
    ]


def _estimate_shard(
    loop: EvaluationLoop,
    model: LatentVariableModel,
    label: str,
    k: int,
    estimator: Any,
    batches: list[tuple[Tensor, Tensor]],
    seed: int,
) -> dict[str, Any]:
    """This process's per-datapoint values of one (estimator, K), and its seconds."""
    values: dict[str, list[Tensor]] = {name: [] for name in ("index", *_VALUES)}
    seconds = 0.0
    for xb, ib in batches:
        result, s = loop.timed(f"{label} K={k}", estimator.estimate, model, xb, index=ib, seed=seed)
        seconds += s
        values["index"].append(ib.cpu())
        for name in _VALUES:
            value = getattr(result, name, None)  # mc_stderr and pareto_k: estimators that report them
            if value is not None:
                values[name].append(value.detach().cpu())
    # a value is kept only if every batch reported it (None for an empty shard: N < processes)
    return {
        "seconds": seconds,
        **{n: torch.cat(v) if v and len(v) == len(batches) else None for n, v in values.items()},
    }


def _row(label: str, k: int, shards: list[dict[str, Any]], num_dims: int) -> ComparisonRow:
    """One row from the processes' shards: per-datapoint values in dataset-index order, then statistics."""
    shards = [s for s in shards if s["index"] is not None]
    index = torch.cat([s["index"] for s in shards])
    order = index.argsort()

    def joined(name: str) -> Tensor | None:
        parts = [s[name] for s in shards]
        return None if any(p is None for p in parts) else torch.cat(parts)[order]

    log_px = joined("log_px")
    assert log_px is not None
    points = Datapoints(index[order], log_px, joined("mc_stderr"), joined("pareto_k"), joined("ess"))
    seconds = max(s["seconds"] for s in shards)
    return ComparisonRow.from_datapoints(label, k, points, seconds, num_dims, joined("log_weight_var"))


def run_bdmc(
    model: LatentVariableModel,
    num_datapoints: int,
    steps: Sequence[int],
    chains: int,
    estimators: Sequence[Spec],
    num_samples: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 100,
    chunk_size: int | None = None,
    progress: bool = False,
    **ais_options: Any,
) -> tuple[list[BoundsRow], list[SandwichRow]]:
    """The sandwich (:func:`~lvm.estimators.bdmc.bdmc`) at each T, and each estimator at each K in it.

    The same N datapoints (z, x) ~ p(z) p(x | z) are simulated for every T (keyed by ``seed``);
    the estimators are evaluated on them with seed ``seed + 1`` by
    :func:`~lvm.estimators.bdmc.compare_to_sandwich`, against the sandwich of the largest T.
    Runs in one process.

    Raises:
        ValueError: for T, K, N or the chains < 1, or bad AIS options, before any work;
            ``UnknownNameError`` for an unknown estimator.
    """
    built = check_bdmc(
        num_datapoints, steps, chains, estimators, num_samples, batch_size, chunk_size, ais_options
    )
    bounds, rows, sandwich = [], [], None
    with EvaluationLoop(model, sum(steps) + len(built), "bdmc", progress) as loop:
        for t in sorted(steps):
            sandwich, seconds = loop.timed(
                f"AIS both ways, T={t}", bdmc, model, num_datapoints, t, chains, seed, batch_size,
                chunk_size=chunk_size, advance=t, **ais_options,
            )  # fmt: skip
            bounds.append(BoundsRow.from_sandwich(sandwich, seconds))
        assert sandwich is not None
        for label, k, est in built:
            (dist,), seconds = loop.timed(
                f"{label} K={k}", compare_to_sandwich, model, sandwich, [est], seed + 1
            )
            rows.append(SandwichRow.from_distance(label, k, sandwich.steps, dist, seconds))
    return bounds, rows


def check_bdmc(
    num_datapoints: int,
    steps: Sequence[int],
    chains: int,
    estimators: Sequence[Spec],
    num_samples: Sequence[int],
    batch_size: int,
    chunk_size: int | None,
    ais_options: dict[str, Any],
) -> list[tuple[str, int, Any]]:
    """Check every option of :func:`run_bdmc` and build its estimators: (label, K, estimator) each.

    Raises:
        ValueError: for T, K, N, the chains or the batch size < 1, or bad AIS options.
    """
    if min([*steps, *num_samples, chains, num_datapoints, batch_size]) < 1:
        raise ValueError(
            f"T, K, chains, N and batch size must be >= 1; got T={list(steps)}, K={list(num_samples)}, "
            f"chains={chains}, N={num_datapoints}, batch size={batch_size}"
        )
    for t in steps:
        AnnealedImportanceSampling(num_samples=chains, steps=t, **ais_options)  # bad options raise here
    return build_estimators(estimators, num_samples, chunk_size)
