"""The tables (results.md) and the figure (estimators.png) of the log p(x) estimators against their cost."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import mean_sd  # noqa: E402

COLORS = {"elbo": "C7", "importance": "C0", "ais": "C3", "bdmc_lower": "C2", "bdmc_upper": "C1"}
NAMES = {
    "elbo": "ELBO (1 sample)",
    "importance": "importance sampling, K",
    "ais": "AIS, T",
    "bdmc_lower": "BDMC lower bound (forward AIS), T",
    "bdmc_upper": "BDMC upper bound (reverse AIS), T",
}


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _setting(p: dict[str, Any]) -> str:
    return f"T = {p['T']}, {p['chains']} chains" if "T" in p else f"K = {p['K']}"


def write_tables(results: dict[str, Any], path: Path) -> None:
    """Per model: the test-image table, then the simulated-data table (sandwich and estimators in it)."""
    s = results["settings"]
    lines = [
        "# log p(x) estimators against cost",
        "",
        f"`{results['command']}`; torch {results['torch']}, commit {results['commit']}, {results['threads']} "
        f"thread(s) on {results['cpu']}; {results['total_seconds'] / 60:.1f} min in all. N = {s['num_datapoints']} "
        f"datapoints; HMC with L = {s['leapfrog_steps']} leapfrog steps. Decoder evaluations: "
        f"{results['decoder_evals_counted']}. Seconds: wall time for all N datapoints (BDMC: both directions "
        "together). SE: standard error across the N datapoints; MC SE: Monte Carlo standard error of the "
        "mean, sqrt(sum_n se_n^2) / N from each datapoint's own.",
    ]
    for key, m in results["models"].items():
        pts = m["points"]
        lines += ["", f"## {results['labels'][key]}", "", f"`{m['checkpoint']}`", "", "Test images:", ""]
        lines += [
            "| estimator | setting | decoder evals / datapoint | seconds | mean log p(x) | SE | MC SE | max Pareto k |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for p in (p for p in pts if p["data"] == "test"):
            lines.append(
                f"| {p['method']} | {_setting(p)} | {p['decoder_evals']:,} | {p['seconds']:.1f} | "
                f"{_f(p['mean_log_px'])} | {_f(p['stderr'])} | {_f(p['mc_stderr_of_mean'], 3)} | "
                f"{_f(p['max_pareto_k'])} |"
            )
        d = m["paired"]
        diff = d["is_max_k_minus_ais_max_t"]
        lines += [
            "",
            f"Importance sampling at K = {d['K']} minus AIS at T = {d['T']}, paired over the same images: "
            f"{diff['mean']:.3f} ± {diff['stderr']:.3f} nats (SE of the paired differences).",
            "",
            "Simulated data, (z, x) ~ p(z) p(x | z): the BDMC sandwich, and each estimator's place in the "
            "sandwich of the largest T:",
            "",
            "| estimator | setting | decoder evals / datapoint | seconds | mean log p(x) | MC SE | "
            "sandwich width | above lower | below upper | inside |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in (p for p in pts if p["data"] == "simulated"):
            if p["method"].startswith("bdmc"):
                place = f"{_f(p['width'], 3)} | - | - | -"
            else:
                place = (
                    f"- | {_f(p['above_lower'], 3)} | {_f(p['below_upper'], 3)} | {100 * p['inside']:.0f}%"
                )
            lines.append(
                f"| {p['method']} | {_setting(p)} | {p['decoder_evals']:,} | {p['seconds']:.1f} | "
                f"{_f(p['mean_log_px'])} | {_f(p['mc_stderr_of_mean'], 3)} | {place} |"
            )
    path.write_text("\n".join(lines) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    """One row per model: test images (IS, AIS, ELBO) and simulated data (BDMC bounds, IS, ELBO) vs cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4.2 * len(models)), squeeze=False)
    for row, (key, m) in enumerate(models.items()):
        for col, data in enumerate(("test", "simulated")):
            ax = axes[row][col]
            pts = [p for p in m["points"] if p["data"] == data]
            for method in NAMES:
                sel = sorted((p for p in pts if p["method"] == method), key=lambda p: p["decoder_evals"])
                if not sel:
                    continue
                ax.errorbar(
                    [p["decoder_evals"] for p in sel],
                    [p["mean_log_px"] for p in sel],
                    yerr=[p["mc_stderr_of_mean"] or 0.0 for p in sel],
                    marker="o" if method != "elbo" else "s",
                    markersize=4,
                    capsize=3,
                    color=COLORS[method],
                    label=NAMES[method],
                )
                for p in sel:
                    if method != "elbo":
                        tag = p["T"] if "T" in p else p["K"]
                        ax.annotate(str(tag), (p["decoder_evals"], p["mean_log_px"]), fontsize=7,
                                    xytext=(3, 4 if method == "bdmc_upper" else -9), textcoords="offset points",
                                    color=COLORS[method])  # fmt: skip
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("decoder evaluations per datapoint")
            ax.set_ylabel("mean log p(x), nats")
            where = "first test images" if data == "test" else "datapoints simulated from the model"
            n = pts[0]["num_datapoints"] if pts else 0
            ax.set_title(f"{results['labels'][key]}: {n} {where}", fontsize=10)
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "log p(x) estimates against cost (bars: Monte Carlo SE of the mean; labels: K or T)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures of each run (one per pair of training seeds), with mean and sd over runs.

    Per model: importance sampling at the largest K minus AIS at the largest T on the test images
    (paired over images), the BDMC sandwich's width at the largest T, how far importance sampling at
    the largest K lies below that sandwich's lower bound, and AIS at the largest T itself.
    """
    figures: dict[str, dict[str, Any]] = {}
    for key in runs[0]["models"]:
        per: dict[str, list[float]] = {
            "is_minus_ais": [],
            "sandwich_width": [],
            "is_below_lower": [],
            "ais": [],
        }
        for run in runs:
            m = run["models"][key]
            pts = m["points"]
            per["is_minus_ais"].append(m["paired"]["is_max_k_minus_ais_max_t"]["mean"])
            t = max(p["T"] for p in pts if p["method"] == "bdmc_lower")
            k = max(p["K"] for p in pts if p["method"] == "importance")
            lower = next(p for p in pts if p["method"] == "bdmc_lower" and p["T"] == t)
            imp = next(
                p for p in pts if p["data"] == "simulated" and p["method"] == "importance" and p["K"] == k
            )
            ais = next(
                p for p in pts if p["data"] == "test" and p["method"] == "ais" and p["T"] == m["paired"]["T"]
            )
            per["sandwich_width"].append(lower["width"])
            per["is_below_lower"].append(-imp["above_lower"])
            per["ais"].append(ais["mean_log_px"])
        figures[key] = {name: mean_sd(v) for name, v in per.items()}
    return {
        "runs": [
            {"command": r["command"], "checkpoints": {k: m["checkpoint"] for k, m in r["models"].items()}}
            for r in runs
        ],
        "labels": runs[0]["labels"],
        "figures": figures,
    }


def write_seed_table(summary: dict[str, Any], path: Path) -> None:
    """summary.md: one row per model, mean ± sd over the runs of each headline figure."""

    def cell(d: dict[str, Any], digits: int) -> str:
        sd = "" if d["sd"] is None else f" ± {d['sd']:.{digits}f}"
        return f"{d['mean']:.{digits}f}{sd}"

    n = len(summary["runs"])
    lines = [
        f"Over {n} training seed(s) (mean ± sd over seeds; the runs are listed in summary.json):",
        "",
        "| model | IS (largest K) - AIS (largest T), test images | BDMC sandwich width (largest T), simulated "
        "| IS (largest K) below the sandwich's lower bound | AIS (largest T), test images |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, f in summary["figures"].items():
        lines.append(
            f"| {summary['labels'][key]} | {cell(f['is_minus_ais'], 2)} | {cell(f['sandwich_width'], 3)} | "
            f"{cell(f['is_below_lower'], 2)} | {cell(f['ais'], 2)} |"
        )
    path.write_text("\n".join(lines) + "\n")
