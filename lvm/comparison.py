"""Several log p(x) estimators at several numbers of samples K on one data set, as rows of statistics."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lvm.estimators.registry import create_estimator
from lvm.model import LatentVariableModel
from lvm.registry import Spec, spec_label
from lvm.report import PARETO_K_THRESHOLD, ComparisonRow, Datapoints

if TYPE_CHECKING:
    import lightning as L

__all__ = ["check_data", "chunking", "compare_estimators"]


def chunking(chunk_size: int | None) -> dict[str, int]:
    """``chunk_size`` as a keyword only when given, so a spec's own ``chunk_size`` is kept otherwise."""
    return {} if chunk_size is None else {"chunk_size": chunk_size}


def check_data(
    x: Tensor, model: LatentVariableModel, source: str = "data", index: Tensor | None = None
) -> None:
    """Validate data as ``lvm fit`` does (shape, then ``likelihood.check``), naming the first bad datapoint.

    ``lvm fit`` runs the likelihood's own check (finite values, support) on every split; here
    the same check runs on ``x``, and on failure a bisection over datapoints finds the first one
    that fails, so the message names its dataset index and the offending value.

    Args:
        x: Data (N, *event_shape).
        model: The model whose likelihood defines the support.
        source: What ``x`` is, for the message, e.g. ``"MNISTDataModule test split"``.
        index: Dataset indices of the datapoints (default 0..N-1).

    Raises:
        ValueError: naming ``source``, the datapoint's index and the likelihood's complaint.
    """
    shape = tuple(model.event_shape)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{source}: datapoints have shape {tuple(x.shape[1:])}; the model expects {shape} "
            "(check the data module's flatten option)"
        )
    lik = model.likelihood
    try:
        lik.check(x)
        return
    except ValueError as err:
        first = err
    lo, hi = 0, x.shape[0]  # a failing datapoint lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            lik.check(x[lo:mid])
            lo = mid
        except ValueError:
            hi = mid
    i = int(index[lo]) if index is not None else lo
    try:
        lik.check(x[lo])  # one datapoint: the message's element index lies inside it
    except ValueError as err:
        raise ValueError(f"{source}, datapoint {i}: {err}") from None
    raise ValueError(f"{source}: {first}") from None


def _test_data(data: Tensor | L.LightningDataModule, index: Tensor | None) -> tuple[Tensor, Tensor, str]:
    """(x, dataset indices, description) of a tensor or of a data module's test split."""
    if torch.is_tensor(data):
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data must be a non-empty tensor (N, ...); got shape {tuple(data.shape)}")
        index = torch.arange(data.shape[0]) if index is None else torch.as_tensor(index).to(torch.int64)
        if index.shape != data.shape[:1]:
            raise ValueError(f"index must have shape ({data.shape[0]},); got {tuple(index.shape)}")
        return data, index, "data"
    if index is not None:
        raise ValueError("index is taken from the data module; pass it only with a tensor")
    name = f"{type(data).__name__} test split"
    if not (hasattr(data, "setup") and hasattr(data, "test_dataloader")):
        raise TypeError(f"data must be a tensor or a LightningDataModule; got {type(data).__name__}")
    _prepare(data)
    data.setup("test")
    if hasattr(data, "split"):  # an InMemoryDataModule: the whole split, unsharded
        split = data.split("test")
        if split is None or split.x.shape[0] == 0:
            raise ValueError(f"{type(data).__name__} has no test split to evaluate")
        return split.x, torch.arange(split.x.shape[0]), name
    return (*_collect(data.test_dataloader(), name), name)


def _prepare(dm: L.LightningDataModule) -> None:
    """``prepare_data`` on rank 0 (downloads, file checks), then a barrier, as Lightning does."""
    from lvm.data.loader import dist_info  # lazily: lvm.data imports Lightning

    world, rank = dist_info()
    if rank == 0:
        dm.prepare_data()
    if world > 1:
        torch.distributed.barrier()


def _collect(loader: Iterable[Any], name: str) -> tuple[Tensor, Tensor]:
    """All batches of a loader of ``{"x", "index"}`` dicts (or tensors, numbered in order)."""
    xs, idx, n = [], [], 0
    for batch in loader:
        x = batch["x"] if isinstance(batch, dict) else batch[0] if isinstance(batch, list | tuple) else batch
        index = batch.get("index") if isinstance(batch, dict) else None
        idx.append(torch.arange(n, n + x.shape[0]) if index is None else torch.as_tensor(index).cpu())
        xs.append(x.cpu())
        n += x.shape[0]
    if n == 0:
        raise ValueError(f"the {name} is empty")
    return torch.cat(xs), torch.cat(idx).to(torch.int64)


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

    The data is checked as ``lvm fit`` checks it (:func:`check_data`) and every estimator is
    built before any estimation. Each datapoint's randomness is keyed by (seed, dataset index),
    so a datapoint's estimate does not depend on ``limit``, ``batch_size`` or the number of
    processes. Under ``torch.distributed`` rank r of W evaluates datapoints r, r + W, ... and
    the per-datapoint values are gathered, so every rank returns the rows one process would
    (up to timings). The standard error across datapoints measures how much the dataset mean
    would vary with other test data; the MC standard error (``Estimate.mc_stderr``, the delta
    method on the normalised weights) how much each datapoint's own estimate would vary with
    other draws of z, trustworthy only where the Pareto k of the weights is at most 0.7
    (Vehtari et al., "Pareto smoothed importance sampling"). Values an estimator does not
    report (``Estimate`` fields that are None or absent) are None in the rows.

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
        One :class:`ComparisonRow` per (estimator, K), estimators outermost.

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
    built = {
        (i, k): create_estimator(s, num_samples=k, **chunking(chunk_size))
        for i, s in enumerate(estimators)
        for k in ks
    }
    x, idx, source = _test_data(data, index)
    if limit is not None:
        x, idx = x[:limit], idx[:limit]
    check_data(x, lvm_model, source, idx)
    from lvm.data.loader import dist_info

    world, rank = dist_info()
    device = next(lvm_model.parameters()).device
    batches = [
        (b.to(device), i.to(device))
        for b, i in zip(x[rank::world].split(batch_size), idx[rank::world].split(batch_size))
    ]
    was_training = lvm_model.training
    lvm_model.eval()
    try:
        shards = _run(lvm_model, built, batches, seed, progress and rank == 0, device)
    finally:
        lvm_model.train(was_training)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, shards)
    else:
        gathered = [shards]
    num_dims = x[0].numel()
    return [
        _row(spec_label(estimators[i]), k, [g[(i, k)] for g in gathered], num_dims)
        for i in range(len(estimators))
        for k in ks
    ]


def _run(
    model: LatentVariableModel,
    built: dict[tuple[int, int], Any],
    batches: list[tuple[Tensor, Tensor]],
    seed: int,
    progress: bool,
    device: torch.device,
) -> dict[tuple[int, int], dict[str, Any]]:
    """This process's per-datapoint values and seconds for each (estimator position, K)."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(built) * len(batches), desc="compare", unit="batch", disable=not progress, file=sys.stderr
    )
    if batches:  # untimed warm-up, so one-time costs (allocator, BLAS set-up) do not land on the first row
        next(iter(built.values())).estimate(model, batches[0][0][:1], index=batches[0][1][:1], seed=seed)
    out = {}
    for key, est in built.items():
        bar.set_postfix_str(f"{est.name} K={key[1]}")
        values: dict[str, list[Tensor]] = {
            "index": [],
            "log_px": [],
            "mc_stderr": [],
            "pareto_k": [],
            "ess": [],
            "log_weight_var": [],
        }
        seconds = 0.0
        for xb, ib in batches:
            t0 = time.perf_counter()
            result = est.estimate(model, xb, index=ib, seed=seed)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - t0
            values["index"].append(ib.cpu())
            for name in ("log_px", "mc_stderr", "pareto_k", "ess", "log_weight_var"):
                value = getattr(result, name, None)  # mc_stderr and pareto_k: estimators that report them
                if value is not None:
                    values[name].append(value.detach().cpu())
            bar.update(1)
        # a value is kept only if every batch reported it (None for an empty shard: N < processes)
        full = {n: torch.cat(v) if v and len(v) == len(batches) else None for n, v in values.items()}
        out[key] = {"seconds": seconds, **full}
    bar.close()
    return out


def _mean(v: Tensor | None) -> float | None:
    return None if v is None else float(v.double().mean())


def _row(label: str, k: int, shards: list[dict[str, Any]], num_dims: int) -> ComparisonRow:
    """One row from the processes' shards: per-datapoint values in dataset-index order, then statistics."""
    index = torch.cat([s["index"] for s in shards if s["index"] is not None])
    order = index.argsort()

    def joined(name: str) -> Tensor | None:
        parts = [s[name] for s in shards if s["index"] is not None]
        return None if any(p is None for p in parts) else torch.cat(parts)[order]

    log_px, k_hat = joined("log_px"), joined("pareto_k")
    assert log_px is not None
    v = log_px.double()
    n = v.numel()
    mean = float(v.mean())
    stderr = float(v.std() / math.sqrt(n)) if n > 1 else 0.0  # as lvm.metrics.MeanWithStdErr
    seconds = max(s["seconds"] for s in shards)
    finite_k = torch.zeros(0) if k_hat is None else k_hat[~k_hat.isnan()]  # NaN: too few weights to fit
    share = float((k_hat > PARETO_K_THRESHOLD).double().mean()) if finite_k.numel() else None
    points = Datapoints(index[order], log_px, joined("mc_stderr"), k_hat, joined("ess"))
    return ComparisonRow(
        estimator=label,
        K=k,
        mean_log_px=mean,
        stderr=stderr,
        mean_mc_stderr=_mean(points.mc_stderr),
        mean_ess=_mean(points.ess),
        max_pareto_k=float(finite_k.max()) if finite_k.numel() else None,
        share_k_over_0_7=share,
        seconds=seconds,
        datapoints_per_s=n / seconds if seconds > 0 else math.inf,
        num_datapoints=n,
        mean_nll=-mean,
        bits_per_dim=-mean / (num_dims * math.log(2)),
        mean_log_weight_var=_mean(joined("log_weight_var")),
        datapoints=points,
    )
