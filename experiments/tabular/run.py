"""A VAE for three observed variables of different types, against the true density.

Data (``vae.yaml``): x1 ~ Gamma(k0 = 2, theta0 = 1), x2 ~ Normal(0, 1), x3 ~ Normal(x2, x1), from
``lvm.data.TabularDataModule``. The VAE has a composite likelihood (Gamma on x1, Gaussians with
decoder-predicted scales on x2, x3). Reports the held-out log-likelihood (importance sampling, K =
``--eval-k``) against the true density (the ceiling) and independent per-column MLE fits (scipy), and
draws the model's marginal and pairwise densities against the truth.

Writes results.json, results.md and tabular_densities.png into ``--out``; with ``--seeds``, one
such folder per training seed (``<out>/seed<S>/``) and ``summary.json`` / ``summary.md`` (mean and
standard deviation over seeds of each row's mean log p(x) and gap to the truth).

    python experiments/tabular/run.py           # CPU budget (README: measured time)
    python experiments/tabular/run.py --full    # 3x the epochs, 50,000 training rows
    python experiments/tabular/run.py --seeds 0 1 2 --out experiments/tabular/results_seeds
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from scipy import stats
from tqdm import tqdm

import lvm
from lvm.data import sample_tabular, tabular_log_density

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import mean_sd  # noqa: E402

HERE = Path(__file__).resolve().parent
COLUMNS = ("x1", "x2", "x3")


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mean_se(v: np.ndarray) -> dict[str, float]:
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(len(v)))}


# -- baselines -------------------------------------------------------------------------------------
def independent_fit(train: np.ndarray) -> dict[str, Any]:
    """MLE of Gamma(x1) (location fixed at 0), Normal(x2), Normal(x3), each column on its own."""
    shape, _, scale = stats.gamma.fit(train[:, 0], floc=0)
    return {
        "x1_gamma_shape": float(shape),
        "x1_gamma_scale": float(scale),
        "x2_mean": float(train[:, 1].mean()),
        "x2_std": float(train[:, 1].std()),
        "x3_mean": float(train[:, 2].mean()),
        "x3_std": float(train[:, 2].std()),
    }


def independent_log_density(x: np.ndarray, fit: dict[str, Any]) -> np.ndarray:
    """log p(x) under the product of the three independent fits, (N,)."""
    return (
        stats.gamma.logpdf(x[:, 0], fit["x1_gamma_shape"], scale=fit["x1_gamma_scale"])
        + stats.norm.logpdf(x[:, 1], fit["x2_mean"], fit["x2_std"])
        + stats.norm.logpdf(x[:, 2], fit["x3_mean"], fit["x3_std"])
    )


# -- the VAE ------------------------------------------------------------------------------------------
def train(
    cfg: dict[str, Any], epochs: int, n_train: int | None, progress: bool, seed: int
) -> tuple[lvm.VAE, Any]:
    """Fit the config's VAE with training seed ``seed`` (initialisation, batch order); the data keep theirs."""
    data = cfg["data"]
    init = dict(data.get("init_args", {}))
    if n_train:
        init["n_train"] = n_train
    dm = _class(data["class_path"])(**init)
    L.seed_everything(seed, verbose=False)
    model = lvm.VAE(data_shape=dm.data_shape, **cfg["model"])
    trainer_args = {**cfg["trainer"], "max_epochs": epochs, "enable_progress_bar": progress}
    L.Trainer(**trainer_args).fit(model, dm)
    model.eval()
    return model, dm


def estimate(
    model: lvm.VAE, x: torch.Tensor, name: str, k: int, seed: int, batch: int = 500
) -> dict[str, np.ndarray]:
    """lvm's estimator ``name`` with K = k, per row (noise keyed by the row's index)."""
    est = lvm.create_estimator({"name": name, "num_samples": k})
    parts: dict[str, list[np.ndarray]] = {"log_px": [], "ess": []}
    for start in tqdm(range(0, len(x), batch), desc=f"{name} K={k}", mininterval=5):
        idx = torch.arange(start, min(start + batch, len(x)))
        out = est.estimate(model.model, x[idx], index=idx, seed=seed)
        parts["log_px"].append(out.log_px.double().numpy())
        if out.ess is not None:
            parts["ess"].append(out.ess.double().numpy())
    return {n: np.concatenate(v) for n, v in parts.items() if v}


# -- figure --------------------------------------------------------------------------------------------
def plot(
    true: np.ndarray, model: np.ndarray, indep: np.ndarray, params: dict, path: Path, kde_n: int = 5000
) -> None:
    """Marginal histograms (top) and pairwise KDE contours (bottom), truth vs VAE samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 7.2), dpi=80)
    k0, theta0, mu0, sigma0 = (params[p] for p in ("k0", "theta0", "mu0", "sigma0"))
    lims = [(0, np.quantile(true[:, 0], 0.995)), (-4, 4), tuple(np.quantile(true[:, 2], [0.003, 0.997]))]
    for j, ax in enumerate(axes[0]):
        bins = np.linspace(*lims[j], 60)
        ax.hist(true[:, j], bins=bins, density=True, color="0.75", label="samples of the truth")
        ax.hist(
            model[:, j], bins=bins, density=True, histtype="step", lw=1.6, color="C3", label="VAE samples"
        )
        ax.hist(
            indep[:, j],
            bins=bins,
            density=True,
            histtype="step",
            lw=1,
            ls="--",
            color="C0",
            label="independent fit",
        )
        grid = np.linspace(*lims[j], 400)
        if j == 0:
            ax.plot(grid, stats.gamma.pdf(grid, k0, scale=theta0), color="k", lw=1, label="true density")
        elif j == 1:
            ax.plot(grid, stats.norm.pdf(grid, mu0, sigma0), color="k", lw=1, label="true density")
        ax.set_xlim(*lims[j])
        ax.set_title(f"marginal of {COLUMNS[j]}")
        ax.set_yscale("log" if j == 2 else "linear")
    axes[0, 0].legend(fontsize=7)
    axes[0, 2].set_title("marginal of x3 (log scale: heavy tails)")

    def kde_panel(
        ax: Any, a: np.ndarray, b: np.ndarray, xlim: tuple, ylim: tuple, title: str, xl: str, yl: str
    ) -> None:
        gx, gy = np.meshgrid(np.linspace(*xlim, 120), np.linspace(*ylim, 120))
        pts = np.vstack([gx.ravel(), gy.ravel()])
        ax.scatter(a[:2000, 0], a[:2000, 1], s=1, color="0.6", alpha=0.5, rasterized=True)
        levels = None
        for data, color in ((a, "k"), (b, "C3")):  # the same density levels for both, set by the truth
            dens = stats.gaussian_kde(data[:kde_n].T)(pts).reshape(gx.shape)
            if levels is None:
                levels = np.unique(dens.max() * np.array([0.05, 0.2, 0.5, 0.8]))
            ax.contour(gx, gy, dens, levels=levels, colors=color, linewidths=1)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title)

    x23 = (-3.5, 3.5), (-7, 7)
    kde_panel(axes[1, 0], true[:, [1, 2]], model[:, [1, 2]], *x23, "x3 ~ N(x2, x1): x2 vs x3", "x2", "x3")
    kde_panel(axes[1, 1], true[:, [0, 2]], model[:, [0, 2]], (0, 6), (-7, 7), "x1 vs x3", "x1", "x3")
    r_true = np.c_[true[:, 0], true[:, 2] - true[:, 1]]
    r_model = np.c_[model[:, 0], model[:, 2] - model[:, 1]]
    kde_panel(
        axes[1, 2], r_true, r_model, (0, 6), (-8, 8), "x1 vs x3 - x2 (s.d. of x3 - x2 is x1)", "x1", "x3 - x2"
    )
    grid = np.linspace(0, 6, 50)
    for s in (-2, 2):
        axes[1, 2].plot(grid, s * grid, color="0.3", lw=0.8, ls=":")
    from matplotlib.lines import Line2D

    axes[1, 0].legend(
        handles=[
            Line2D([], [], color="k", label="truth (KDE; 5, 20, 50, 80% of max)"),
            Line2D([], [], color="C3", label="VAE (KDE; same levels)"),
            Line2D([], [], color="0.6", marker=".", ls="", label="true samples"),
        ],
        fontsize=7,
        loc="upper left",
    )
    axes[1, 2].text(0.2, -7.5, "dotted: $\\pm 2 x_1$", fontsize=7)
    fig.suptitle(
        f"x1 ~ Gamma({k0:g}, {theta0:g}), x2 ~ N({mu0:g}, {sigma0:g}), x3 ~ N(x2, x1); "
        f"{len(model)} draws x ~ p(x | z), z ~ p(z) from the VAE vs as many from the truth",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", default=str(HERE / "vae.yaml"), help="model/data/trainer YAML (lvm fit format)"
    )
    p.add_argument("--out", default=str(HERE / "results"), help="folder for results.json/.md and the PNG")
    p.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: config; 3x with --full)"
    )
    p.add_argument(
        "--n-train", type=int, default=None, help="training rows (default: config; 50,000 with --full)"
    )
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per test row")
    p.add_argument(
        "--samples",
        type=int,
        default=20000,
        help="samples of the VAE, the truth and the independent "
        "fit for the figure (KDE contours use the first 5,000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the estimators and of the model samples")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)"
    )
    p.add_argument("--full", action="store_true", help="full budget: 3x the epochs on 50,000 training rows")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds, one run each into <out>/seed<S>/, then summary.json (default: the config's "
        "seed_everything, into <out>)",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if not args.seeds:
        run(cfg, args, int(cfg.get("seed_everything", 0)), Path(args.out))
        return 0
    results = [run(cfg, args, s, Path(args.out) / f"seed{s}") for s in args.seeds]
    command = "python experiments/tabular/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    summarize(results, args.seeds, Path(args.out), command)
    return 0


def run(cfg: dict[str, Any], args: argparse.Namespace, train_seed: int, out: Path) -> dict[str, Any]:
    """Train with ``train_seed``, evaluate against the truth, write results and the figure into ``out``."""
    epochs = args.epochs or int(cfg["trainer"]["max_epochs"]) * (3 if args.full else 1)
    n_train = args.n_train or (50000 if args.full else None)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), _cpu()
    times: dict[str, dict[str, float]] = {}

    def lap(name: str) -> None:
        nonlocal t0, c0
        times[name] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1)}
        t0, c0 = time.perf_counter(), _cpu()

    vae, dm = train(cfg, epochs, n_train, sys.stderr.isatty(), train_seed)
    lap("train")
    params = {p: getattr(dm, p) for p in ("k0", "theta0", "mu0", "sigma0")}
    x_test = dm.test
    truth = tabular_log_density(x_test.double(), **params).numpy()
    fit = independent_fit(dm.train.double().numpy())
    indep = independent_log_density(x_test.double().numpy(), fit)
    imp = estimate(vae, x_test, "importance", args.eval_k, args.seed)
    elbo = estimate(vae, x_test, "elbo", 100, args.seed)
    lap("evaluate")

    rows = {
        "true density (ceiling)": truth,
        f"VAE, importance sampling K={args.eval_k}": imp["log_px"],
        "VAE, ELBO (100 samples)": elbo["log_px"],
        "independent per-column MLE": indep,
    }
    table = {name: {**mean_se(v), "gap_to_truth": mean_se(v - truth)} for name, v in rows.items()}
    lines = [
        f"Held-out log-likelihood, {len(x_test)} test rows (nats per row; s.e. over rows; "
        "gap = method - truth, paired per row):",
        "",
        "| model | mean log p(x) ± s.e. | gap to truth ± s.e. |",
        "|---|---|---|",
    ]
    for name, r in table.items():
        g = r["gap_to_truth"]
        gap = "0" if name.startswith("true") else f"{g['mean']:+.3f} ± {g['se']:.3f}"
        lines.append(f"| {name} | {r['mean']:.3f} ± {r['se']:.3f} | {gap} |")
    lines += [
        "",
        f"Importance-sampling ESS (K={args.eval_k}): median {np.median(imp['ess']):.0f}, "
        f"5th percentile {np.quantile(imp['ess'], 0.05):.0f}, min {imp['ess'].min():.1f}.",
        "",
        "Independent fit: " + ", ".join(f"{k} = {v:.3f}" for k, v in fit.items()),
    ]

    torch.manual_seed(args.seed)
    samples = vae.model.sample(args.samples, mean=False).double().numpy()
    rng = np.random.default_rng(args.seed)
    indep_samples = np.c_[
        rng.gamma(fit["x1_gamma_shape"], fit["x1_gamma_scale"], args.samples),
        rng.normal(fit["x2_mean"], fit["x2_std"], args.samples),
        rng.normal(fit["x3_mean"], fit["x3_std"], args.samples),
    ]
    true_samples = sample_tabular(args.samples, **params, seed=args.seed + 12345).double().numpy()
    plot(true_samples, samples, indep_samples, params, out / "tabular_densities.png")
    ks = {
        c: float(stats.ks_2samp(true_samples[:, j], samples[:, j]).statistic) for j, c in enumerate(COLUMNS)
    }
    lines += [
        "",
        f"Two-sample Kolmogorov-Smirnov distance, {args.samples} VAE samples vs as many fresh samples of "
        "the truth: " + ", ".join(f"{c} {v:.3f}" for c, v in ks.items()),
    ]
    lap("figure")
    total = {k: round(sum(t[k] for t in times.values()), 1) for k in ("wall_s", "cpu_s")}
    res = {
        "params": params,
        "n_train": len(dm.train),
        "n_test": len(x_test),
        "epochs": epochs,
        "train_seed": train_seed,
        "eval_k": args.eval_k,
        "table": table,
        "independent_fit": fit,
        "ks_distance": ks,
        "ess_median": float(np.median(imp["ess"])),
        "threads": args.threads,
        "time": {
            "stages": times,
            "total": total,
            "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg()[0],
        },
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    print(md)
    print(f"time: {json.dumps(res['time'])}")
    return res


def summarize(results: list[dict[str, Any]], seeds: list[int], out: Path, command: str) -> dict[str, Any]:
    """Mean and sd over training seeds of every row's mean log p(x) and gap; summary.json and .md."""
    rows: dict[str, dict[str, Any]] = {}
    for name in results[0]["table"]:
        per = {
            "log_px": [r["table"][name]["mean"] for r in results],
            "gap_to_truth": [r["table"][name]["gap_to_truth"]["mean"] for r in results],
        }
        rows[name] = {k: mean_sd(v) for k, v in per.items()}
    summary = {
        "command": command,
        "seeds": list(seeds),
        "epochs": results[0]["epochs"],
        "n_train": results[0]["n_train"],
        "n_test": results[0]["n_test"],
        "rows": rows,
        "wall_s": [r["time"]["total"]["wall_s"] for r in results],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def sd(d: dict[str, Any]) -> str:
        return "" if d["sd"] is None else f" ± {d['sd']:.3f}"

    lines = [
        f"Held-out log-likelihood over training seeds {', '.join(map(str, seeds))} (mean ± sd over seeds; "
        f"{summary['n_test']} test rows, {summary['epochs']} epochs):",
        "",
        "| model | mean log p(x) | gap to truth |",
        "|---|---|---|",
    ]
    for name, r in rows.items():
        gap = "0" if name.startswith("true") else f"{r['gap_to_truth']['mean']:+.3f}{sd(r['gap_to_truth'])}"
        lines.append(f"| {name} | {r['log_px']['mean']:.3f}{sd(r['log_px'])} | {gap} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
