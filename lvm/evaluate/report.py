"""Reports of an evaluation: tables that are views of the rows, a tail warning, JSON, CSV with every field, plots."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lvm.evaluate.rows import PARETO_K_THRESHOLD, BoundsRow, ComparisonRow, SandwichRow, scalar_fields

__all__ = [
    "BOUNDS_TABLE",
    "COMPARISON_TABLE",
    "DATAPOINT_COLUMNS",
    "Column",
    "format_bdmc_tables",
    "format_table",
    "format_value",
    "log_wandb",
    "plot_bdmc",
    "plot_rows",
    "tail_warning",
    "text_table",
    "write_bdmc_report",
    "write_csv",
    "write_json",
    "write_report",
]


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


@dataclass(frozen=True)
class Column:
    """A printed column: its header and the cell it shows of a row (a view; the CSV has every field)."""

    header: str
    cell: Callable[[Any], str]


def _field(name: str, header: str) -> Column:
    return Column(header, lambda row: format_value(getattr(row, name)))


def _percent(name: str, header: str) -> Column:
    return Column(header, lambda row: "-" if (v := getattr(row, name)) is None else f"{100 * v:.0f}%")


def _pm(name: str, header: str) -> Column:
    """``value ± its MC standard error`` from the fields ``name`` and ``name_mc_stderr``."""
    return Column(
        header,
        lambda row: f"{format_value(getattr(row, name))} ± {format_value(getattr(row, f'{name}_mc_stderr'))}",
    )


#: The table of ``lvm compare``, one line per (estimator, K).
COMPARISON_TABLE: tuple[Column, ...] = (
    _field("estimator", "estimator"),
    _field("K", "K"),
    _field("mean_log_px", "mean log p(x)"),
    _field("stderr", "SE data"),
    _field("mean_mc_stderr", "MC SE"),
    _field("mean_ess", "ESS"),
    _field("max_pareto_k", "max k"),
    _percent("share_k_over_0_7", f"k>{PARETO_K_THRESHOLD}"),
    _field("seconds", "seconds"),
    _field("datapoints_per_s", "datapoints/s"),
)
#: The first table of ``lvm bdmc``, one line per T.
BOUNDS_TABLE: tuple[Column, ...] = (
    _field("T", "T"),
    _pm("lower", "lower bound"),
    _pm("upper", "upper bound"),
    _pm("width", "width"),
    _field("seconds", "seconds"),
)
#: Columns of ``compare_datapoints.csv``, one line per (estimator, K, datapoint).
DATAPOINT_COLUMNS = ("estimator", "K", "index", "log_px", "mc_stderr", "pareto_k", "ess")


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


def _render(columns: Sequence[Column], rows: Sequence[Any]) -> str:
    return text_table([c.header for c in columns], [[c.cell(r) for c in columns] for r in rows])


def format_table(rows: Sequence[ComparisonRow], bits_per_dim: bool = False) -> str:
    """The :data:`COMPARISON_TABLE` of the rows (and NLL in bits/dim if asked); '-' for None, k>0.7 in percent."""
    extra = (_field("bits_per_dim", "NLL bits/dim"),) if bits_per_dim else ()
    return _render((*COMPARISON_TABLE, *extra), rows)


def format_bdmc_tables(bounds: Sequence[BoundsRow], rows: Sequence[SandwichRow]) -> str:
    """The sandwich per T (:data:`BOUNDS_TABLE`), then each estimator's mean and distances to the tightest bounds."""
    t = rows[0].T if rows else "-"
    estimators = (
        _field("estimator", "estimator"),
        _field("K", "K"),
        _field("mean_log_px", "mean log p(x)"),
        _field("mc_stderr", "MC SE"),
        _field("above_lower", f"above lower(T={t})"),
        _field("below_upper", f"below upper(T={t})"),
        _percent("inside", "inside"),
        _field("seconds", "seconds"),
    )
    return f"{_render(BOUNDS_TABLE, bounds)}\n\n{_render(estimators, rows)}"


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


def write_json(path: Path, content: dict[str, Any]) -> None:
    """``content`` as indented JSON (values JSON cannot hold written as strings)."""
    path.write_text(json.dumps(content, indent=1, default=str) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """One line per dict, the given ``columns`` only, with a header line."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_report(
    rows: Sequence[ComparisonRow], out: Path, meta: dict[str, Any], per_datapoint: bool = False
) -> dict[str, Path]:
    """Write ``compare.json`` (``meta`` and the rows), ``compare.csv`` and ``compare.png`` into ``out``.

    The CSV has every field of :class:`~lvm.evaluate.rows.ComparisonRow` but the per-datapoint
    values. With ``per_datapoint`` the JSON rows carry those too (``"datapoints"``: lists of
    index, log_px, mc_stderr, pareto_k, ess) and ``compare_datapoints.csv`` holds them one line
    per (estimator, K, datapoint).

    Returns:
        The paths written, keyed ``"json"``, ``"csv"``, ``"png"`` (and ``"datapoints_csv"``).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "csv": out / "compare.csv", "png": out / "compare.png"}
    dicts = [r.to_dict(per_datapoint) for r in rows]
    write_json(paths["json"], {**meta, "rows": dicts})
    write_csv(paths["csv"], dicts, scalar_fields(ComparisonRow))
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


def write_bdmc_report(
    bounds: Sequence[BoundsRow], rows: Sequence[SandwichRow], out: Path, meta: dict[str, Any]
) -> dict[str, Path]:
    """Write ``bdmc.json`` (``meta``, bounds and estimators), ``bdmc_bounds.csv``, ``bdmc_estimators.csv``
    and ``bdmc.png`` into ``out``; the paths written, keyed ``"json"``, ``"bounds_csv"``, ``"estimators_csv"``, ``"png"``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bdmc.json", "bounds_csv": out / "bdmc_bounds.csv",
             "estimators_csv": out / "bdmc_estimators.csv", "png": out / "bdmc.png"}  # fmt: skip
    bound_dicts, row_dicts = [asdict(b) for b in bounds], [asdict(r) for r in rows]
    write_json(paths["json"], {**meta, "bounds": bound_dicts, "estimators": row_dicts})
    write_csv(paths["bounds_csv"], bound_dicts, scalar_fields(BoundsRow))
    write_csv(paths["estimators_csv"], row_dicts, scalar_fields(SandwichRow))
    plot_bdmc(bounds, rows, paths["png"])
    return paths


@contextlib.contextmanager
def _figure(path: Path, xlabel: str, title: str, small: bool = False) -> Iterator[Any]:
    """A figure's axes to draw on; then log-scaled x, labels, grid and legend, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        yield ax
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean log p(x), nats per datapoint")
        ax.set_title(title, fontsize=10 if small else None)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8 if small else None)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def plot_rows(rows: Sequence[ComparisonRow], path: Path) -> None:
    """Mean log p(x) against K (log scale) with standard-error bars, all estimators in one plot."""
    n = rows[0].num_datapoints if rows else 0
    title = f"log p(x) estimates on {n} test datapoints (bars: standard error)"
    with _figure(path, "K, samples of z per datapoint", title) as ax:
        names = list(dict.fromkeys(r.estimator for r in rows))
        for i, name in enumerate(names):
            sel = sorted((r for r in rows if r.estimator == name), key=lambda r: r.K)
            dodge = 1 + 0.04 * (i - (len(names) - 1) / 2)  # side by side, so the error bars do not overlap
            ax.errorbar([r.K * dodge for r in sel], [r.mean_log_px for r in sel],
                        yerr=[r.stderr for r in sel], marker="o", capsize=3, label=name)  # fmt: skip


def plot_bdmc(bounds: Sequence[BoundsRow], rows: Sequence[SandwichRow], path: Path) -> None:
    """Both bounds against T (log scale) with MC error bars; each estimator a horizontal line with its own."""
    n = bounds[0].num_datapoints if bounds else 0
    title = f"BDMC sandwich on {n} simulated datapoints (bars: MC standard error)"
    with _figure(path, "T, annealing steps", title, small=True) as ax:
        ts = [b.T for b in bounds]
        for name, label in (("lower", "forward AIS (lower bound)"), ("upper", "reverse AIS (upper bound)")):
            ax.errorbar(ts, [getattr(b, name) for b in bounds], marker="o", capsize=3, label=label,
                        yerr=[getattr(b, f"{name}_mc_stderr") for b in bounds])  # fmt: skip
        right = max(ts) * 1.6 if ts else 1.0
        for i, r in enumerate(rows):
            color = f"C{i + 2}"
            ax.axhline(r.mean_log_px, color=color, linestyle="--", linewidth=1)
            ax.errorbar([right * (1 + 0.06 * i)], [r.mean_log_px], yerr=[r.mc_stderr or 0.0], color=color,
                        marker="_", capsize=3, label=f"{r.estimator} K={r.K}")  # fmt: skip


def log_wandb(
    rows: Sequence[ComparisonRow], png: Path, out: Path, project: str, meta: dict[str, Any]
) -> None:
    """Log the rows (every field, as the CSV) and the plot to a W&B run (mode ``$WANDB_MODE``, default offline)."""
    import wandb

    run = wandb.init(project=project, job_type="compare", dir=str(out), config=meta,
                     mode=os.environ.get("WANDB_MODE", "offline"))  # fmt: skip
    columns = scalar_fields(ComparisonRow)
    table = wandb.Table(columns=columns, data=[[getattr(r, c) for c in columns] for r in rows])
    run.log({"compare/table": table, "compare/plot": wandb.Image(str(png))})
    run.finish()
