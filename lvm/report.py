"""The report of an estimator comparison: its rows, a text table, a tail warning, JSON, CSV and a plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = [
    "COLUMNS",
    "DATAPOINT_COLUMNS",
    "EXTRA_COLUMNS",
    "PARETO_K_THRESHOLD",
    "ComparisonRow",
    "Datapoints",
    "format_table",
    "format_value",
    "plot_rows",
    "tail_warning",
    "text_table",
    "write_csv",
    "write_json",
    "write_report",
]

#: Above this Pareto shape the importance weights' variance is effectively infinite and the MC
#: standard error cannot be trusted (Vehtari et al., "Pareto smoothed importance sampling", section 3).
PARETO_K_THRESHOLD = 0.7


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
        share_k_over_0_7: Share of the N datapoints with k > 0.7, or None like ``max_pareto_k``.
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

    def to_dict(self, per_datapoint: bool = False) -> dict[str, Any]:
        """The statistics as a dict, with the per-datapoint lists under ``"datapoints"`` if asked."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "datapoints"}
        if per_datapoint:
            out["datapoints"] = self.datapoints.to_dict()
        return out

    @property
    def heavy_tailed(self) -> bool:
        """Whether any datapoint's weights have k > 0.7 (the MC standard error is not to be trusted)."""
        return bool(self.share_k_over_0_7)


#: The table's columns: row attribute -> header.
COLUMNS: dict[str, str] = {
    "estimator": "estimator",
    "K": "K",
    "mean_log_px": "mean log p(x)",
    "stderr": "SE data",
    "mean_mc_stderr": "MC SE",
    "mean_ess": "ESS",
    "max_pareto_k": "max k",
    "share_k_over_0_7": f"k>{PARETO_K_THRESHOLD}",
    "seconds": "seconds",
    "datapoints_per_s": "datapoints/s",
}
#: Further row attributes, written to JSON and CSV.
EXTRA_COLUMNS = ("num_datapoints", "mean_nll", "bits_per_dim", "mean_log_weight_var")
#: Columns of ``compare_datapoints.csv``, one line per (estimator, K, datapoint).
DATAPOINT_COLUMNS = ("estimator", "K", "index", "log_px", "mc_stderr", "pareto_k", "ess")


def format_value(value: Any) -> str:
    """A table cell: '-' for None, floats with 3 decimals (fewer digits above 100, 3 significant below 1e-3)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def text_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Columns aligned under ``header`` and a rule: the first left-aligned, the others right-aligned."""
    lines_in = [list(header), *(list(c) for c in cells)]
    widths = [max(len(line[i]) for line in lines_in) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines_in
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """``content`` as indented JSON (values JSON cannot hold written as strings)."""
    path.write_text(json.dumps(content, indent=1, default=str) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """One line per dict, the given ``columns`` only, with a header line."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: Sequence[ComparisonRow], bits_per_dim: bool = False) -> str:
    """A plain-text table of the rows' :data:`COLUMNS` (and NLL in bits/dim if asked); '-' for None.

    The share of datapoints with k > 0.7 is shown in percent.
    """
    cols = dict(COLUMNS, **({"bits_per_dim": "NLL bits/dim"} if bits_per_dim else {}))

    def cell(row: ComparisonRow, key: str) -> str:
        value = getattr(row, key)
        if key == "share_k_over_0_7" and value is not None:
            return f"{100 * value:.0f}%"
        return format_value(value)

    return text_table(list(cols.values()), [[cell(r, k) for k in cols] for r in rows])


def tail_warning(rows: Sequence[ComparisonRow]) -> str | None:
    """One line naming the rows with any datapoint whose Pareto k exceeds 0.7, or None if there are none."""
    heavy = [f"{r.estimator} K={r.K}" for r in rows if r.heavy_tailed]
    if not heavy:
        return None
    return (
        f"warning: Pareto k > {PARETO_K_THRESHOLD} for some datapoints in {', '.join(heavy)}: their "
        "importance weights have effectively infinite variance, so the MC SE understates the error "
        "(Vehtari et al., Pareto smoothed importance sampling); use more samples or a wider proposal"
    )


def write_report(
    rows: Sequence[ComparisonRow], out: Path, meta: dict[str, Any], per_datapoint: bool = False
) -> dict[str, Path]:
    """Write ``compare.json`` (``meta`` and the rows), ``compare.csv`` and ``compare.png`` into ``out``.

    With ``per_datapoint`` the JSON rows carry their per-datapoint values (``"datapoints"``:
    lists of index, log_px, mc_stderr, pareto_k, ess) and ``compare_datapoints.csv`` holds
    them one line per (estimator, K, datapoint).

    Returns:
        The paths written, keyed ``"json"``, ``"csv"``, ``"png"`` (and ``"datapoints_csv"``).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "csv": out / "compare.csv", "png": out / "compare.png"}
    dicts = [r.to_dict(per_datapoint) for r in rows]
    write_json(paths["json"], {**meta, "rows": dicts})
    write_csv(paths["csv"], dicts, [*COLUMNS, *EXTRA_COLUMNS])
    if per_datapoint:
        paths["datapoints_csv"] = out / "compare_datapoints.csv"
        with paths["datapoints_csv"].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(DATAPOINT_COLUMNS)
            for r in rows:
                values = r.datapoints.to_dict()
                columns = [values[c] or [None] * r.num_datapoints for c in DATAPOINT_COLUMNS[2:]]
                writer.writerows([r.estimator, r.K, *line] for line in zip(*columns))
    plot_rows(rows, paths["png"])
    return paths


def plot_rows(rows: Sequence[ComparisonRow], path: Path) -> None:
    """Mean log p(x) against K (log scale) with standard-error bars, all estimators in one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    names = list(dict.fromkeys(r.estimator for r in rows))
    for i, name in enumerate(names):
        sel = sorted((r for r in rows if r.estimator == name), key=lambda r: r.K)
        dodge = 1 + 0.04 * (i - (len(names) - 1) / 2)  # side by side, so the error bars do not overlap
        ax.errorbar(
            [r.K * dodge for r in sel],
            [r.mean_log_px for r in sel],
            yerr=[r.stderr for r in sel],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("K, samples of z per datapoint")
    ax.set_ylabel("mean log p(x), nats per datapoint")
    n = rows[0].num_datapoints if rows else 0
    ax.set_title(f"log p(x) estimates on {n} test datapoints (bars: standard error)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
