"""Estimators of log p(x) side by side over K: run them on a data set, tabulate, plot, write."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lvm.estimators.registry import create_estimator
from lvm.metrics import MeanWithStdErr

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "collect",
    "format_table",
    "plot_rows",
    "run_comparison",
    "write_outputs",
]

#: The table's columns: row key -> header.
COLUMNS: dict[str, str] = {
    "estimator": "estimator",
    "K": "K",
    "mean_log_px": "mean log p(x)",
    "stderr": "stderr",
    "mean_ess": "mean ESS",
    "seconds": "seconds",
    "datapoints_per_s": "datapoints/s",
}
#: Further keys of each row, written to JSON and CSV.
EXTRA_COLUMNS = ("num_datapoints", "mean_nll", "bits_per_dim", "mean_log_weight_var")

Spec = str | dict[str, Any]


def _spec_name(spec: Spec) -> str:
    return spec if isinstance(spec, str) else str(spec.get("name"))


def collect(loader: Iterable[Any], limit: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``limit`` datapoints (all if None) of a loader of ``{"x", "index"}`` batches, with indices.

    Batches without ``"index"`` (or plain tensors) are numbered in order of arrival.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of datapoints; got {limit}")
    xs, idx, n = [], [], 0
    for batch in loader:
        x = batch["x"] if isinstance(batch, dict) else batch[0] if isinstance(batch, list | tuple) else batch
        index = batch.get("index") if isinstance(batch, dict) else None
        index = torch.arange(n, n + x.shape[0]) if index is None else torch.as_tensor(index)
        take = x.shape[0] if limit is None else min(x.shape[0], limit - n)
        xs.append(x[:take].cpu())
        idx.append(index[:take].cpu().to(torch.int64))
        n += take
        if limit is not None and n >= limit:
            break
    if n == 0:
        raise ValueError("the test loader gave no datapoints; check the data module's test split")
    return torch.cat(xs), torch.cat(idx)


def run_comparison(
    model: LatentVariableModel,
    loader: Iterable[Any],
    estimators: Sequence[Spec],
    ks: Sequence[int],
    seed: int = 0,
    *,
    limit: int | None = None,
    batch_size: int = 100,
    chunk_size: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every estimator at every K over the test datapoints; one row of dataset statistics each.

    Args:
        model: The latent variable model (``VAE.model``), in eval mode.
        loader: Test batches, dicts with ``"x"`` and ``"index"``.
        estimators: Registered names or ``{"name": ..., **kwargs}`` specs.
        ks: Numbers of samples per datapoint.
        seed: Evaluation seed; with the dataset indices it fixes each datapoint's randomness.
        limit: Use only the first ``limit`` datapoints.
        batch_size: Datapoints per call of an estimator.
        chunk_size: Samples per chunk (None: the estimator's automatic choice).
        progress: Show a progress bar over (estimator, K, batch) on stderr.

    Returns:
        One dict per (estimator, K) with the keys of :data:`COLUMNS` and ``num_datapoints``,
        ``mean_nll`` (nats), ``bits_per_dim`` and ``mean_log_weight_var``; ``mean_ess`` and the
        variance are None for estimators without weights. The standard error is that of the
        dataset mean, s / sqrt(n).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    x_all, index_all = collect(loader, limit)
    device = next(model.parameters()).device
    batches = [
        (x.to(device), i.to(device)) for x, i in zip(x_all.split(batch_size), index_all.split(batch_size))
    ]
    num_dims = x_all[0].numel()
    rows = []
    bar = tqdm(
        total=len(estimators) * len(ks) * len(batches),
        desc="compare",
        unit="batch",
        disable=not progress,
        file=sys.stderr,
    )
    if batches:  # untimed warm-up, so one-time costs (allocator, BLAS set-up) do not land on the first row
        create_estimator(estimators[0], num_samples=1).estimate(model, *batches[0][:1], index=batches[0][1])
    for spec in estimators:
        for k in ks:
            est = create_estimator(spec, num_samples=int(k), chunk_size=chunk_size)
            bar.set_postfix_str(f"{_spec_name(spec)} K={k}")
            log_px, ess, var = MeanWithStdErr(), MeanWithStdErr(), MeanWithStdErr()
            seconds = 0.0
            for x, index in batches:
                t0 = time.perf_counter()
                out = est.estimate(model, x, index=index, seed=seed)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds += time.perf_counter() - t0
                log_px.update(out.log_px.cpu())
                if out.ess is not None:
                    ess.update(out.ess.cpu())
                if out.log_weight_var is not None:
                    var.update(out.log_weight_var.cpu())
                bar.update(1)
            mean, stderr, count = (float(v) for v in log_px.compute())
            rows.append({
                "estimator": _spec_name(spec),
                "K": int(k),
                "mean_log_px": mean,
                "stderr": stderr,
                "mean_ess": float(ess.compute()[0]) if ess.count > 0 else None,
                "seconds": seconds,
                "datapoints_per_s": count / seconds if seconds > 0 else math.inf,
                "num_datapoints": int(count),
                "mean_nll": -mean,
                "bits_per_dim": -mean / (num_dims * math.log(2)),
                "mean_log_weight_var": float(var.compute()[0]) if var.count > 0 else None,
            })  # fmt: skip
    bar.close()
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        return (
            f"{value:.1f}"
            if abs(value) >= 100
            else f"{value:.3g}"
            if 0 < abs(value) < 1e-3
            else f"{value:.3f}"
        )
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], bits_per_dim: bool = False) -> str:
    """A plain-text table of the rows with the :data:`COLUMNS` (and NLL in bits/dim if asked)."""
    cols = dict(COLUMNS, **({"bits_per_dim": "NLL bits/dim"} if bits_per_dim else {}))
    cells = [list(cols.values())] + [[_fmt(r.get(k)) for k in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_outputs(rows: Sequence[dict[str, Any]], out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``compare.json`` (rows and ``meta``), ``compare.csv`` and ``compare.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "csv": out / "compare.csv", "png": out / "compare.png"}
    paths["json"].write_text(json.dumps({**meta, "rows": list(rows)}, indent=2) + "\n")
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *EXTRA_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    plot_rows(rows, paths["png"])
    return paths


def plot_rows(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Mean log p(x) against K (log scale) with standard-error bars, one line per estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    names = list(dict.fromkeys(r["estimator"] for r in rows))
    for i, name in enumerate(names):
        sel = sorted((r for r in rows if r["estimator"] == name), key=lambda r: r["K"])
        dodge = 1 + 0.04 * (i - (len(names) - 1) / 2)  # side by side, so the error bars do not overlap
        ax.errorbar(
            [r["K"] * dodge for r in sel],
            [r["mean_log_px"] for r in sel],
            yerr=[r["stderr"] for r in sel],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("K, samples of z per datapoint")
    ax.set_ylabel("mean log p(x), nats per datapoint")
    n = rows[0]["num_datapoints"] if rows else 0
    ax.set_title(f"log p(x) estimates on {n} test datapoints (bars: standard error)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
