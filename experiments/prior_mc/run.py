"""Prior Monte Carlo vs importance sampling of log p(x), against exact quadrature in 2-D and
as the latent size grows.

1. Trains a 2-D latent VAE (decoder 2-128-128-784, ELU, Bernoulli from logits) on statically
   binarised MNIST from ``vae2d.yaml``, computes the exact log p(x) of the first ``--images`` test images
   by midpoint quadrature on two grids, and runs lvm's ``prior`` and ``importance`` estimators for
   K = 1 ... 10^5 (estimate - exact, mean +/- s.e. over images; ESS from the estimators).
2. Trains the same model with latent size 5, 10, 20 and compares both estimators at fixed K against
   a reference: the exact value in 2-D, importance sampling with ``--ref-k`` samples (another seed) above.

Writes results.json, results.md, prior_mc_2d.png and prior_mc_dims.png into ``--out``; ``--replot``
redraws prior_mc_dims.png and results.md from results.json; ``--summarize`` writes the mean and sd
over training seeds of several runs' headline figures.

    python experiments/prior_mc/run.py            # CPU budget (README: measured time)
    python experiments/prior_mc/run.py --full     # more epochs, larger reference K
    python experiments/prior_mc/run.py --train-seed 1 --out /tmp/s1   # another training seed
    python experiments/prior_mc/run.py --summarize results/results.json /tmp/s1/results.json --out /tmp/sum
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
from tqdm import tqdm

import lvm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import add_summarize_option, fail, write_summary  # noqa: E402
from quadrature import Grid, grid_log_px, log_lik_matrix  # noqa: E402
from seeds import summarize_seeds, write_seed_table  # noqa: E402
from shared_prior import shared_prior_mc  # noqa: E402

HERE = Path(__file__).resolve().parent


class Clock:
    """Wall and CPU seconds (all threads) of named stages."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self._t0 = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), r.ru_utime + r.ru_stime

    def lap(self, name: str) -> None:
        t = self._now()
        prev = self.stages.get(name, {"wall_s": 0.0, "cpu_s": 0.0})
        self.stages[name] = {
            "wall_s": round(prev["wall_s"] + t[0] - self._t0[0], 1),
            "cpu_s": round(prev["cpu_s"] + t[1] - self._t0[1], 1),
        }
        self._t0 = t

    def total(self) -> dict[str, float]:
        return {k: round(sum(s[k] for s in self.stages.values()), 1) for k in ("wall_s", "cpu_s")}


# -- models -----------------------------------------------------------------------------------
def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def train(
    cfg: dict[str, Any],
    latent_dim: int,
    epochs: int,
    data_dir: str | None,
    cache: Path | None,
    progress: bool,
) -> tuple[lvm.VAE, L.LightningDataModule, float]:
    """Fit the config's VAE with ``latent_dim`` for ``epochs``; returns it, its data and the val ELBO."""
    data = cfg["data"]
    dm = _class(data["class_path"])(data_dir=data_dir, **data.get("init_args", {}))
    L.seed_everything(cfg.get("seed_everything", 0), verbose=False)
    model = lvm.VAE(data_shape=dm.data_shape, **{**cfg["model"], "latent_dim": latent_dim})
    trainer_args = {**cfg["trainer"], "max_epochs": epochs, "enable_progress_bar": progress}
    trainer_args.pop("default_root_dir", None)
    trainer = L.Trainer(**trainer_args, default_root_dir=str(cache.parent) if cache else None)
    if cache is not None and cache.is_file():
        model.load_state_dict(torch.load(cache))
        print(f"latent {latent_dim}: reusing {cache}", flush=True)
    else:
        trainer.fit(model, dm)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), cache)
    val = trainer.validate(model, dm, verbose=False)[0]
    model.eval()
    return model, dm, float(val["val/elbo"])


def active_units(vae: lvm.VAE, x: torch.Tensor) -> int:
    """Latent dimensions whose posterior mean varies over the data, Cov_x(E_q[z_u]) > 0.01 (Burda et al. 2016)."""
    with torch.no_grad():
        return int((vae.model.posterior(x).mean.var(0) > 1e-2).sum())


# -- estimators ----------------------------------------------------------------------------------
def run_estimator(model: lvm.LatentVariableModel, x: torch.Tensor, name: str, k: int, seed: int) -> dict:
    """lvm's estimator ``name`` with K = k on x (B, D): per-image log p-hat, ESS and Var[log w]."""
    est = lvm.create_estimator({"name": name, "num_samples": k})
    out = est.estimate(model, x, index=torch.arange(x.shape[0]), seed=seed)
    return {
        "log_px": out.log_px.double().numpy(),
        "ess": out.ess.double().numpy(),
        "log_weight_var": out.log_weight_var.double().numpy(),
    }


def summarise(err: np.ndarray) -> dict[str, float]:
    """Mean, s.e., median of per-image errors and the share within 1 nat."""
    return {
        "mean": float(err.mean()),
        "se": float(err.std(ddof=1) / math.sqrt(len(err))),
        "median": float(np.median(err)),
        "within_1_nat": float((np.abs(err) < 1).mean()),
    }


def _se(row: dict) -> float:
    """Standard error of a prior-curve row's mean error: the spread of its repeats where it has them.

    The shared-draw prior MC uses one set of draws for every image, so the images' errors are
    dependent and their spread across images understates the uncertainty of the mean; the
    independent repeats give sd(repeat means) / sqrt(R) instead. Rows without repeats
    (importance sampling, noise independent per image) use the s.e. across images.
    """
    reps = row.get("repeat_means")
    if reps and len(reps) > 1:
        return float(np.std(reps, ddof=1) / math.sqrt(len(reps)))
    return row["error"]["se"]


# -- figures ---------------------------------------------------------------------------------------
def _log_joint(
    model: lvm.LatentVariableModel, x0: torch.Tensor, z: torch.Tensor, chunk: int = 8192
) -> torch.Tensor:
    """log p(x0 | z) + log N(z | 0, I) up to a constant, (N,) float64, in chunks of z (N, 2)."""
    parts = [log_lik_matrix(model, x0[None], z[i : i + chunk])[0] for i in range(0, len(z), chunk)]
    return torch.cat(parts) - 0.5 * z.double().square().sum(-1)


def posterior_panel(
    ax: Any, model: lvm.LatentVariableModel, x0: torch.Tensor, title: str, zoom: bool = False
) -> None:
    """The exact posterior of one image on a grid, q(z | x), and where 1000 prior draws land.

    ``zoom``: show a window around q and the posterior's mode instead of [-4, 4]^2.
    """
    q = model.posterior(x0[None])
    mu, sd = q.mean[0].detach(), q.stddev[0].detach()
    g = Grid(lim=4.0, n=300)
    z = g.points(dtype=torch.float32)
    lj = _log_joint(model, x0, z)
    lim = (-4.0, 4.0, -4.0, 4.0)
    if zoom:  # re-grid on a window holding q's 3-s.d. ellipse and the posterior's mode
        mode = z[lj.argmax()]
        lo = torch.minimum(mode, mu - 3 * sd) - 0.4
        hi = torch.maximum(mode, mu + 3 * sd) + 0.4
        c, half = (lo + hi) / 2, float((hi - lo).max()) / 2
        z = Grid(lim=half, n=300).points(dtype=torch.float32) + c
        lim = (float(c[0]) - half, float(c[0]) + half, float(c[1]) - half, float(c[1]) + half)
    n = math.isqrt(len(z))
    post = torch.softmax(_log_joint(model, x0, z), 0).reshape(n, n).T.numpy()  # [y, x]
    ax.contourf(
        z[::n, 0].numpy(),
        z[:n, 1].numpy(),
        post / post.max(),
        levels=[0.01, 0.1, 0.3, 0.6, 1.0],
        cmap="Blues",
    )
    prior_z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    hits = int((_log_joint(model, x0, prior_z) > lj.max() + math.log(0.01)).sum())
    ax.scatter(
        prior_z[:, 0],
        prior_z[:, 1],
        s=2 if not zoom else 6,
        color="C3",
        alpha=0.5,
        label=f"1000 draws from p(z); {hits} where\np(z | x) > 1% of its max",
    )
    t = np.linspace(0, 2 * np.pi, 100)
    ax.plot(
        mu[0] + 3 * sd[0] * np.cos(t),
        mu[1] + 3 * sd[1] * np.sin(t),
        color="k",
        lw=1.2,
        label="q(z | x), 3 s.d.",
    )
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[2], lim[3])
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best" if zoom else "lower left")
    inset = ax.inset_axes([0.01, 0.72, 0.27, 0.27])
    inset.imshow(x0.reshape(28, 28).numpy(), cmap="gray_r")
    inset.set_xticks([])
    inset.set_yticks([])


def plot_2d(
    res: dict,
    model: lvm.LatentVariableModel,
    x: torch.Tensor,
    panels: list[tuple[int, str, bool]],
    path: Path,
) -> None:
    """Error and ESS against K, then the exact posterior of the images in ``panels`` (index, title, zoom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 + len(panels), figsize=(4.3 * (2 + len(panels)), 4.6), dpi=100)
    ax = axes[0]
    labels = {"prior": "prior MC", "importance": "importance"}
    for name, color in (("prior", "C3"), ("importance", "C0")):
        rows = res["curve"][name]
        ks = [r["K"] for r in rows]
        ax.errorbar(
            ks,
            [r["error"]["mean"] for r in rows],
            yerr=[_se(r) for r in rows],
            marker="o",
            capsize=3,
            color=color,
            label=f"{labels[name]} (mean $\\pm$ s.e.)",
        )
        ax.plot(
            ks, [r["error"]["median"] for r in rows], ls=":", color=color, label=f"{labels[name]} (median)"
        )
    ax.axhspan(-1, 1, color="0.9", zorder=0, label="within 1 nat")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("K (samples per image)")
    ax.set_ylabel("estimate $-$ exact log p(x)  (nats)")
    ax.set_title(f"2-D latent, {res['images']} test images")
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[1]
    for name, color in (("prior", "C3"), ("importance", "C0")):
        rows = res["curve"][name]
        ax.plot([r["K"] for r in rows], [r["ess_median"] for r in rows], marker="o", color=color, label=name)
    ks = [r["K"] for r in res["curve"]["prior"]]
    ax.plot(ks, ks, ls="--", color="0.5", lw=0.8, label="ESS = K")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("effective sample size (median over images)")
    ax.set_title("ESS from the estimators' diagnostics")
    ax.legend(fontsize=7)

    for ax, (i, title, zoom) in zip(axes[2:], panels):
        posterior_panel(ax, model, x[i], f"test image {i}, {title}", zoom)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_dims(res: dict, path: Path) -> None:
    """Gap to the reference and ESS against the latent size; one colour shade and marker per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["sweep"]
    dims = np.array([r["latent_dim"] for r in rows], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100)
    shades = {"prior": ("#f4a582", "#b2182b"), "importance": ("#92c5de", "#2166ac")}
    markers, lines = ("o", "s", "^", "D"), ("--", "-", "-.", ":")
    n_k = len(res["sweep_ks"])
    for j, (name, colors) in enumerate(shades.items()):
        for i, k in enumerate(res["sweep_ks"]):
            color = (
                colors[min(i, 1)]
                if n_k <= 2
                else plt.get_cmap("Reds" if j == 0 else "Blues")(0.4 + 0.6 * i / n_k)
            )
            style = {
                "color": color,
                "marker": markers[i % 4],
                "ls": lines[i % 4],
                "label": f"{name}, K = {k:,}",
            }
            x = dims + (0.12 * (i - (n_k - 1) / 2) + 0.05 * (2 * j - 1))  # apart, so no bar hides another
            gap = [r[name][str(k)]["gap"] for r in rows]
            axes[0].errorbar(x, [-g["mean"] for g in gap], yerr=[g["se"] for g in gap], capsize=3, **style)
            axes[1].plot(x, [r[name][str(k)]["ess_median"] for r in rows], **style)
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_ylabel("reference $-$ estimate  (nats, mean $\\pm$ s.e.)")
    axes[0].set_title(f"underestimate of log p(x), {res['sweep_images']} test images")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("ESS (median over images)")
    axes[1].set_title("effective sample size")
    for ax in axes:
        ax.set_xlabel("latent dimension")
        ax.set_xticks(dims)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2 * n_k, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)


# -- tables --------------------------------------------------------------------------------------
def tables(res: dict) -> str:
    lines = [
        f"Exact log p(x) by quadrature ({res['grid_fine']}), mean over the {res['images']} images: "
        f"{res['exact_mean']:.2f} nats. Coarser grid ({res['grid_coarse']}) differs by at most "
        f"{res['grid_max_abs_diff']:.2e} nats.",
        "",
        "Prior MC s.e.: the spread of the repeats (their draws are shared across images, so the s.e. "
        "across images would be too small).",
        "",
        "| K | prior: mean error ± s.e. | prior: median | prior: within 1 nat | prior: median ESS "
        "| IS: mean error ± s.e. | IS: median | IS: within 1 nat | IS: median ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    imp = {r["K"]: r for r in res["curve"]["importance"]}
    for r in res["curve"]["prior"]:
        i = imp.get(r["K"])
        is_cols = (
            f"{i['error']['mean']:+.2f} ± {i['error']['se']:.2f} | {i['error']['median']:+.3f} | "
            f"{100 * i['error']['within_1_nat']:.0f}% | {i['ess_median']:.3g}"
            if i
            else "- | - | - | -"
        )
        e = r["error"]
        lines.append(
            f"| {r['K']:g} | {e['mean']:+.2f} ± {_se(r):.2f} | {e['median']:+.2f} | "
            f"{100 * e['within_1_nat']:.0f}% | {r['ess_median']:.3g} | {is_cols} |"
        )
    w = res["importance_worst"]
    lines += [
        "",
        f"Prior samples needed for the mean error to be within 1 nat: {res['prior_k_within_1_nat']}",
        "",
        f"Importance sampling at the largest K: {w['over_1_nat']} of {res['images']} images more than 1 nat "
        f"below the exact value; worst: image {w['image']}, {w['error']:+.2f} nats.",
        "",
        f"Check, first {res['sweep_images']} images: lvm's `prior` estimator (independent draws per image) vs "
        f"the shared draws (mean of {res['repeats']} repeats), error vs exact, mean ± s.e.:",
        "",
        "| K | lvm prior | shared draws |",
        "|---|---|---|",
    ]
    for c in res["crosscheck"]:
        a, b = c["lvm_prior"], c["shared_draws"]
        lines.append(f"| {c['K']:g} | {a['mean']:+.2f} ± {a['se']:.2f} | {b['mean']:+.2f} ± {b['se']:.2f} |")
    lines += [
        "",
        f"Latent-size sweep, first {res['sweep_images']} test images: estimate - reference (nats, mean ± s.e.)",
        "",
        "| latent dim | active units | median KL(q ‖ p) | val ELBO | reference log p(x) | "
        + " | ".join(f"{n} K={k:g}" for n in ("prior", "IS") for k in res["sweep_ks"])
        + " |",
        "|---" * (5 + 2 * len(res["sweep_ks"])) + "|",
    ]
    for r in res["sweep"]:
        gaps = [
            f"{r[n][str(k)]['gap']['mean']:+.2f} ± {r[n][str(k)]['gap']['se']:.2f}"
            for n in ("prior", "importance")
            for k in res["sweep_ks"]
        ]
        lines.append(
            f"| {r['latent_dim']} | {r['active_units']} | {r['kl_median']:.1f} | {r['val_elbo']:.2f} | "
            f"{r['reference_mean']:.2f} ({r['reference']}) | " + " | ".join(gaps) + " |"
        )
    lines += [
        "",
        "Diagnostics from the estimators: median ESS over images, and mean Var[log w]:",
        "",
        "| latent dim | "
        + " | ".join(f"{n} K={k:g}: ESS" for n in ("prior", "IS") for k in res["sweep_ks"])
        + " | prior: Var[log w] | IS: Var[log w] |",
        "|---" * (3 + 2 * len(res["sweep_ks"])) + "|",
    ]
    k_last = str(res["sweep_ks"][-1])
    for r in res["sweep"]:
        ess = [f"{r[n][str(k)]['ess_median']:.3g}" for n in ("prior", "importance") for k in res["sweep_ks"]]
        lines.append(
            f"| {r['latent_dim']} | "
            + " | ".join(ess)
            + f" | {r['prior'][k_last]['log_weight_var_mean']:.3g}"
            f" | {r['importance'][k_last]['log_weight_var_mean']:.3g} |"
        )
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------------------------
def _ints(s: str) -> list[int]:
    return [int(float(v)) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", default=str(HERE / "vae2d.yaml"), help="model/data/trainer YAML (lvm fit format)"
    )
    p.add_argument("--out", default=str(HERE / "results"), help="folder for results.json/.md and PNGs")
    p.add_argument(
        "--data-dir", default=None, help="data root with binarized_mnist/ (default $LVM_DATA_DIR or ./data)"
    )
    p.add_argument("--images", type=int, default=100, help="first N test images")
    p.add_argument("--ks", default="1,10,100,1000,10000,100000", help="K values of the 2-D study")
    p.add_argument(
        "--is-max-k",
        type=int,
        default=None,
        help="largest K of importance sampling in the 2-D study (default: the largest of --ks)",
    )
    p.add_argument("--dims", default="2,5,10,20", help="latent sizes of the sweep")
    p.add_argument("--sweep-ks", default="1000,10000", help="fixed K values of the sweep")
    p.add_argument(
        "--sweep-images", type=int, default=None, help="first N of the images in the sweep (default all)"
    )
    p.add_argument(
        "--ref-k",
        type=int,
        default=None,
        help="importance samples of the sweep's reference (default 2*10^4; 10^5 with --full)",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model (default: config)")
    p.add_argument("--grids", default="5:400,6:800", help="two quadrature grids lim:n (coarse, fine)")
    p.add_argument("--seed", type=int, default=0, help="estimator seed (the sweep reference uses seed + 1)")
    p.add_argument(
        "--train-seed",
        type=int,
        default=None,
        help="seed of the models' training (initialisation, batch order; default: the config's seed_everything)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="repeats of the shared-draw prior MC (default 5)"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)"
    )
    p.add_argument("--reuse", action="store_true", help="reuse trained weights cached under runs/prior_mc/")
    p.add_argument(
        "--full",
        action="store_true",
        help="full budget: 30 epochs per model, 20 repeats of the "
        "shared-draw prior MC, sweep reference K = 10^5",
    )
    p.add_argument(
        "--replot",
        action="store_true",
        help="only redraw prior_mc_dims.png and results.md from --out's results.json (prior_mc_2d.png "
        "needs the trained 2-D model: rerun without --replot)",
    )
    add_summarize_option(p, "the headline figures")
    args = p.parse_args(argv)
    if args.summarize:
        command = "python experiments/prior_mc/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_summary(args.summarize, Path(args.out), summarize_seeds, write_seed_table, command)
        return 0
    if args.replot:
        saved = Path(args.out) / "results.json"
        if not saved.is_file():
            fail(f"--replot needs {saved}; run without --replot first (or pass --out)")
        res = json.loads(saved.read_text())
        plot_dims(res, Path(args.out) / "prior_mc_dims.png")
        (Path(args.out) / "results.md").write_text(tables(res))
        return 0

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.train_seed is not None:
        cfg["seed_everything"] = args.train_seed
    train_seed = int(cfg.get("seed_everything", 0))
    epochs = args.epochs or (30 if args.full else int(cfg["trainer"]["max_epochs"]))
    ref_k = args.ref_k or (100000 if args.full else 20000)
    ks, sweep_ks, dims = _ints(args.ks), _ints(args.sweep_ks), _ints(args.dims)
    args.is_max_k = args.is_max_k or max(ks)
    args.repeats = args.repeats or (20 if args.full else 5)
    sweep_images = args.sweep_images or args.images
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    progress = sys.stderr.isatty()

    # 1. the 2-D model, exact log p(x), both estimators as K grows ----------------------------------
    models: dict[int, tuple[lvm.VAE, float]] = {}

    def model_for(dim: int) -> tuple[lvm.VAE, float]:
        if dim not in models:
            name = f"latent{dim}_e{epochs}" + (f"_s{train_seed}" if train_seed else "")
            cache = Path("runs/prior_mc") / f"{name}.pt" if args.reuse else None
            vae, dm, elbo = train(cfg, dim, epochs, args.data_dir, cache, progress)
            models[dim] = (vae, elbo)
            model_for.test = dm.test  # type: ignore[attr-defined]
            print(f"latent {dim}: {epochs} epochs, val ELBO {elbo:.2f}", flush=True)
        return models[dim]

    vae2, _ = model_for(2)
    clock.lap("train")
    model2 = vae2.model
    test_all = model_for.test  # type: ignore[attr-defined]
    x = test_all[: args.images]
    grids = [Grid(float(a), int(b)) for a, b in (g.split(":") for g in args.grids.split(","))]
    exact_by_grid = []
    for g in grids:
        with tqdm(total=g.n**2, desc=f"quadrature {g}", unit="pt", unit_scale=True, mininterval=5) as bar:
            exact_by_grid.append(grid_log_px(model2, x, g, progress=bar.update).numpy())
    exact = exact_by_grid[-1]
    grid_diff = np.abs(exact_by_grid[0] - exact_by_grid[1])
    clock.lap("quadrature")

    res: dict[str, Any] = {
        "images": len(x),
        "epochs": epochs,
        "train_seed": train_seed,
        "seed": args.seed,
        "threads": args.threads,
        "repeats": args.repeats,
        "grid_coarse": str(grids[0]),
        "grid_fine": str(grids[1]),
        "grid_max_abs_diff": float(grid_diff.max()),
        "grid_mean_abs_diff": float(grid_diff.mean()),
        "exact_mean": float(exact.mean()),
        "curve": {"prior": [], "importance": []},
    }
    # prior MC: shared draws, R repeats; the error of an image is averaged over the repeats
    reps = []
    with tqdm(
        total=args.repeats * max(ks),
        desc="prior MC (shared draws)",
        unit="draw",
        unit_scale=True,
        mininterval=5,
    ) as bar:
        for r in range(args.repeats):
            reps.append(shared_prior_mc(model2, x, ks, seed=args.seed + 1000 * r, progress=bar.update))
    for k in ks:
        err = np.stack([rep[k]["log_px"].numpy() - exact for rep in reps])  # (R, B)
        ess = np.stack([rep[k]["ess"].numpy() for rep in reps])
        res["curve"]["prior"].append(
            {
                "K": k,
                "error": summarise(err.mean(0)),
                "repeat_means": err.mean(1).tolist(),
                "ess_median": float(np.median(ess)),
                "log_weight_var_mean": float(
                    np.mean([rep[k]["log_weight_var"].mean().item() for rep in reps])
                ),
            }
        )
    within = [r["K"] for r in res["curve"]["prior"] if abs(r["error"]["mean"]) < 1]
    res["prior_k_within_1_nat"] = within[0] if within else f"> {ks[-1]}"
    clock.lap("prior_mc_2d")

    curve_raw: dict[tuple[str, int], dict] = {}
    for k in tqdm([k for k in ks if k <= args.is_max_k], desc="importance sampling (2-D)", mininterval=5):
        r = run_estimator(model2, x, "importance", k, args.seed)
        curve_raw[("importance", k)] = r
        res["curve"]["importance"].append(
            {
                "K": k,
                "error": summarise(r["log_px"] - exact),
                "ess_median": float(np.median(r["ess"])),
                "log_weight_var_mean": float(r["log_weight_var"].mean()),
            }
        )
    clock.lap("importance_2d")

    # 2. the latent-size sweep at fixed K -----------------------------------------------------------
    res.update(
        {"sweep": [], "sweep_ks": sweep_ks, "sweep_images": sweep_images, "ref_k": ref_k, "crosscheck": []}
    )
    xs = x[:sweep_images]
    for dim in dims:
        vae, elbo = model_for(dim)
        clock.lap("train")
        row: dict[str, Any] = {
            "latent_dim": dim,
            "val_elbo": elbo,
            "active_units": active_units(vae, test_all),
        }
        with torch.no_grad():  # nats by which q(z | x) is narrower than / displaced from the prior
            row["kl_median"] = float(vae.model.kl(vae.model.posterior(xs)).median())
        if dim == 2:
            ref, row["reference"] = exact[:sweep_images], "exact"
        else:
            ref = run_estimator(vae.model, xs, "importance", ref_k, args.seed + 1)["log_px"]
            row["reference"] = f"IS K={ref_k:g}"
        row["reference_mean"] = float(ref.mean())
        for name in ("prior", "importance"):
            row[name] = {}
            for k in sweep_ks:
                r = (
                    curve_raw.get((name, k)) if dim == 2 else None
                )  # noise is keyed by image: slicing is exact
                r = (
                    {n: v[:sweep_images] for n, v in r.items()}
                    if r
                    else run_estimator(vae.model, xs, name, k, args.seed)
                )
                if (
                    dim == 2 and name == "prior" and k in ks
                ):  # lvm's estimator vs the shared draws, same images
                    shared = np.stack([rep[k]["log_px"].numpy()[:sweep_images] for rep in reps]).mean(0)
                    res["crosscheck"].append(
                        {
                            "K": k,
                            "lvm_prior": summarise(r["log_px"] - ref),
                            "shared_draws": summarise(shared - ref),
                        }
                    )
                row[name][str(k)] = {
                    "gap": summarise(r["log_px"] - ref),
                    "ess_median": float(np.median(r["ess"])),
                    "log_weight_var_mean": float(r["log_weight_var"].mean()),
                }
        res["sweep"].append(row)
        print(
            json.dumps(
                {
                    "latent_dim": dim,
                    **{
                        n: {k: round(v["gap"]["mean"], 2) for k, v in row[n].items()}
                        for n in ("prior", "importance")
                    },
                }
            ),
            flush=True,
        )
        clock.lap("estimators_sweep")

    is_err = curve_raw[("importance", max(kk for _, kk in curve_raw))]["log_px"] - exact
    worst = int(np.argmin(is_err))
    res["importance_worst"] = {
        "image": worst,
        "error": float(is_err[worst]),
        "over_1_nat": int((is_err < -1).sum()),
    }
    plot_2d(
        res,
        model2,
        x,
        [
            (0, "exact p(z | x) in blue", False),
            (worst, f"worst IS error:\n{is_err[worst]:+.1f} nats at K={args.is_max_k:g}, zoomed", True),
        ],
        out / "prior_mc_2d.png",
    )
    plot_dims(res, out / "prior_mc_dims.png")
    clock.lap("figures")
    res["time"] = {
        "stages": clock.stages,
        "total": clock.total(),
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg()[0],
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    md = tables(res)
    (out / "results.md").write_text(md)
    print(md)
    print(f"time: {json.dumps(res['time'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
