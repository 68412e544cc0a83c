"""Benchmark: peak resident memory of importance sampling, K = 1000, over 10,000 count rows of 2,000 genes.

A ZINB VAE of scVI's default size (encoder 2000-128-(2 x 10), decoder 10-128-(2 x 2000), ReLU,
one inverse dispersion per gene) with random weights, and random counts (10,000 x 2,000, each
Poisson with a gamma-distributed rate of mean 1, so 50% zeros, a stand-in for a single-cell
matrix; no data needed). The estimator runs over all rows, in one of two ways:

- ``direct``: one call ``ImportanceSampling(K).estimate(model, x)`` on all 10,000 rows at once,
  the worst case for memory (its automatic chunk size is then 1 sample);
- ``dataset``: ``lvm.evaluate.compare_estimators(model, x, ["importance"], [K])``, the dataset
  path of ``lvm compare`` (batches of 100 rows).

Memory is the resident set size of this process from /proc/self/status: its peak (VmHWM) is reset
after the model and data are built (``/proc/self/clear_refs``, Linux >= 4.0), so ``peak_mib`` is
the peak during the estimate, and ``increment_mib`` that minus the resident size just before
(the baseline: Python, torch, the model and the 80 MB of data). ``ru_maxrss`` (the peak over the
process's whole life) is reported too. The criterion: ``peak_mib`` <= 2048.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_count_memory.py --mode direct \
        --out benchmarks/results/count_memory_direct.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import time
from pathlib import Path

import torch

import lvm
from lvm.estimators import ImportanceSampling
from lvm.model import LatentVariableModel

LIMIT_MIB = 2048
ARCH = {"name": "mlp", "hidden": [128], "activation": "relu"}


def status_mib(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """Set the peak resident size (VmHWM) to the current one."""
    Path("/proc/self/clear_refs").write_text("5")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def build(rows: int, genes: int, likelihood: str, seed: int) -> tuple[LatentVariableModel, torch.Tensor]:
    torch.manual_seed(seed)
    lik = {"name": likelihood, "dispersion": "feature"}
    model = LatentVariableModel.build((genes,), 10, encoder=ARCH, decoder=ARCH, likelihood=lik).eval()
    rate = torch.distributions.Gamma(0.5, 0.5)  # mean 1
    x = torch.empty(rows, genes)
    for block in x.split(1000):  # block by block: no transient copies of the whole matrix
        block.copy_(torch.poisson(rate.sample(block.shape)))
    return model, x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--likelihood", default="zinb", choices=["zinb", "negative_binomial"])
    p.add_argument("--mode", default="direct", choices=["direct", "dataset"])
    p.add_argument("--batch-size", type=int, default=100, help="rows per estimator call in the dataset mode")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, x = build(args.rows, args.genes, args.likelihood, 0)
    est = ImportanceSampling(args.k)
    chunk = next(
        iter(est.chunks(model, x if args.mode == "direct" else x[: args.batch_size], adaptive=False))
    )[1]
    gc.collect()
    reset_peak()
    baseline = status_mib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    if args.mode == "direct":
        log_px = est.estimate(model, x, index=torch.arange(len(x)), seed=0).log_px
    else:
        (row,) = lvm.evaluate.compare_estimators(
            model, x, ["importance"], [args.k], batch_size=args.batch_size
        )
        log_px = row.datapoints.log_px
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = status_mib("VmHWM")
    result = {
        "what": f"importance sampling, K = {args.k}, {args.rows} rows x {args.genes} genes, {args.likelihood} VAE, "
        f"{args.mode}",
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": args.rows,
        "genes": args.genes,
        "k": args.k,
        "likelihood": args.likelihood,
        "mode": args.mode,
        "batch_size": args.rows if args.mode == "direct" else args.batch_size,
        "chunk_size": chunk,
        "baseline_mib": round(baseline, 1),
        "peak_mib": round(peak, 1),
        "increment_mib": round(peak - baseline, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "limit_mib": LIMIT_MIB,
        "within_limit": peak <= LIMIT_MIB,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "log_px_mean": float(log_px.double().mean()),
        "all_finite": bool(torch.isfinite(log_px).all()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["within_limit"] and result["all_finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
