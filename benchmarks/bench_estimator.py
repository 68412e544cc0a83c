"""Benchmark: importance-sampling log p(x) throughput against the bare decoder forward passes (the floor).

The model is the 1-layer architecture of Burda et al. (2016): 784-200-200-50 encoder and
50-200-200-784 decoder with tanh, Bernoulli likelihood, random weights and random binary x
(no data needed). In one process, interleaved, it times ``ImportanceSampling(K).estimate`` on
one batch and ``model.decoder(z)`` for the same number of z in the same chunk sizes (the floor),
with glibc's default ``malloc`` (earlier runs also timed a tuned ``mallopt``; its ratios to the
floor were within the run-to-run spread, so lvm no longer ships it). Wall-clock and process CPU
time are both reported: on a shared machine the CPU time of a single-threaded run
(``--threads 1``) is the least disturbed. Then a subprocess runs K = 100,000 alone and reports
its peak resident memory.

Usage:
    python benchmarks/bench_estimator.py --k 5000 --batch 100 --repeats 3 \
        --out benchmarks/results/estimator.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import lvm
from lvm.estimators import ImportanceSampling
from lvm.model import LatentVariableModel

ARCH = {"name": "mlp", "hidden": [200, 200], "activation": "tanh"}


def build(batch: int, seed: int) -> tuple[LatentVariableModel, torch.Tensor]:
    """The IWAE 1-layer model with random weights and a random binary batch (B, 784)."""
    torch.manual_seed(seed)
    model = LatentVariableModel.build((784,), 50, encoder=ARCH, decoder=ARCH, likelihood="bernoulli").eval()
    x = (torch.rand(batch, 784) < 0.13).float()  # about MNIST's fraction of on pixels
    return model, x


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Wall-clock and process CPU seconds of a block (CPU time is less disturbed by other processes)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_estimator(est: ImportanceSampling, model: LatentVariableModel, x: torch.Tensor) -> Timer:
    index = torch.arange(x.shape[0])
    with Timer() as t:
        out = est.estimate(model, x, index=index, seed=0)
    assert torch.isfinite(out.log_px).all(), f"non-finite estimate: {out.log_px}"
    return t


def time_floor(est: ImportanceSampling, model: LatentVariableModel, x: torch.Tensor) -> Timer:
    """Bare ``model.decoder(z)`` for the same number of z, in the estimator's chunks."""
    sizes = [c for _, c in est.chunks(model, x)]
    z = torch.randn(max(sizes), x.shape[0], model.latent_dim)
    with torch.no_grad(), Timer() as t:
        for c in sizes:
            model.decoder(z[:c])
    return t


def summary(timers: list[Timer], batch: int) -> dict[str, float]:
    wall = [t.wall for t in timers]
    med = statistics.median(wall)
    q1, _, q3 = statistics.quantiles(wall, n=4) if len(wall) > 1 else (wall[0], None, wall[0])
    return {
        "median_s": med,
        "q1_s": q1,
        "q3_s": q3,
        "min_s": min(wall),
        "max_s": max(wall),
        "datapoints_per_s": batch / med,
        "cpu_median_s": statistics.median(t.cpu for t in timers),
    }


def memory_run(args: argparse.Namespace) -> dict[str, Any]:
    """Run once and report this process's peak RSS (meant for a fresh subprocess)."""
    model, x = build(args.batch, args.seed)
    est = ImportanceSampling(num_samples=args.k, chunk_size=args.chunk_size)
    before = peak_rss_mb()
    seconds = time_estimator(est, model, x).wall
    return {
        "k": args.k,
        "batch": args.batch,
        "chunk_size": next(est.chunks(model, x))[1],
        "seconds": seconds,
        "peak_rss_mb_before_estimate": before,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(
    est: ImportanceSampling, model: LatentVariableModel, x: torch.Tensor, repeats: int
) -> dict[str, Any]:
    """Estimator and floor, interleaved ``repeats`` times (alternating which goes first), with their ratios.

    ``ratio`` is the median over rounds of the paired ratio estimator / floor of the same round
    (``paired_ratio`` has its quartiles and extremes); ``ratio_of_medians`` divides the medians.
    """
    chunk = next(est.chunks(model, x))[1]
    time_estimator(
        ImportanceSampling(num_samples=min(est.num_samples, 2 * chunk), chunk_size=chunk), model, x
    )
    time_floor(est, model, x)  # warm-up
    times: dict[str, list[Timer]] = {"floor": [], "estimator": []}
    for r in range(repeats):  # interleaved, so drift and load from other processes hit both alike
        if r % 2 == 0:
            times["estimator"].append(time_estimator(est, model, x))
            times["floor"].append(time_floor(est, model, x))
        else:
            times["floor"].append(time_floor(est, model, x))
            times["estimator"].append(time_estimator(est, model, x))
    stats: dict[str, Any] = {name: summary(t, x.shape[0]) for name, t in times.items()}
    paired = [e.wall / f.wall for e, f in zip(times["estimator"], times["floor"])]
    q1, _, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0], None, paired[0])
    stats["paired_ratio"] = {
        "median": statistics.median(paired), "q1": q1, "q3": q3, "min": min(paired), "max": max(paired),
        "all": paired,
    }  # fmt: skip
    stats["ratio"] = stats["paired_ratio"]["median"]
    stats["ratio_of_medians"] = stats["estimator"]["median_s"] / stats["floor"]["median_s"]
    stats["ratio_of_minima"] = stats["estimator"]["min_s"] / stats["floor"]["min_s"]
    stats["ratio_cpu"] = stats["estimator"]["cpu_median_s"] / stats["floor"]["cpu_median_s"]
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, default=5000, help="samples of z per datapoint (default 5000)")
    parser.add_argument("--batch", type=int, default=100, help="datapoints per batch (default 100)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repeats of each measurement (default 3)"
    )
    parser.add_argument("--chunk-size", type=int, default=None, help="samples per chunk (default: automatic)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads (default 0: not called, torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and data")
    parser.add_argument(
        "--memory-k",
        type=int,
        default=100_000,
        help="K of the peak-memory subprocess run (0: skip; default 100000)",
    )
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/estimator.json"),
        help="JSON file for the results",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_only:
        print(json.dumps(memory_run(args)))
        return 0

    model, x = build(args.batch, args.seed)
    est = ImportanceSampling(num_samples=args.k, chunk_size=args.chunk_size)
    result: dict[str, Any] = {
        "k": args.k,
        "batch": args.batch,
        "chunk_size": next(est.chunks(model, x))[1],
        "threads": torch.get_num_threads(),
        "threads_set": bool(args.threads),
        "repeats": args.repeats,
    }
    result["default_allocator"] = measure(est, model, x, args.repeats)
    result["peak_rss_mb"] = peak_rss_mb()
    if args.memory_k:
        cmd = [
            sys.executable,
            __file__,
            "--memory-only",
            "--k",
            str(args.memory_k),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
        ]
        if args.chunk_size:
            cmd += ["--chunk-size", str(args.chunk_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result["memory_run"] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "lvm": lvm.__version__,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
