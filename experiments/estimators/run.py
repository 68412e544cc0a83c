"""Estimators of log p(x) on the trained MNIST VAE and IWAE against their cost in decoder evaluations and seconds.

For each of two checkpoints (by default the seed-0 VAE, k = 1, and IWAE, k = 50, of
``experiments/mnist``, Burda, Grosse & Salakhutdinov 2016, sec. 5) on the first N binarised
MNIST test images (lvm's fixed test binarisation, the one ``experiments/mnist`` evaluates on):

- the ELBO (Kingma & Welling 2014, one sample) and importance sampling with q(z | x) as the
  proposal at each K (Burda et al. 2016, sec. 5);
- annealed importance sampling (Neal 2001) with HMC transitions at each T, a fixed number of
  chains (Wu et al. 2017, sec. 4);

and on N datapoints simulated from the model, (z, x) ~ p(z) p(x | z):

- the bidirectional Monte Carlo sandwich (Grosse, Ghahramani & Adams 2015, sec. 4) at each T,
  forward AIS a stochastic lower and reverse AIS from the true z a stochastic upper bound;
- the ELBO and importance sampling at each K on the same simulated x, placed in the sandwich.

Every estimate comes from lvm (``lvm.compare_estimators``, ``lvm.estimators.bdmc``); its cost
is ``Estimator.decoder_evaluations``: the z decoded per datapoint, K for importance sampling and
the ELBO, (chains + pilot chains)(1 + (T - 1) L) + 1 for AIS (each AIS evaluation also
back-propagates to z), and for each BDMC direction its own count. Seconds are wall time on this
process's threads (``--threads``, 1 by default). Writes ``results.json`` (every point, the
command, torch version and commit), ``results.md`` (the tables) and ``estimators.png``.

    python experiments/estimators/run.py                     # defaults: about 15 min on one core
    python experiments/estimators/run.py --vae runs/x/best.ckpt --iwae runs/y/best.ckpt --out /tmp/e
    python experiments/estimators/run.py --replot            # tables and figure from results.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from report import plot, summarize_seeds, write_seed_table, write_tables

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import add_summarize_option, fail, write_summary  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = Path("experiments/mnist/results_s2/runs")
MODELS = {
    "vae": ("VAE (k = 1)", RUNS / "vae_k1_seed0.json"),
    "iwae": ("IWAE (k = 50)", RUNS / "iwae_k50_seed0.json"),
}


def int_list(text: str) -> list[int]:
    """'1,10,100' -> [1, 10, 100], each >= 1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1; got {text!r}")
    return values


def checkpoint_path(path: Path) -> Path:
    """A checkpoint, or the one a result JSON of experiments/mnist names (relative to its repository)."""
    if path.suffix != ".json":
        return path
    if not path.is_file():
        fail(f"{path} not found (pass a checkpoint with --vae / --iwae)")
    ckpt = Path(json.loads(path.read_text())["checkpoint"])
    for base in [Path.cwd(), *path.resolve().parents]:
        if (base / ckpt).is_file():
            return base / ckpt
    fail(f"checkpoint {ckpt} named by {path} not found")


def _finite(value: float | None) -> float | None:
    """None for a value that is not a finite number (the MC SE of a single sample), so the JSON stays valid."""
    return value if value is not None and math.isfinite(value) else None


def _point(model: str, data: str, method: str, row: Any, evals: int, **extra: Any) -> dict[str, Any]:
    """One point from an lvm ComparisonRow: mean, SE across datapoints, MC SEs, seconds, cost."""
    mc = row.datapoints.mc_stderr
    return {
        "model": model, "data": data, "method": method, **extra, "decoder_evals": evals,
        "seconds": row.seconds, "mean_log_px": row.mean_log_px, "stderr": row.stderr,
        "mean_mc_stderr": _finite(row.mean_mc_stderr),
        "mc_stderr_of_mean": None if mc is None else _finite(float(mc.double().square().sum().sqrt() / len(mc))),
        "max_pareto_k": row.max_pareto_k, "mean_ess": row.mean_ess, "num_datapoints": row.num_datapoints,
    }  # fmt: skip


def _paired(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean of a - b over the same datapoints and its standard error across them."""
    d = (a - b).double()
    return {"mean": float(d.mean()), "stderr": float(d.std() / math.sqrt(d.numel()))}


def evaluate_model(key: str, ckpt: Path, x: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Every point of one model: IS and AIS on the test images, BDMC with IS inside it on simulated data."""
    import lvm
    from lvm.estimators.bdmc import bdmc
    from lvm.evaluate import load_vae

    vae, _ = load_vae(ckpt)
    model = vae.model.eval()
    n, index = x.shape[0], torch.arange(x.shape[0])
    ais = {"name": "ais", "leapfrog_steps": args.leapfrog_steps}
    points, per_datapoint = [], {}

    def run(data: str, xs: torch.Tensor, spec: Any, k: int, method: str, seed: int, **extra: Any) -> None:
        extra = {"K": k, **extra}
        t0 = time.perf_counter()
        (row,) = lvm.compare_estimators(
            model, xs, [spec], [k], index=index, seed=seed, batch_size=args.batch_size
        )
        evals = lvm.create_estimator(spec, num_samples=k).decoder_evaluations(model)
        points.append(_point(key, data, method, row, evals, **extra))
        per_datapoint[(data, method, k, extra.get("T"))] = row.datapoints.log_px
        print(f"  [{key}] {data:9s} {method:10s} K={k:<5d} T={extra.get('T', '-')!s:<5s} "
              f"log p(x) {row.mean_log_px:9.3f}  evals {evals:>8d}  {row.seconds:7.1f} s "
              f"({time.perf_counter() - t0:.1f} s with checks)", flush=True)  # fmt: skip

    print(f"[{key}] {ckpt}: test images", flush=True)
    run("test", x, "elbo", 1, "elbo", args.seed)
    for k in args.ks:
        run("test", x, "importance", k, "importance", args.seed)
    for t in args.ais_steps:
        run("test", x, {**ais, "steps": t}, args.chains, "ais", args.seed, T=t, chains=args.chains)

    print(f"[{key}] simulated data: BDMC sandwich", flush=True)
    sandwich = None
    for t in sorted(args.bdmc_steps):
        t0 = time.perf_counter()
        sandwich = bdmc(
            model, n, t, args.chains, args.seed, args.batch_size, leapfrog_steps=args.leapfrog_steps
        )
        seconds = time.perf_counter() - t0
        for side, values, se, evals in (
            ("lower", sandwich.lower, sandwich.lower_stderr, sandwich.lower_decoder_evaluations),
            ("upper", sandwich.upper, sandwich.upper_stderr, sandwich.upper_decoder_evaluations),
        ):
            v = values.double()
            points.append({
                "model": key, "data": "simulated", "method": f"bdmc_{side}", "T": t, "chains": args.chains,
                "decoder_evals": evals, "seconds": seconds, "seconds_note": "both directions together",
                "mean_log_px": float(v.mean()), "stderr": float(v.std() / math.sqrt(n)),
                "mean_mc_stderr": float(se.double().mean()),
                "mc_stderr_of_mean": float(se.double().square().sum().sqrt() / n),
                "width": float(sandwich.width.double().mean()), "num_datapoints": n,
            })  # fmt: skip
        print(f"  [{key}] simulated BDMC       T={t:<5d} lower {sandwich.lower.double().mean():9.3f} "
              f"upper {sandwich.upper.double().mean():9.3f}  width {sandwich.width.double().mean():.3f}  "
              f"{seconds:.1f} s", flush=True)  # fmt: skip
    assert sandwich is not None
    xs = sandwich.x
    run("simulated", xs, "elbo", 1, "elbo", args.seed + 1)
    for k in args.ks:
        run("simulated", xs, "importance", k, "importance", args.seed + 1)
    for p in points:  # where each estimate on the simulated data sits in the tightest sandwich
        if p["data"] == "simulated" and not p["method"].startswith("bdmc"):
            v = per_datapoint[("simulated", p["method"], p["K"], None)]
            inside = (v >= sandwich.lower) & (v <= sandwich.upper)
            p.update(above_lower=float((v - sandwich.lower).double().mean()),
                     below_upper=float((sandwich.upper - v).double().mean()),
                     inside=float(inside.double().mean()), sandwich_T=sandwich.steps)  # fmt: skip
    best_is = per_datapoint[("test", "importance", max(args.ks), None)]
    best_ais = per_datapoint[("test", "ais", args.chains, max(args.ais_steps))]
    paired = {
        "is_max_k_minus_ais_max_t": _paired(best_is, best_ais),
        "K": max(args.ks),
        "T": max(args.ais_steps),
    }
    return {"checkpoint": str(ckpt), "points": points, "paired": paired}


def git_commit() -> str:
    """HEAD of the repository, with '+dirty' when tracked files differ from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return head + ("+dirty" if dirty.stdout.strip() else "") if head else "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/estimators/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for key, (label, default) in MODELS.items():
        p.add_argument(f"--{key}", type=Path, default=default,
                       help=f"{label}: a checkpoint, or a result JSON of experiments/mnist whose 'checkpoint' "
                       f"is used (default {default})")  # fmt: skip
    p.add_argument("--num-datapoints", type=int, default=100,
                   help="N: the first N test images, and N simulated datapoints (default 100)")  # fmt: skip
    p.add_argument("--ks", type=int_list, default=[1, 10, 100, 1000, 5000],
                   help="K of importance sampling, on test and simulated data (default 1,10,100,1000,5000)")  # fmt: skip
    p.add_argument("--ais-steps", type=int_list, default=[10, 100, 1000],
                   help="T of AIS on the test images (default 10,100,1000)")  # fmt: skip
    p.add_argument("--bdmc-steps", type=int_list, default=[10, 100, 1000],
                   help="T of the BDMC sandwich on simulated data (default 10,100,1000)")  # fmt: skip
    p.add_argument("--chains", type=int, default=8, help="AIS chains per datapoint and direction (default 8)")
    p.add_argument(
        "--leapfrog-steps", type=int, default=10, help="L, leapfrog steps per HMC transition (default 10)"
    )
    p.add_argument("--batch-size", type=int, default=100, help="datapoints per estimator call (default 100)")
    p.add_argument("--seed", type=int, default=0,
                   help="evaluation and simulation seed; IS and the ELBO on simulated data use seed + 1 (default 0)")  # fmt: skip
    p.add_argument(
        "--data-dir", default=None, help="data root with MNIST/raw (default $LVM_DATA_DIR or ./data)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=HERE, help=f"output folder (default {HERE.relative_to(ROOT)})")
    p.add_argument(
        "--replot", action="store_true", help="only rewrite results.md and the figure from results.json"
    )
    add_summarize_option(p, "each model's headline figures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if args.summarize:
        command = "python experiments/estimators/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_summary(args.summarize, out, summarize_seeds, write_seed_table, command)
        return 0
    if args.replot:
        results = json.loads((out / "results.json").read_text())
        write_tables(results, out / "results.md")
        plot(results, out / "estimators.png")
        return 0
    if args.num_datapoints < 1 or args.chains < 1 or args.leapfrog_steps < 1 or args.threads < 1:
        fail("--num-datapoints, --chains, --leapfrog-steps and --threads must be >= 1")
    ckpts = {}
    for key in MODELS:
        ckpts[key] = checkpoint_path(getattr(args, key))
        if not ckpts[key].is_file():
            fail(f"--{key} checkpoint {ckpts[key]} not found")
    torch.set_num_threads(args.threads)
    from lvm.data import MNISTDataModule
    from lvm.estimators.ais import AnnealedImportanceSampling

    dm = MNISTDataModule(data_dir=args.data_dir, binarize="dynamic")
    dm.prepare_data()
    dm.setup("test")
    x = dm.split("test").x[: args.num_datapoints]
    pilot = AnnealedImportanceSampling().pilot_chains  # every AIS run here uses the default
    t0 = time.perf_counter()
    models = {key: evaluate_model(key, ckpt, x, args) for key, ckpt in ckpts.items()}
    results = {
        "command": "python experiments/estimators/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "labels": {key: label for key, (label, _) in MODELS.items()},
        "decoder_evals_counted": f"z decoded per datapoint (Estimator.decoder_evaluations): K for importance "
        f"sampling and the ELBO; (chains + {pilot} pilot chains)(1 + (T - 1) L) + 1 for AIS and forward BDMC, "
        f"each with a backward pass to z; (chains + {pilot})(1 + (T - 1) L) for reverse BDMC",
        "torch": torch.__version__,
        "commit": git_commit(),
        "cpu": cpu_name(),
        "threads": args.threads,
        "total_seconds": time.perf_counter() - t0,
        "models": models,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_tables(results, out / "results.md")
    plot(results, out / "estimators.png")
    print(
        f"total {results['total_seconds'] / 60:.1f} min; wrote {out}/results.json, results.md, estimators.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
