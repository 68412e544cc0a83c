"""Mean and standard deviation over training seeds of the prior_mc experiment's headline figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from over_seeds import mean_sd


def summarize_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per figure: its value in each run's results.json, their mean and sd over the runs.

    The figures: the 2-D model's exact mean log p(x) and, for each K of the 2-D study, the mean error
    (estimate - exact) of prior Monte Carlo and of importance sampling; for each latent size of the
    sweep, the gap (estimate - reference) of both estimators at each fixed K, the active units and
    the validation ELBO. Runs must share the K values and latent sizes; a KeyError names what differs.
    """
    rows: dict[str, list[float]] = {"2-D exact mean log p(x)": []}
    for run in runs:
        rows["2-D exact mean log p(x)"].append(run["exact_mean"])
        for name, label in (("prior", "prior MC"), ("importance", "IS")):
            for point in run["curve"][name]:
                rows.setdefault(f"2-D {label} error, K={point['K']:g}", []).append(point["error"]["mean"])
        for row in run["sweep"]:
            d = row["latent_dim"]
            for name, label in (("prior", "prior MC"), ("importance", "IS")):
                for k, v in row[name].items():
                    rows.setdefault(f"latent {d}: {label} gap, K={int(k):g}", []).append(v["gap"]["mean"])
            rows.setdefault(f"latent {d}: active units", []).append(row["active_units"])
            rows.setdefault(f"latent {d}: val ELBO", []).append(row["val_elbo"])
    short = [name for name, values in rows.items() if len(values) != len(runs)]
    if short:
        raise KeyError(short[0])  # the runs differ in K values or latent sizes
    return {
        "train_seeds": [run.get("train_seed", 0) for run in runs],
        "epochs": sorted({run["epochs"] for run in runs}),
        "images": sorted({run["images"] for run in runs}),
        "figures": {name: mean_sd(values) for name, values in rows.items()},
    }


def write_seed_table(summary: dict[str, Any], path: Path) -> None:
    """summary.md: one line per figure, mean ± sd over training seeds and each seed's value."""
    seeds = summary["train_seeds"]
    lines = [
        f"Over training seeds {', '.join(map(str, seeds))} (mean ± sd over seeds; nats unless counted):",
        "",
        "| figure | mean ± sd | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---:|" + "---:|" * len(seeds),
    ]
    for name, f in summary["figures"].items():
        sd = "" if f["sd"] is None else f" ± {f['sd']:.2f}"
        lines.append(
            f"| {name} | {f['mean']:.2f}{sd} | " + " | ".join(f"{v:.2f}" for v in f["values"]) + " |"
        )
    path.write_text("\n".join(lines) + "\n")
