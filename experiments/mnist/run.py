"""Train the IWAE paper's one-layer model with the ELBO and the IWAE bound, then estimate test log p(x).

Each variant is trained by ``lvm fit`` for a fixed wall-clock budget and evaluated by ``lvm compare``
(importance sampling, K = 5000, full test set; the ELBO with one sample). Writes ``results.json``
(after each model), ``results.md`` and ``learning_curves.png`` into ``--out``; ``--replot`` redraws
the plot from ``results.json``.

    python experiments/mnist/run.py                      # CPU budget: 5 minutes of training each
    python experiments/mnist/run.py --static             # Larochelle & Murray's binarisation
    python experiments/mnist/run.py --full               # the paper's 3,280-epoch schedule (GPU)
    python experiments/mnist/run.py --variants iwae_k50  # one model; the others' saved results stay
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "vae_k1": ["--model.objective", "elbo", "--model.num_samples", "1"],
    "iwae_k5": ["--model.objective", "iwae", "--model.num_samples", "5"],
    "iwae_k50": ["--model.objective", "iwae", "--model.num_samples", "50"],
}
PAPER_NLL = {"vae_k1": 86.76, "iwae_k5": 85.54, "iwae_k50": 84.78}  # Burda et al. 2016, Table 1
# static binarisation: published VAE about 89.9 (Rezende & Mohamed 2015), IWAE k = 50 87.10
PAPER_NLL_STATIC = {"vae_k1": 89.9, "iwae_k50": 87.10}


def _run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:])


def _curve(log_dir: Path) -> list[tuple[int, float]]:
    """(epoch, validation bound) pairs from Lightning's CSV log: the ELBO, or L_k for IWAE."""
    files = sorted(log_dir.rglob("metrics.csv"))
    if not files:
        return []
    rows = list(csv.DictReader(open(files[-1])))
    key = "val/bound" if rows and "val/bound" in rows[0] else "val/elbo"  # val/elbo: lvm before val/bound
    return [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]


def _max_time(minutes: float) -> str:
    """Lightning's ``DD:HH:MM:SS`` for a number of minutes."""
    s = int(round(minutes * 60))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def plot_curves(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation bound per epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for r in results:
        if r["curve"]:
            e, v = zip(*r["curve"])
            ax.plot([x + 1 for x in e], v, label=r["variant"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation bound (nats)\nELBO for k=1, L_k for IWAE", fontsize=8)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _in_order(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results sorted as ``VARIANTS`` lists the variants."""
    return sorted(results, key=lambda r: list(VARIANTS).index(r["variant"]))


def write_table(results: list[dict[str, Any]], out: Path, eval_k: int) -> str:
    lines = [
        f"| variant | epochs | train s | test ELBO | test NLL (IS, K={eval_k}) | s.e. | mean ESS | paper NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ess = r.get("mean_ess")
        lines.append(
            f"| {r['variant']} | {r['epochs']} | {r['train_seconds']:.0f} | {r['test_elbo']:.2f} | "
            f"{r['test_nll']:.2f} | {r['stderr']:.2f} | {'-' if ess is None else f'{ess:.1f}'} | "
            f"{r['paper_nll'] or '-'} |"
        )
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    p.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget per variant")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per test datapoint")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--static", action="store_true", help="statically binarised MNIST (Larochelle & Murray)")
    p.add_argument(
        "--full", action="store_true", help="the paper's full 3,280-epoch schedule (no time limit)"
    )
    p.add_argument("--out", default=None, help="output folder (default experiments/mnist/results[_static])")
    p.add_argument("--replot", action="store_true", help="only redraw learning_curves.png from results.json")
    args = p.parse_args(argv)

    split = "static" if args.static else "dynamic"
    out = Path(args.out or HERE / ("results_static" if args.static else "results"))
    out.mkdir(parents=True, exist_ok=True)
    title = "MNIST, full schedule" if args.full else f"MNIST ({split}), {args.minutes:g} min CPU each"
    if args.replot:
        if not (out / "results.json").exists():
            sys.exit(f"--replot needs {out / 'results.json'}; run without --replot first (or pass --out)")
        plot_curves(json.loads((out / "results.json").read_text()), out / "learning_curves.png", title)
        return 0
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")

    runs = Path("runs") / f"mnist_{split}"
    names = args.variants.split(",")
    saved = out / "results.json"
    # variants not run this time keep their saved results: a subset can be (re)run on its own
    kept = [r for r in json.loads(saved.read_text()) if r["variant"] not in names] if saved.exists() else []
    results: list[dict[str, Any]] = []
    for name in names:
        root = runs / name
        cmd = ["lvm", "fit", "--config", str(HERE / "iwae.yaml")]
        if args.static:
            cmd += ["--config", str(HERE / "static.yaml")]
        if args.full:
            cmd += ["--config", str(HERE / "iwae_full.yaml")]
        else:
            cmd += ["--trainer.max_time", _max_time(args.minutes)]
        cmd += VARIANTS[name]
        cmd += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)]
        t0 = time.time()
        _run(cmd, out / f"{name}_fit.log")
        train_s = time.time() - t0
        ckpts = sorted(root.rglob("best-*.ckpt"), key=os.path.getmtime)
        if not ckpts:
            sys.exit(f"no best checkpoint under {root}")

        cmp_out = out / f"{name}_compare"
        t0 = time.time()
        rows = []
        # importance sampling at K = eval_k; the ELBO with one sample, as in training
        for est, k in (("importance", args.eval_k), ("elbo", 1)):
            cmd = ["lvm", "compare", "--ckpt", str(ckpts[-1]), "--estimators", est]
            cmd += ["--num-samples", str(k), "--out", str(cmp_out / est)]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            _run(cmd, out / f"{name}_compare_{est}.log")
            rows += json.loads((cmp_out / est / "compare.json").read_text())["rows"]
        eval_s = time.time() - t0
        imp = next(r for r in rows if r["estimator"] == "importance")
        elbo = next(r for r in rows if r["estimator"] == "elbo")
        curve = _curve(root)
        results.append(
            {
                "variant": name,
                "split": split,
                "epochs": (curve[-1][0] + 1) if curve else None,
                "train_seconds": round(train_s, 1),
                "eval_seconds": round(eval_s, 1),
                "test_elbo": elbo["mean_log_px"],
                "test_log_px_is": imp["mean_log_px"],
                "stderr": imp["stderr"],
                "mean_ess": imp.get("mean_ess"),
                "test_nll": -imp["mean_log_px"],
                "paper_nll": (PAPER_NLL_STATIC if args.static else PAPER_NLL).get(name),
                "eval_K": args.eval_k,
                "checkpoint": str(ckpts[-1]),
                "curve": curve,
            }
        )
        saved.write_text(json.dumps(_in_order(kept + results), indent=2))  # after each model
        print(
            f"{name}: test NLL {-imp['mean_log_px']:.2f} +/- {imp['stderr']:.2f} nats "
            f"(ELBO {elbo['mean_log_px']:.2f}), {train_s:.0f} s training, {eval_s:.0f} s evaluation",
            flush=True,
        )

    results = _in_order(kept + results)
    print(write_table(results, out, args.eval_k))
    plot_curves(results, out / "learning_curves.png", title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
