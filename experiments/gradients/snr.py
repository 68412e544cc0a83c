"""Signal-to-noise ratio of IWAE's gradient estimators against K on a trained MNIST model (Rainforth et al. 2018).

Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh (2018), "Tighter variational bounds are not
necessarily better", Theorem 1: with the reparameterised IWAE gradient the encoder's SNR falls as
O(sqrt(M / K)) while the decoder's rises as O(sqrt(M K)). Tucker et al. (2019), sec. 3: the doubly
reparameterised gradient (DReG) keeps the encoder's SNR from collapsing; sticking the landing (STL,
Roeder et al. 2017) also does, but is biased for K > 1.

For each K and gradient estimator, ``lvm.diagnostics.gradient_snr`` takes ``--repeats`` independent
gradient estimates on one fixed batch of M = ``--batch`` training images (the first M of the
training split, binarised once with seed 0) and prints |E g| / sd g averaged over the encoder's and
the decoder's scalar parameters (and the median). ``--runs`` instead measures, for every model
of ``train.py``, the encoder's SNR of both training estimators at the training K.

    python experiments/gradients/snr.py                      # the K sweep on results/fits/reparam_seed0.json model
    python experiments/gradients/snr.py --ckpt runs/x/best.ckpt --k 1 10 100 --repeats 50
    python experiments/gradients/snr.py --runs               # encoder SNR of each trained run
    python experiments/gradients/snr.py --replot             # the figure from results/snr.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ESTIMATORS = ("reparam", "stl", "dreg")
COLORS = {"reparam": "C0", "stl": "C2", "dreg": "C3"}


def training_batch(n: int, data_dir: Path = Path("data")) -> torch.Tensor:
    """The first ``n`` MNIST training images, (n, 784), binarised once with seed 0."""
    from lvm.data.files import find_file
    from lvm.data.idx import read_idx

    path = find_file(data_dir / "MNIST" / "raw", "train-images-idx3-ubyte")
    if path is None:
        raise SystemExit(f"no MNIST training images under {data_dir / 'MNIST' / 'raw'}; see the README")
    grey = torch.from_numpy(read_idx(path)[:n].copy()).float().div(255).reshape(n, 784)
    return torch.bernoulli(grey, generator=torch.Generator().manual_seed(0))


def _machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": commit.strip(), "load_avg": list(os.getloadavg())}  # fmt: skip


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Encoder and decoder SNR at every K for every estimator, on one model and one batch."""
    from lvm.checkpoint import load_vae
    from lvm.diagnostics import gradient_snr

    ckpt = args.ckpt or Path(json.loads((RESULTS / "fits" / "reparam_seed0.json").read_text())["checkpoint"])
    vae, _ = load_vae(ckpt)
    x = training_batch(args.batch)
    rows = []
    for k in args.k:
        for g in args.gradients:
            t0 = time.perf_counter()
            s = gradient_snr(vae, x, {"name": "iwae", "gradient": g}, k, args.repeats, seed=args.seed)
            rows.append(
                {**dataclasses.asdict(s), "gradient": g, "seconds": round(time.perf_counter() - t0, 1)}
            )
            print(f"K={k:5d} {g:8s} encoder SNR {s.encoder:8.4f} (median {s.encoder_median:.4f})  decoder SNR "
                  f"{s.decoder:8.3f} (median {s.decoder_median:.3f})  {rows[-1]['seconds']} s", flush=True)  # fmt: skip
    return {"checkpoint": str(ckpt), "model": {"objective": vae.objective_fn.label, "num_samples": vae.hparams.num_samples},
            "batch": args.batch, "repeats": args.repeats, "seed": args.seed, "rows": rows,
            "command": "python " + " ".join(sys.argv), "machine": _machine()}  # fmt: skip


def per_run(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder's SNR of each trained run of train.py under both training estimators, at its K."""
    from lvm.checkpoint import load_vae
    from lvm.diagnostics import gradient_snr

    x = training_batch(args.batch)
    rows = []
    for f in sorted((RESULTS / "fits").glob("*.json")):
        run = json.loads(f.read_text())
        vae, _ = load_vae(run["checkpoint"])
        for g in ("reparam", "dreg"):
            s = gradient_snr(vae, x, {"name": "iwae", "gradient": g}, run["k"], args.repeats, seed=args.seed)
            rows.append({"run": f.stem, "trained_with": run["gradient"], "seed": run["seed"], "gradient": g,
                         **dataclasses.asdict(s)})  # fmt: skip
            print(f"{f.stem:16s} {g:8s} encoder SNR {s.encoder:.4f} (median {s.encoder_median:.4f}) decoder "
                  f"{s.decoder:.3f}", flush=True)  # fmt: skip
    return {"batch": args.batch, "repeats": args.repeats, "seed": args.seed, "rows": rows,
            "command": "python " + " ".join(sys.argv), "machine": _machine()}  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    """Encoder and decoder SNR against K, one line per estimator (mean over parameters; dashed: median)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    rows = result["rows"]
    for ax, group in zip(axes, ("encoder", "decoder"), strict=True):
        # every estimator gives the decoder the same gradient from the same draws: one line there
        for g in ESTIMATORS if group == "encoder" else ESTIMATORS[:1]:
            rs = sorted((r for r in rows if r["gradient"] == g), key=lambda r: r["num_samples"])
            if rs:
                ks = [r["num_samples"] for r in rs]
                label = f"IWAE, {g}" if group == "encoder" else "IWAE (reparam, STL and DReG alike)"
                ax.plot(ks, [r[group] for r in rs], "o-", color=COLORS[g], label=label)
                ax.plot(ks, [r[f"{group}_median"] for r in rs], "--", color=COLORS[g], alpha=0.5, lw=1)
        ax.axhline(rows[0]["noise_floor"], color="0.6", lw=1, ls=":", label="noise floor (true mean 0)")
        plain = sorted((r for r in rows if r["gradient"] == "reparam"), key=lambda r: r["num_samples"])
        anchor = next((r for r in plain if r["num_samples"] >= 10), plain[-1])
        slope = 0.5 if group == "decoder" else -0.5
        ks = [r["num_samples"] for r in plain]
        ax.plot(ks, [anchor[group] * (k / anchor["num_samples"]) ** slope for k in ks], color="0.3", lw=0.8,
                ls="-.", label=f"K^{slope:+.1f} (Rainforth et al. 2018, Theorem 1)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (samples per datapoint)")
        ax.set_ylabel(f"{group} SNR  |E g| / sd g")
        ax.set_title(
            f"{'inference network (q)' if group == 'encoder' else 'generative network (p)'}", fontsize=9
        )
        ax.legend(fontsize=7)
    m = result["model"]
    fig.suptitle(
        f"MNIST 784-200-200-50 trained with {m['objective']} (k = {m['num_samples']}); M = {result['batch']} images, "
        f"{result['repeats']} estimates per point; solid: mean over parameters, dashed: median",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default: train.py's reparam seed 0)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3, 10, 30, 100, 300, 1000], help="values of K")
    p.add_argument("--gradients", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    p.add_argument("--batch", type=int, default=20, help="M, training images per gradient estimate")
    p.add_argument("--repeats", type=int, default=200, help="gradient estimates per SNR")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws of z")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--runs", action="store_true", help="the encoder SNR of every run of train.py instead")
    p.add_argument("--replot", action="store_true", help="only redraw snr.png from snr.json")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs:
        (args.out / "snr_runs.json").write_text(json.dumps(per_run(args), indent=2) + "\n")
        return 0
    if not args.replot:
        (args.out / "snr.json").write_text(json.dumps(sweep(args), indent=2) + "\n")
    plot(json.loads((args.out / "snr.json").read_text()), args.out / "snr.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
