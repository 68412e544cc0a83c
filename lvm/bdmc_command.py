"""``lvm bdmc``: a bidirectional Monte Carlo sandwich of log p(x) on data simulated from a checkpoint's model."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lvm.checkpoint import load_vae
from lvm.compare import estimator_specs, int_list
from lvm.comparison import chunking
from lvm.errors import CommandParser
from lvm.estimators import create_estimator, list_estimators
from lvm.estimators.ais import SCHEDULES, STARTS, AnnealedImportanceSampling
from lvm.estimators.bdmc import bdmc, compare_to_sandwich
from lvm.model import LatentVariableModel
from lvm.registry import Spec, spec_label
from lvm.report import format_value, text_table, write_csv, write_json

__all__ = ["BoundsRow", "SandwichRow", "build_parser", "main", "run_bdmc"]


@dataclass(frozen=True)
class BoundsRow:
    """The sandwich at one T, means over the N simulated datapoints; nats per datapoint.

    Each ``*_mc_stderr`` is the Monte Carlo standard error of its mean, sqrt(sum_n se_n^2) / N,
    from each datapoint's delta-method standard error over its K chains (the two directions are
    independent, so the width's adds both in quadrature).
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


def _mean_se(se: Tensor) -> float:
    return float(se.double().square().sum().sqrt() / len(se))


def _build(
    num_datapoints: int,
    steps: Sequence[int],
    chains: int,
    estimators: Sequence[Spec],
    num_samples: Sequence[int],
    batch_size: int,
    chunk_size: int | None,
    ais_options: dict[str, Any],
) -> list[tuple[str, int, Any]]:
    """Check every option and build the estimators: (label, K, estimator) per estimator and K."""
    if min([*steps, *num_samples, chains, num_datapoints, batch_size]) < 1:
        raise ValueError(
            f"T, K, chains, N and batch size must be >= 1; got T={list(steps)}, K={list(num_samples)}, "
            f"chains={chains}, N={num_datapoints}, batch size={batch_size}"
        )
    for t in steps:
        AnnealedImportanceSampling(num_samples=chains, steps=t, **ais_options)  # bad options raise here
    return [(spec_label(s), k, create_estimator(s, num_samples=k, **chunking(chunk_size)))
            for s in estimators for k in num_samples]  # fmt: skip


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

    Raises:
        ValueError: for T, K, N or the chains < 1, or bad AIS options, before any work;
            ``UnknownNameError`` for an unknown estimator.
    """
    built = _build(
        num_datapoints, steps, chains, estimators, num_samples, batch_size, chunk_size, ais_options
    )
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(steps) + len(built), desc="bdmc", disable=not progress, file=sys.stderr)
    was_training = model.training
    model.eval()
    bounds, sandwich = [], None
    try:
        for t in sorted(steps):
            bar.set_postfix_str(f"AIS both ways, T={t}")
            t0 = time.perf_counter()
            sandwich = bdmc(model, num_datapoints, t, chains, seed, batch_size, chunk_size=chunk_size,
                            **ais_options)  # fmt: skip
            bounds.append(
                BoundsRow(
                    T=t,
                    lower=float(sandwich.lower.double().mean()),
                    lower_mc_stderr=_mean_se(sandwich.lower_stderr),
                    upper=float(sandwich.upper.double().mean()),
                    upper_mc_stderr=_mean_se(sandwich.upper_stderr),
                    width=float(sandwich.width.double().mean()),
                    width_mc_stderr=_mean_se(torch.hypot(sandwich.lower_stderr, sandwich.upper_stderr)),
                    chains=chains,
                    num_datapoints=num_datapoints,
                    seconds=time.perf_counter() - t0,
                )
            )
            bar.update(t)
        assert sandwich is not None
        rows = []
        for label, k, est in built:
            bar.set_postfix_str(f"{label} K={k}")
            t0 = time.perf_counter()
            (dist,) = compare_to_sandwich(model, sandwich, [est], seed=seed + 1)
            values = {f: getattr(dist, f) for f in ("mean_log_px", "mc_stderr", "above_lower",
                                                     "below_upper", "width", "inside")}  # fmt: skip
            rows.append(SandwichRow(label, k, sandwich.steps, **values, seconds=time.perf_counter() - t0))
            bar.update(1)
    finally:
        model.train(was_training)
        bar.close()
    return bounds, rows


def format_tables(bounds: Sequence[BoundsRow], rows: Sequence[SandwichRow]) -> str:
    """The sandwich per T, then each estimator's mean and its distances to the tightest bounds."""
    pm = lambda v, se: f"{format_value(v)} ± {format_value(se)}"  # noqa: E731
    top = text_table(
        ["T", "lower bound", "upper bound", "width", "seconds"],
        [[str(b.T), pm(b.lower, b.lower_mc_stderr), pm(b.upper, b.upper_mc_stderr),
          pm(b.width, b.width_mc_stderr), format_value(b.seconds)] for b in bounds],
    )  # fmt: skip
    t = rows[0].T if rows else "-"
    bottom = text_table(
        ["estimator", "K", "mean log p(x)", "MC SE", f"above lower(T={t})", f"below upper(T={t})", "inside", "seconds"],
        [[r.estimator, str(r.K), format_value(r.mean_log_px), format_value(r.mc_stderr),
          format_value(r.above_lower), format_value(r.below_upper), f"{100 * r.inside:.0f}%",
          format_value(r.seconds)] for r in rows],
    )  # fmt: skip
    return f"{top}\n\n{bottom}"


def plot_bdmc(bounds: Sequence[BoundsRow], rows: Sequence[SandwichRow], path: Path) -> None:
    """Both bounds against T (log scale) with MC error bars; each estimator a horizontal line with its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ts = [b.T for b in bounds]
    for name, label in (("lower", "forward AIS (lower bound)"), ("upper", "reverse AIS (upper bound)")):
        ax.errorbar(ts, [getattr(b, name) for b in bounds],
                    yerr=[getattr(b, f"{name}_mc_stderr") for b in bounds], marker="o", capsize=3,
                    label=label)  # fmt: skip
    right = max(ts) * 1.6 if ts else 1.0
    for i, r in enumerate(rows):
        color = f"C{i + 2}"
        ax.axhline(r.mean_log_px, color=color, linestyle="--", linewidth=1)
        ax.errorbar([right * (1 + 0.06 * i)], [r.mean_log_px], yerr=[r.mc_stderr or 0.0], color=color,
                    marker="_", capsize=3, label=f"{r.estimator} K={r.K}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("T, annealing steps")
    ax.set_ylabel("mean log p(x), nats per datapoint")
    n = bounds[0].num_datapoints if bounds else 0
    ax.set_title(f"BDMC sandwich on {n} simulated datapoints (bars: MC standard error)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="lvm bdmc",
        description="Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015): simulate (z, x) from a "
        "trained checkpoint's model, run forward AIS (a stochastic lower bound on log p(x)) and reverse AIS "
        "from the exact z (a stochastic upper bound) for each T, evaluate each estimator on the same x, "
        "print the sandwich and each estimator's distance to it; write bdmc.json, bdmc_bounds.csv, "
        "bdmc_estimators.csv and bdmc.png.",
    )
    add = parser.add_argument
    add("--ckpt", required=True, type=Path, help="Lightning checkpoint of an lvm VAE.")
    add("--num-datapoints", type=int, default=100, help="N, datapoints to simulate (default 100).")
    add(
        "--steps",
        type=int_list,
        default=[100, 1000],
        help="comma-separated T, annealing steps (default 100,1000).",
    )
    add("--chains", type=int, default=10, help="AIS chains per datapoint and direction (default 10).")
    add(
        "--estimators",
        type=estimator_specs,
        default=["elbo", "importance"],
        help=f"estimators to place in the sandwich: comma-separated names (known: {', '.join(list_estimators())}) "
        "or a YAML list of names and {name: ..., <options>} specs (default elbo,importance).",
    )
    add(
        "--num-samples",
        type=int_list,
        default=[1, 100, 1000],
        help="comma-separated K of the estimators (default 1,100,1000).",
    )
    add("--schedule", choices=SCHEDULES, default="sigmoid", help="annealing schedule (default sigmoid).")
    add(
        "--start",
        choices=STARTS,
        default="posterior",
        help="AIS start and end: q(z|x) or the prior (default posterior).",
    )
    add("--leapfrog-steps", type=int, default=10, help="leapfrog steps per HMC transition (default 10).")
    add("--batch-size", type=int, default=100, help="datapoints per AIS batch (default 100).")
    add("--chunk-size", type=int, default=None, help="chains or samples per chunk (default: automatic).")
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the simulation and of AIS; the estimators use seed + 1 (default 0).",
    )
    add("--out", type=Path, default=None, help="output folder (default <ckpt folder>/bdmc).")
    add("--device", default=None, help="torch device (default cuda if available, else cpu).")
    add("--no-progress", action="store_true", help="hide the progress bar.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lvm bdmc``; user errors propagate to :func:`lvm.errors.run_command` (one line, exit 2)."""
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    ais_options = {"schedule": args.schedule, "start": args.start, "leapfrog_steps": args.leapfrog_steps}
    _build(
        args.num_datapoints,
        args.steps,
        args.chains,
        args.estimators,
        args.num_samples,
        args.batch_size,
        args.chunk_size,
        ais_options,
    )  # bad input: before the checkpoint is read
    vae, _ = load_vae(args.ckpt, device)
    bounds, rows = run_bdmc(vae.model, args.num_datapoints, args.steps, args.chains, args.estimators,
                            args.num_samples, seed=args.seed, batch_size=args.batch_size,
                            chunk_size=args.chunk_size, progress=not args.no_progress, **ais_options)  # fmt: skip
    print(format_tables(bounds, rows))
    out = args.out or args.ckpt.resolve().parent / "bdmc"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(args.ckpt), "num_datapoints": args.num_datapoints, "chains": args.chains,
            "seed": args.seed, "estimator_seed": args.seed + 1, **ais_options, "device": device,
            "torch": torch.__version__}  # fmt: skip
    bound_dicts = [dataclasses.asdict(b) for b in bounds]
    row_dicts = [dataclasses.asdict(r) for r in rows]
    paths = {"json": out / "bdmc.json", "bounds_csv": out / "bdmc_bounds.csv",
             "estimators_csv": out / "bdmc_estimators.csv", "png": out / "bdmc.png"}  # fmt: skip
    write_json(paths["json"], {**meta, "bounds": bound_dicts, "estimators": row_dicts})
    write_csv(paths["bounds_csv"], bound_dicts, [f.name for f in dataclasses.fields(BoundsRow)])
    write_csv(paths["estimators_csv"], row_dicts, [f.name for f in dataclasses.fields(SandwichRow)])
    plot_bdmc(bounds, rows, paths["png"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from lvm.errors import run_command

    raise SystemExit(run_command("lvm bdmc", main, sys.argv[1:]))
