"""Train the IWAE paper's one-layer model with the ELBO and the IWAE bound, then estimate test log p(x).

Each variant is trained by ``lvm fit`` for a fixed wall-clock budget and evaluated by ``lvm compare``
(importance sampling, K = 5000, full test set). Writes ``results.json``, ``results.md`` and
``learning_curves.png`` into ``--out``.

    python experiments/mnist/run.py                      # CPU budget: 6 minutes of training each
    python experiments/mnist/run.py --static             # Larochelle & Murray's binarisation
    python experiments/mnist/run.py --full               # the paper's 3,280-epoch schedule (GPU)
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

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "vae_k1": ["--model.objective", "elbo", "--model.num_samples", "1"],
    "iwae_k5": ["--model.objective", "iwae", "--model.num_samples", "5"],
    "iwae_k50": ["--model.objective", "iwae", "--model.num_samples", "50"],
}
PAPER_NLL = {"vae_k1": 86.76, "iwae_k5": 85.54, "iwae_k50": 84.78}  # Burda et al. 2016, Table 1


def _run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:])


def _curve(log_dir: Path) -> list[tuple[int, float]]:
    """(epoch, val ELBO) pairs from Lightning's CSV log."""
    files = sorted(log_dir.rglob("metrics.csv"))
    if not files:
        return []
    rows = list(csv.DictReader(open(files[-1])))
    return [(int(r["epoch"]), float(r["val/elbo"])) for r in rows if r.get("val/elbo")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    p.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget per variant")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per test datapoint")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--static", action="store_true", help="statically binarised MNIST (Larochelle & Murray)")
    p.add_argument(
        "--full", action="store_true", help="the paper's full 3,280-epoch schedule (no time limit)"
    )
    p.add_argument("--out", default=None, help="output folder (default experiments/mnist/results[_static])")
    args = p.parse_args(argv)

    split = "static" if args.static else "dynamic"
    out = Path(args.out or HERE / ("results_static" if args.static else "results"))
    out.mkdir(parents=True, exist_ok=True)
    runs = Path("runs") / f"mnist_{split}"
    results = []
    for name in args.variants.split(","):
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        root = runs / name
        cmd = ["lvm", "fit", "--config", str(HERE / "iwae.yaml")]
        if args.static:
            cmd += ["--config", str(HERE / "static.yaml")]
        if args.full:
            cmd += ["--config", str(HERE / "iwae_full.yaml")]
        else:
            m = int(args.minutes)
            s = int(round((args.minutes - m) * 60))
            cmd += ["--trainer.max_time", f"00:00:{m:02d}:{s:02d}"]
        cmd += VARIANTS[name] + [
            "--trainer.default_root_dir",
            str(root),
            "--trainer.logger.init_args.save_dir",
            str(root),
        ]
        t0 = time.time()
        _run(cmd, out / f"{name}_fit.log")
        train_s = time.time() - t0
        ckpts = sorted(root.rglob("best-*.ckpt"), key=os.path.getmtime)
        if not ckpts:
            sys.exit(f"no best checkpoint under {root}")
        cmp_out = out / f"{name}_compare"
        cmd = [
            "lvm",
            "compare",
            "--ckpt",
            str(ckpts[-1]),
            "--estimators",
            "elbo,importance",
            "--num-samples",
            f"1,{args.eval_k}",
            "--out",
            str(cmp_out),
        ]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        t0 = time.time()
        _run(cmd, out / f"{name}_compare.log")
        eval_s = time.time() - t0
        rows = json.loads((cmp_out / "compare.json").read_text())
        rows = rows["rows"] if isinstance(rows, dict) else rows
        imp = [r for r in rows if r["estimator"] == "importance" and int(r["K"]) == args.eval_k][0]
        elbo = [r for r in rows if r["estimator"] == "elbo"][0]
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
                "test_nll": -imp["mean_log_px"],
                "paper_nll": PAPER_NLL[name] if not args.static else None,
                "eval_K": args.eval_k,
                "checkpoint": str(ckpts[-1]),
                "curve": curve,
            }
        )
        print(
            f"{name}: test NLL {-imp['mean_log_px']:.2f} +/- {imp['stderr']:.2f} nats "
            f"(ELBO {elbo['mean_log_px']:.2f}), {train_s:.0f} s training, {eval_s:.0f} s evaluation",
            flush=True,
        )

    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"| variant | epochs | train s | test ELBO | test NLL (IS, K={args.eval_k}) | s.e. | paper NLL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['variant']} | {r['epochs']} | {r['train_seconds']:.0f} | {r['test_elbo']:.2f} | "
            f"{r['test_nll']:.2f} | {r['stderr']:.2f} | {r['paper_nll'] or '-'} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for r in results:
        if r["curve"]:
            e, v = zip(*r["curve"])
            ax.plot([x + 1 for x in e], v, label=r["variant"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation ELBO (nats)")
    ax.set_title(f"MNIST ({split} binarisation), {args.minutes:g} min CPU each" if not args.full else "MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
