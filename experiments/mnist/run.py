"""The IWAE paper's one-layer models (VAE, IWAE k = 5, k = 50) over several seeds at a fixed epoch budget.

Burda, Grosse & Salakhutdinov (2016), sec. 5 and Table 1: 784-200-200-50 (tanh), batch 20, Adam
eps 1e-4 and the learning-rate schedule of 3^i epochs at 1e-3 * 10^(-i/7), here truncated to its
first ``--stages`` stages (3: 1 + 3 + 9 = 13 epochs) and the same for every model. Each (variant,
seed) is trained by ``lvm fit`` and its best checkpoint (validation bound) evaluated by
``lvm compare``: importance sampling with K = 5000 and the one-sample ELBO on the full test set.
Writes into ``--out``: ``runs/<variant>_seed<S>.json`` and ``logs/`` per run (a run whose JSON
exists is kept; ``--redo`` reruns it), ``summary.json`` and ``results.md`` (mean +/- sd over
seeds beside Table 1, with the fraction of the paper's 3,280 epochs) and ``learning_curves.png``
(every run). Before training it prints an estimate of the wall time from a measured steps/s.

    python experiments/mnist/run.py                          # 3 stages (13 epochs), seeds 0 1 2
    python experiments/mnist/run.py --static                 # Larochelle & Murray's binarisation
    python experiments/mnist/run.py --full                   # all 8 stages: 3,280 epochs (GPU)
    python experiments/mnist/run.py --variants iwae_k50 --seeds 3   # more runs beside the saved ones
    python experiments/mnist/run.py --replot                 # tables and plot from the saved runs
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import mean_sd  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "vae_k1": ["--model.objective", "elbo", "--model.num_samples", "1"],
    "iwae_k5": ["--model.objective", "iwae", "--model.num_samples", "5"],
    "iwae_k50": ["--model.objective", "iwae", "--model.num_samples", "50"],
}
PAPER_EPOCHS = 3280  # Burda et al. 2016, sec. 5: sum_{i=0}^{7} 3^i
PAPER_NLL = {"vae_k1": 86.76, "iwae_k5": 85.54, "iwae_k50": 84.78}  # Burda et al. 2016, Table 1, k = 1/5/50
# static binarisation: IWAE k = 50 87.10 is a test NLL, but Rezende & Mohamed (2015)'s VAE 89.9 is
# a variational bound (it compares with the test ELBO, not with the importance-sampled NLL)
PAPER_NLL_STATIC = {"iwae_k50": 87.10}
PAPER_ELBO_STATIC = {"vae_k1": -89.9}
TRAIN_SIZE = 50000  # both splits train on 50,000 images (10,000 held out for validation)


def stage_epochs(stages: int) -> int:
    """Epochs of the first ``stages`` stages of the paper's schedule: sum_{i<stages} 3^i."""
    if not 1 <= stages <= 8:
        raise SystemExit(f"--stages must be 1..8 (the paper's schedule has 8); got {stages}")
    return sum(3**i for i in range(stages))


def _run(cmd: list[str], log: Path) -> float:
    print("$", shlex.join(cmd), f"> {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"command failed (exit status {rc}); see {log}:\n" + log.read_text()[-3000:])
    return time.perf_counter() - t0


def _curve(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(epoch, value) of val/elbo and val/bound (L_k for IWAE) from Lightning's CSV log."""
    files = sorted(log_dir.rglob("metrics.csv"))
    rows = list(csv.DictReader(open(files[-1]))) if files else []
    return {
        key: [(int(r["epoch"]), float(r[f"val/{key}"])) for r in rows if r.get(f"val/{key}")]
        for key in ("elbo", "bound")
    }


def estimate_wall(cfg: dict[str, Any], names: list[str], epochs: int, n_seeds: int, eval_k: int) -> str:
    """A lower bound on the wall time: training steps/s and importance-sampling speed measured here.

    Each variant's model is built from the config and timed on Adam steps on a random binary batch
    of the config's size (the fastest of 3 blocks of 10 steps, after 10 warm-up steps); Lightning's
    loop, validation and data loading add to it.
    """
    import torch

    import lvm

    batch = int(cfg["data"]["init_args"]["batch_size"])
    x = torch.bernoulli(torch.full((batch, 784), 0.2))
    total, parts = 0.0, []
    for name in names:
        opts = dict(zip(VARIANTS[name][::2], VARIANTS[name][1::2], strict=True))
        model_cfg = {**cfg["model"], "objective": opts["--model.objective"]}
        vae = lvm.VAE(data_shape=[784], **{**model_cfg, "num_samples": int(opts["--model.num_samples"])})
        opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
        times = []
        for _block in range(4):  # a warm-up block, then the fastest of 3 (the box may be shared)
            t0 = time.perf_counter()
            for _ in range(10):
                opt.zero_grad()
                (-vae(x).objective.mean()).backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        steps_s = 10 / min(times[1:])
        train_s = epochs * TRAIN_SIZE / batch / steps_s
        parts.append(f"{name} {steps_s:.0f} steps/s")
        total += train_s * n_seeds
    est = lvm.create_estimator({"name": "importance", "num_samples": 500})
    t0 = time.perf_counter()
    est.estimate(vae.model, x, index=torch.arange(batch), seed=0)
    eval_s = (time.perf_counter() - t0) / batch / 500 * eval_k * 10000
    total += eval_s * n_seeds * len(names)
    return (
        f"estimated wall time at least {total / 3600:.1f} h ({', '.join(parts)}, batch {batch}, "
        f"{epochs} epochs x {n_seeds} seeds; evaluation about {eval_s / 60:.0f} min per run at K = {eval_k})"
    )


def run_one(name: str, seed: int, args: argparse.Namespace, epochs: int, out: Path) -> dict[str, Any]:
    """Train one (variant, seed), evaluate its best checkpoint, save and return its results."""
    tag = f"{name}_seed{seed}"
    root = Path("runs") / f"mnist_{args.split}_s{args.stages}" / tag
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lvm_cmd = [sys.executable, "-m", "lvm.cli"]
    cmd = [*lvm_cmd, "fit", "--config", str(HERE / "iwae.yaml")]
    if args.static:
        cmd += ["--config", str(HERE / "static.yaml")]
    if args.full:
        cmd += ["--config", str(HERE / "iwae_full.yaml")]
    cmd += [*VARIANTS[name], "--seed_everything", str(seed), "--trainer.max_epochs", str(epochs)]
    cmd += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)]
    cmd += shlex.split(args.fit_args)
    train_s = _run(cmd, logs / f"{tag}_fit.log")
    ckpts = sorted(root.rglob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"no best checkpoint under {root}")
    rows, eval_s = [], 0.0
    for est, k in (("importance", args.eval_k), ("elbo", 1)):
        dest = out / "compare" / tag / est
        cmd = [*lvm_cmd, "compare", "--ckpt", str(ckpts[-1]), "--estimators", est, "--num-samples", str(k)]
        cmd += ["--data-config", str(HERE / ("static.yaml" if args.static else "iwae.yaml"))]
        cmd += ["--out", str(dest), "--no-progress"] + (["--limit", str(args.limit)] if args.limit else [])
        eval_s += _run(cmd, logs / f"{tag}_compare_{est}.log")
        rows += json.loads((dest / "compare.json").read_text())["rows"]
        (dest / "compare.png").unlink(missing_ok=True)  # one plot per experiment: learning_curves.png
    imp = next(r for r in rows if r["estimator"] == "importance")
    elbo = next(r for r in rows if r["estimator"] == "elbo")
    curve = _curve(root)
    result = {
        "variant": name,
        "seed": seed,
        "split": args.split,
        "stages": args.stages,
        "epochs": epochs,
        "epochs_run": (curve["elbo"][-1][0] + 1) if curve["elbo"] else None,
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(eval_s, 1),
        "test_images": imp["num_datapoints"],
        "eval_K": args.eval_k,
        "test_nll": -imp["mean_log_px"],
        "test_nll_stderr": imp["stderr"],
        "test_elbo": elbo["mean_log_px"],
        "mean_ess": imp["mean_ess"],
        "max_pareto_k": imp["max_pareto_k"],
        "checkpoint": str(ckpts[-1]),
        "curve": curve,
    }
    (out / "runs").mkdir(exist_ok=True)
    (out / "runs" / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{tag}: test NLL {result['test_nll']:.2f} (s.e. {imp['stderr']:.2f}), ELBO {result['test_elbo']:.2f}; "
        f"{train_s:.0f} s training ({train_s / epochs:.0f} s/epoch), {eval_s:.0f} s evaluation",
        flush=True,
    )
    return result


def summarise(results: list[dict[str, Any]], static: bool) -> dict[str, Any]:
    """Mean and sd over seeds per variant, and whether the paper's ordering holds beyond the spread.

    The ordering NLL(k=50) < NLL(k=5) < NLL(VAE) holds beyond the spread when each difference of
    means exceeds sqrt(sd_a^2 + sd_b^2), the sd of the difference of two single runs.
    """
    by: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        rs = [r for r in results if r["variant"] == name]
        if rs:
            by[name] = {
                "seeds": [r["seed"] for r in rs],
                "epochs": rs[0]["epochs"],
                "paper_fraction": rs[0]["epochs"] / PAPER_EPOCHS,
                "test_nll": mean_sd([r["test_nll"] for r in rs]),
                "test_elbo": mean_sd([r["test_elbo"] for r in rs]),
                "train_seconds": mean_sd([r["train_seconds"] for r in rs]),
                "paper_nll": (PAPER_NLL_STATIC if static else PAPER_NLL).get(name),
                "paper_elbo": PAPER_ELBO_STATIC.get(name) if static else None,
            }
    order = [n for n in ("vae_k1", "iwae_k5", "iwae_k50") if n in by]
    pairs = []
    for a, b in zip(order, order[1:]):
        na, nb = by[a]["test_nll"], by[b]["test_nll"]
        spread = ((na["sd"] or 0) ** 2 + (nb["sd"] or 0) ** 2) ** 0.5
        pairs.append({"worse": a, "better": b, "difference": na["mean"] - nb["mean"], "spread": spread})
    ok = bool(pairs) and all(p["difference"] > p["spread"] for p in pairs)
    return {"variants": by, "ordering": pairs, "ordering_holds_beyond_spread": ok}


def _pm(s: dict[str, Any]) -> str:
    return f"{s['mean']:.2f}" + (f" ± {s['sd']:.2f}" if s["sd"] is not None else " (one seed)")


def write_table(summary: dict[str, Any], out: Path, eval_k: int) -> str:
    lines = [
        f"| model | seeds | epochs (fraction of the paper's {PAPER_EPOCHS:,}) | test ELBO | "
        f"**test NLL (IS, K = {eval_k})** | paper (Table 1) | training s per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in summary["variants"].items():
        paper = f"NLL {v['paper_nll']}" if v["paper_nll"] else ""
        paper += f"ELBO {v['paper_elbo']} (Rezende & Mohamed 2015)" if v["paper_elbo"] else ""
        lines.append(
            f"| {name} | {len(v['seeds'])} | {v['epochs']} ({100 * v['paper_fraction']:.1f}%) | "
            f"{_pm(v['test_elbo'])} | **{_pm(v['test_nll'])}** | {paper or '-'} | "
            f"{v['train_seconds']['mean']:.0f} |"
        )
    lines.append("")
    lines.append("mean ± sd over seeds. Paper's ordering NLL(k=50) < NLL(k=5) < NLL(VAE) beyond the spread: ")
    lines[-1] += "**yes**" if summary["ordering_holds_beyond_spread"] else "**no**"
    for p in summary["ordering"]:
        lines.append(
            f"- {p['worse']} - {p['better']}: {p['difference']:+.2f} nats (spread {p['spread']:.2f})"
        )
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    return md


def plot_curves(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation ELBO (comparable across models) and training bound per epoch, every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    colors = {n: f"C{i}" for i, n in enumerate(VARIANTS)}
    for r in results:
        for ax, key in zip(axes, ("elbo", "bound"), strict=True):
            if r["curve"][key]:
                e, v = zip(*r["curve"][key], strict=True)
                first = r["seed"] == min(q["seed"] for q in results if q["variant"] == r["variant"])
                ax.plot(
                    [x + 1 for x in e],
                    v,
                    color=colors[r["variant"]],
                    alpha=0.8,
                    lw=1,
                    label=r["variant"] if first else None,
                )
    axes[0].set_ylabel("validation ELBO (nats)")
    axes[0].set_title("ELBO (comparable across models)", fontsize=9)
    axes[1].set_ylabel("validation bound (nats)")
    axes[1].set_title("training bound: ELBO for k = 1, L_k for IWAE", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=8, title="one line per seed", title_fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_estimates(results: list[dict[str, Any]], summary: dict[str, Any], path: Path, title: str) -> None:
    """Every model and both estimators in one plot: -ELBO and the IS NLL per seed, mean ± sd, the paper's NLL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=120)
    names = list(summary["variants"])
    labelled: set[str] = set()
    for i, name in enumerate(names):
        rs = [r for r in results if r["variant"] == name]
        v = summary["variants"][name]
        for dx, key, sign, color, label in (
            (-0.12, "test_elbo", -1, "C1", "-ELBO (K = 1)"),
            (0.12, "test_nll", 1, "C0", f"NLL by importance sampling (K = {rs[0]['eval_K']})"),
        ):
            ys = [sign * r[key] for r in rs]
            ax.plot([i + dx] * len(ys), ys, "o", color=color, alpha=0.35, ms=4)
            ax.errorbar(
                i + dx, sign * v[key]["mean"], yerr=v[key]["sd"] or 0, fmt="_", ms=14, mew=2,
                capsize=4, color=color, label=label if i == 0 else None,
            )  # fmt: skip
        anchors = (
            (0.12, v["paper_nll"], "k", "paper NLL (Burda et al. 2016, Table 1)"),
            (
                -0.12,
                v.get("paper_elbo") and -v["paper_elbo"],
                "0.45",
                "published -ELBO (Rezende & Mohamed 2015)",
            ),
        )
        for dx, y, color, label in anchors:
            if y is not None:  # each label once in the legend, from the first model that has the anchor
                ax.plot(i + dx, y, "*", color=color, ms=9, label=None if label in labelled else label)
                labelled.add(label)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("nats per test image (lower is better)")
    n = results[0]["test_images"]
    ax.set_title(f"{title}\n{n:,} test images; dots: seeds, bars: mean ± sd", fontsize=9)
    fig.legend(fontsize=8, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument(
        "--stages", type=int, default=3, help="stages of the paper's schedule (1..8; 3 = 13 epochs)"
    )
    p.add_argument("--full", action="store_true", help="all 8 stages (3,280 epochs) on a GPU")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--static", action="store_true", help="statically binarised MNIST (Larochelle & Murray)")
    p.add_argument("--fit-args", default="", help="extra lvm fit arguments, e.g. for a smoke run")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default results[_static]_s<stages>)"
    )
    p.add_argument("--redo", action="store_true", help="rerun (variant, seed) pairs that have results")
    p.add_argument("--replot", action="store_true", help="only rewrite tables and plot from saved runs")
    args = p.parse_args(argv)
    if args.full:
        args.stages = 8
    epochs = stage_epochs(args.stages)
    args.split = "static" if args.static else "dynamic"
    out = args.out or HERE / f"results{'_static' if args.static else ''}_s{args.stages}"
    out.mkdir(parents=True, exist_ok=True)

    if not args.replot:
        todo = [(n, s) for n in args.variants for s in args.seeds]
        todo = [(n, s) for n, s in todo if args.redo or not (out / "runs" / f"{n}_seed{s}.json").exists()]
        cfg = yaml.safe_load((HERE / "iwae.yaml").read_text())
        if args.static:
            cfg["data"] = yaml.safe_load((HERE / "static.yaml").read_text())["data"]
        if todo:
            names = sorted({n for n, _ in todo}, key=list(VARIANTS).index)
            print(estimate_wall(cfg, names, epochs, len(args.seeds), args.eval_k), flush=True)
        start = time.perf_counter()
        for i, (name, seed) in enumerate(todo):
            run_one(name, seed, args, epochs, out)
            left = (time.perf_counter() - start) / (i + 1) * (len(todo) - i - 1)
            print(f"{i + 1}/{len(todo)} runs done; about {left / 60:.0f} min left at this pace", flush=True)

    results = [json.loads(f.read_text()) for f in sorted((out / "runs").glob("*.json"))]
    results = [r for r in results if r["epochs"] == epochs]
    if not results:
        raise SystemExit(f"no saved runs of {epochs} epochs under {out / 'runs'}")
    summary = summarise(results, args.static)
    summary.update({"split": args.split, "stages": args.stages, "eval_K": args.eval_k})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(write_table(summary, out, args.eval_k))
    title = f"MNIST ({args.split}), first {args.stages} stages of the schedule: {epochs} epochs"
    plot_curves(results, out / "learning_curves.png", title)
    plot_estimates(results, summary, out / "estimates.png", title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
