"""Training with the prior Monte Carlo estimate of log p(x) against ELBO and IWAE training, over seeds.

The same model (``experiments/prior_mc/vae2d.yaml``: decoder 2-128-128-784 ELU, Bernoulli, statically
binarised MNIST) is trained for the config's epochs with each objective of ``lvm.objectives``:
``prior_mc`` (log (1/K) sum_k p(x | z_k), z_k ~ p(z), K = 128), ``elbo`` (one sample) and ``iwae``
(Burda et al. 2016, eq. 8, k = 128: the same number of decoder evaluations per image as the
prior Monte Carlo objective, so the proposal, p(z) or q(z | x), is the only difference). Test
log p(x) of the first ``--images`` test images is estimated per model by:

- latent size 2: midpoint quadrature (lvm's ``quadrature`` estimator), exact to the grid error it reports;
- latent sizes 10 and 20: annealed importance sampling started from the prior (Neal 2001; lvm's
  ``ais`` with ``start: prior``), valid for every model, and for ELBO / IWAE models also importance
  sampling from q(z | x). A prior-MC model never trains its encoder (the objective does not
  involve q), so its q is the random initial network: importance sampling with it is consistent
  but its weights are so heavy-tailed that a finite-K estimate says nothing; it is not reported.

Writes ``results.json`` (every (latent, objective, seed) and mean +/- sd over seeds), ``results.md``,
``log.txt`` and ``prior_mc_training.png`` into ``--out``.

    python experiments/prior_mc_training/run.py                    # seeds 0 1 2, latents 2 10 20
    python experiments/prior_mc_training/run.py --replot           # table and figure from results.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import lvm

HERE = Path(__file__).resolve().parent
PRIOR_MC = HERE.parent / "prior_mc"
sys.path.insert(0, str(PRIOR_MC))  # prior_mc/run.py imports its helpers by module name
_spec = importlib.util.spec_from_file_location("prior_mc_run", PRIOR_MC / "run.py")
prior_mc_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prior_mc_run)
OBJECTIVES = ("prior_mc", "elbo", "iwae")
COLORS = {"prior_mc": "C3", "elbo": "C0", "iwae": "C2"}


class Tee:
    """Write to the terminal and to a log file."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, s: str) -> None:
        for st in self.streams:
            st.write(s)
            st.flush()

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def estimators_for(latent: int, objective: str, args: argparse.Namespace) -> list[tuple[str, dict, int]]:
    """(label, spec, K) of the estimators of test log p(x) for a model; see the module docstring."""
    if latent == 2:
        return [("quadrature", {"name": "quadrature", "points": args.grid_points, "lim": 6.0}, 1)]
    ais = {"name": "ais", "start": "prior", "steps": args.ais_steps}
    out = [("ais_prior", ais, args.ais_chains)]
    if objective != "prior_mc":
        out.append(("importance", {"name": "importance"}, args.is_k))
    return out


def run_one(cfg: dict, latent: int, objective: str, seed: int, args: argparse.Namespace) -> dict:
    k = {"prior_mc": args.prior_k, "elbo": 1, "iwae": args.iwae_k}[objective]
    run_cfg = {
        **cfg,
        "seed_everything": seed,
        "model": {**cfg["model"], "objective": objective, "num_samples": k},
    }
    run_cfg["trainer"] = {
        **cfg["trainer"],
        **({"limit_train_batches": args.limit_train_batches} if args.limit_train_batches else {}),
    }
    t0 = time.perf_counter()
    vae, dm, val_elbo = prior_mc_run.train(run_cfg, latent, args.epochs, args.data_dir, None, False)
    train_s = time.perf_counter() - t0
    x = dm.test[: args.images]
    row: dict[str, Any] = {
        "latent_dim": latent,
        "objective": objective,
        "num_samples": k,
        "seed": seed,
        "epochs": args.epochs,
        "val_elbo": val_elbo,
        "train_seconds": round(train_s, 1),
        "images": len(x),
    }
    for label, spec, kk in estimators_for(latent, objective, args):
        t0 = time.perf_counter()
        (r,) = lvm.compare_estimators(vae, x, [spec], [kk], seed=args.eval_seed, batch_size=args.images)
        row[label] = {
            "K": kk,
            "mean_log_px": r.mean_log_px,
            "stderr": r.stderr,
            "mean_mc_stderr": r.mean_mc_stderr,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of each (latent, objective, estimator)."""
    out = []
    keys = sorted(
        {(r["latent_dim"], r["objective"]) for r in rows}, key=lambda t: (t[0], OBJECTIVES.index(t[1]))
    )
    for latent, obj in keys:
        rs = [r for r in rows if (r["latent_dim"], r["objective"]) == (latent, obj)]
        if len({r["epochs"] for r in rs}) > 1:
            raise ValueError(f"latent {latent}, {obj}: runs of different epochs {[r['epochs'] for r in rs]}")
        for label in ("quadrature", "ais_prior", "importance"):
            vals = [r[label]["mean_log_px"] for r in rs if label in r]
            if vals:
                out.append(
                    {
                        "latent_dim": latent,
                        "objective": obj,
                        "estimator": label,
                        "seeds": sorted(r["seed"] for r in rs if label in r),
                        "mean": statistics.mean(vals),
                        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                        "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
                        "images": rs[0]["images"],
                        "epochs": rs[0]["epochs"],
                    }
                )
    return out


def table(res: dict) -> str:
    lines = [
        "Test log p(x) (nats) of the first N test images, mean ± sd over the seeds listed.",
        "",
        "| latent | objective | epochs | estimator | test log p(x) | seeds | N | training s per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in res["summary"]:
        sd = f" ± {s['sd']:.2f}" if s["sd"] is not None else " (one seed)"
        seeds = " ".join(str(x) for x in s["seeds"])
        lines.append(
            f"| {s['latent_dim']} | {s['objective']} | {s.get('epochs', res['epochs'])} | {s['estimator']} | "
            f"{s['mean']:.2f}{sd} | {seeds} | "
            f"{s.get('images', res['images'])} | {s['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Test log p(x) against the latent size, one line per training objective (AIS / quadrature)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for j, obj in enumerate(OBJECTIVES):
        pts = [
            s
            for s in res["summary"]
            if s["objective"] == obj and s["estimator"] in ("quadrature", "ais_prior")
        ]
        if pts:
            ax.errorbar(
                [s["latent_dim"] + 0.15 * (j - 1) for s in pts],
                [s["mean"] for s in pts],
                yerr=[s["sd"] or 0 for s in pts],
                marker="o",
                capsize=3,
                color=COLORS[obj],
                label=f"trained with {obj} (K = {res['num_samples'][obj]})",
            )
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("test log p(x) (nats), mean ± sd over seeds")
    epochs = {s["latent_dim"]: s.get("epochs", res["epochs"]) for s in res["summary"]}
    seeds = {d: max(len(s["seeds"]) for s in res["summary"] if s["latent_dim"] == d) for d in epochs}
    ticks = [
        f"{d}\n({epochs[d]} epoch{'s' * (epochs[d] != 1)}, {seeds[d]} seed{'s' * (seeds[d] > 1)})"
        for d in sorted(epochs)
    ]
    ax.set_xticks(sorted(epochs), ticks)
    ax.set_title("2-D: quadrature; larger: AIS from the prior", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=PRIOR_MC / "vae2d.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--latents", type=int, nargs="+", default=[2, 10, 20])
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    p.add_argument("--prior-k", type=int, default=128, help="K of the prior_mc objective")
    p.add_argument("--iwae-k", type=int, default=128, help="k of the IWAE objective")
    p.add_argument("--images", type=int, default=500, help="first N test images")
    p.add_argument("--grid-points", type=int, default=400, help="quadrature points per axis on [-6, 6]")
    p.add_argument("--ais-steps", type=int, default=500, help="AIS annealing steps T")
    p.add_argument("--ais-chains", type=int, default=16, help="AIS chains per image")
    p.add_argument("--is-k", type=int, default=5000, help="importance samples per image (ELBO/IWAE models)")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument(
        "--limit-train-batches", type=int, default=None, help="batches per epoch (smoke runs only)"
    )
    p.add_argument("--data-dir", default=None, help="data root with binarized_mnist/ (default ./data)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--replot", action="store_true", help="only rewrite results.md and the figure")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="with --replot: combine the runs of these output folders' results.json into --out",
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot and args.merge:
        parts = [json.loads((d / "results.json").read_text()) for d in args.merge]
        runs, seen = [], set()
        for r in (r for part in parts for r in part["runs"]):  # a run saved twice counts once
            key = (r["latent_dim"], r["objective"], r["seed"])
            if key not in seen:
                seen.add(key)
                runs.append(r)
        res = {**parts[0], "runs": runs, "summary": summarise(runs), "parts": [str(d) for d in args.merge]}
        res["seeds"] = sorted({r["seed"] for r in runs})
        res["wall_seconds"] = sum(part["wall_seconds"] for part in parts)
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    elif args.replot:
        res = json.loads((args.out / "results.json").read_text())
    else:
        torch.set_num_threads(args.threads)
        cfg = yaml.safe_load(args.config.read_text())
        args.epochs = args.epochs or int(cfg["trainer"]["max_epochs"])
        t0 = time.perf_counter()
        with open(args.out / "log.txt", "w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)):
            print(
                "$ python experiments/prior_mc_training/run.py "
                + " ".join(sys.argv[1:] if argv is None else argv)
            )
            rows = [
                run_one(cfg, latent, obj, seed, args)
                for latent in args.latents
                for obj in args.objectives
                for seed in args.seeds
            ]
            res = {
                "config": str(args.config),
                "epochs": args.epochs,
                "seeds": args.seeds,
                "images": args.images,
                "num_samples": {"prior_mc": args.prior_k, "elbo": 1, "iwae": args.iwae_k},
                "estimators": {
                    "quadrature_points": args.grid_points,
                    "ais_steps": args.ais_steps,
                    "ais_chains": args.ais_chains,
                    "is_k": args.is_k,
                },
                "wall_seconds": round(time.perf_counter() - t0, 1),
                "runs": rows,
                "summary": summarise(rows),
            }
            print(f"wall time {res['wall_seconds']:.0f} s")
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = table(res)
    (args.out / "results.md").write_text(md)
    print(md)
    plot(res, args.out / "prior_mc_training.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
