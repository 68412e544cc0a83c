"""IWAE k = 64 on MNIST trained with the reparameterised gradient and with DReG, same epochs, several seeds.

Tucker, Lawson, Gu & Maddison (2019), "Doubly reparameterized gradient estimators for Monte Carlo
objectives", sec. 6: training IWAE's encoder with DReG instead of the plain reparameterised
gradient gives a better generative model at the same k. Here both train the one-stochastic-layer
model of ``experiments/mnist/iwae.yaml`` (784-200-200-50 tanh, batch 20, Adam eps 1e-4, Burda et
al. 2016's learning-rate schedule, dynamic binarisation) with ``{name: iwae, gradient: G}``,
k = 64, for ``--epochs`` epochs, seeds ``--seeds``. Each run is ``lvm fit`` and then ``lvm compare``
on its best checkpoint (validation bound): importance sampling with K = 5000 on the test set. The
encoder's signal-to-noise ratio of each trained model is measured by ``snr.py --runs``.

Runs go two at a time (``--jobs``), one torch thread each, under ``nice``. A trained run is kept
(``fits/<gradient>_seed<S>.json``: its best checkpoint, seconds, validation curves) and so is an
evaluated one (``runs/<gradient>_seed<S>.json``); ``--redo`` reruns them. ``--no-eval`` only trains.

    python experiments/gradients/train.py --no-eval                    # train: 3 epochs, seeds 0 1 2
    python experiments/gradients/train.py                              # then evaluate (K = 5000)
    python experiments/gradients/train.py --epochs 1 --seeds 0 --limit 20 --eval-k 100 --out /tmp/g \\
        --fit-args "--trainer.limit_train_batches 20 --trainer.limit_val_batches 2"   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "mnist" / "iwae.yaml"
GRADIENTS = ("reparam", "dreg")
LVM = [sys.executable, "-m", "lvm.cli"]


def _run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` at lower priority with one torch thread, output to ``log``; its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    print("$", shlex.join(cmd), f"> {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(
            ["nice", "-n", "10", *cmd], stdout=f, stderr=subprocess.STDOUT, env=env
        ).returncode
    if rc:
        raise SystemExit(f"command failed (exit status {rc}); see {log}:\n" + log.read_text()[-3000:])
    return time.perf_counter() - t0


def _curve(root: Path) -> dict[str, list[tuple[int, float]]]:
    """(epoch, value) of val/elbo and val/bound (L_64) from Lightning's CSV log."""
    files = sorted(root.rglob("metrics.csv"))
    rows = list(csv.DictReader(open(files[-1]))) if files else []
    return {
        key: [(int(r["epoch"]), float(r[f"val/{key}"])) for r in rows if r.get(f"val/{key}")]
        for key in ("elbo", "bound")
    }


def fit_one(gradient: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (gradient, seed) with ``lvm fit`` unless done; its record (best checkpoint, seconds, curves)."""
    tag = f"{gradient}_seed{seed}"
    record = args.out / "fits" / f"{tag}.json"
    if record.exists() and not args.redo:
        return json.loads(record.read_text())
    root = Path("runs") / "gradients" / f"e{args.epochs}" / tag
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fit = [
        *LVM,
        "fit",
        "--config",
        os.path.relpath(CONFIG),
        "--model.objective",
        f"{{name: iwae, gradient: {gradient}}}",
    ]
    fit += ["--model.num_samples", str(args.k), "--seed_everything", str(seed)]
    fit += ["--trainer.max_epochs", str(args.epochs), "--trainer.default_root_dir", str(root)]
    fit += ["--trainer.logger.init_args.save_dir", str(root), *shlex.split(args.fit_args)]
    train_s = _run(fit, logs / f"{tag}_fit.log")
    ckpts = sorted(root.rglob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"no best checkpoint under {root}")
    out = {
        "gradient": gradient,
        "seed": seed,
        "k": args.k,
        "epochs": args.epochs,
        "train_seconds": round(train_s, 1),
        "checkpoint": str(ckpts[-1]),
        "command": shlex.join(["python", *fit[1:]]),
        "curve": _curve(root),
    }
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{tag}: trained in {train_s:.0f} s", flush=True)
    return out


def run_one(gradient: str, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train (unless done) and, unless ``--no-eval``, estimate the test NLL of the best checkpoint."""
    fit = fit_one(gradient, seed, args)
    if args.no_eval:
        return None
    tag = f"{gradient}_seed{seed}"
    dest = args.out / "compare" / tag
    cmp = [*LVM, "compare", "--ckpt", fit["checkpoint"], "--estimators", "importance"]
    cmp += ["--num-samples", str(args.eval_k), "--data-config", os.path.relpath(CONFIG)]
    cmp += ["--out", os.path.relpath(dest), "--no-progress"]
    cmp += ["--limit", str(args.limit)] if args.limit else []
    eval_s = _run(cmp, args.out / "logs" / f"{tag}_compare.log")
    (row,) = json.loads((dest / "compare.json").read_text())["rows"]
    (dest / "compare.png").unlink(missing_ok=True)
    result = {
        **fit,
        "eval_seconds": round(eval_s, 1),
        "test_images": row["num_datapoints"],
        "eval_K": args.eval_k,
        "test_nll": -row["mean_log_px"],
        "test_nll_stderr": row["stderr"],
        "mean_ess": row["mean_ess"],
        "eval_command": shlex.join(["python", *cmp[1:]]),
    }
    (args.out / "runs").mkdir(exist_ok=True)
    (args.out / "runs" / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{tag}: test NLL {result['test_nll']:.2f} (s.e. {row['stderr']:.2f}); {eval_s:.0f} s evaluation",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gradients", nargs="+", default=list(GRADIENTS), choices=GRADIENTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run")
    p.add_argument("--k", type=int, default=64, help="importance samples of the training bound")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    p.add_argument("--fit-args", default="", help="extra lvm fit arguments, e.g. for a smoke run")
    p.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    p.add_argument("--no-eval", action="store_true", help="only train (the evaluation runs on a later call)")
    p.add_argument("--redo", action="store_true", help="rerun (gradient, seed) pairs that have results")
    args = p.parse_args(argv)
    todo = [(g, s) for s in args.seeds for g in args.gradients]
    todo = [(g, s) for g, s in todo if args.redo or not (args.out / "runs" / f"{g}_seed{s}.json").exists()]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_one, g, s, args) for g, s in todo]:
            future.result()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
