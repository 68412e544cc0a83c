"""Benchmark: annealed importance sampling per chain x step against one decoder forward + backward (the floor).

The model is the one of ``bench_estimator.py``: the 1-layer architecture of Burda et al. (2016),
784-200-200-50 encoder and 50-200-200-784 decoder with tanh, Bernoulli likelihood, random
weights and random binary x of MNIST's size (no data needed). In one process, interleaved, it
times ``AnnealedImportanceSampling(K, T, L).estimate`` on one batch and, as the floor, the bare
``model.decoder(z)`` forward and a backward pass to z on the same (chunk, B, L) shape, as many
times as AIS evaluates the gradient (1 + (T - 1) L per chain chunk, pilot chains included).
ratio = AIS time / floor time in each round, the median over rounds reported with its spread;
i.e. per chain x step against L floors. Default environment: no
allocator tuning, no OMP variables. Then a subprocess runs K = 100 chains, T = 1000 on 100
datapoints and reports its peak resident memory, with L = 1 by default (memory does not depend
on L, and grows with T only by the (T - 1, B) step sizes; ``--memory-steps`` shortens the run).

Usage:
    python benchmarks/bench_ais.py --k 20 --steps 50 --leapfrog 5 --repeats 3 \
        --out benchmarks/results/ais.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_estimator import Timer, build, peak_rss_mb

import lvm
from lvm.estimators import AnnealedImportanceSampling
from lvm.model import LatentVariableModel


def time_ais(est: AnnealedImportanceSampling, model: LatentVariableModel, x: torch.Tensor) -> Timer:
    with Timer() as t:
        out = est.estimate(model, x, index=torch.arange(x.shape[0]), seed=0)
    assert torch.isfinite(out.log_px).all(), f"non-finite estimate: {out.log_px}"
    return t


def gradient_evaluations(
    est: AnnealedImportanceSampling, model: LatentVariableModel, x: torch.Tensor
) -> list[int]:
    """Chains per gradient evaluation, one entry per evaluation AIS makes (probe, pilot, chunks)."""
    per_run = 1 + (est.steps - 1) * est.leapfrog_steps
    sizes = [est.pilot_chains] + [c for _, c in est.chunks(model, x)]
    return [1] + [c for c in sizes for _ in range(per_run)]


def time_floor(sizes: list[int], model: LatentVariableModel, x: torch.Tensor) -> Timer:
    """decoder(z) forward and backward to z, for the same chain counts as AIS's evaluations."""
    z = torch.randn(max(sizes), x.shape[0], model.latent_dim)
    with Timer() as t:
        for c in sizes:
            z_ = z[:c].requires_grad_(True)
            out = model.decoder(z_)
            torch.autograd.grad(out.sum(), z_)
    return t


def summary(timers: list[Timer]) -> dict[str, float]:
    wall = [t.wall for t in timers]
    return {"median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall),
            "cpu_median_s": statistics.median(t.cpu for t in timers)}  # fmt: skip


def memory_run(args: argparse.Namespace) -> dict[str, Any]:
    """One AIS run with the memory settings; this process's peak RSS (meant for a fresh subprocess)."""
    model, x = build(args.batch, args.seed)
    est = AnnealedImportanceSampling(
        num_samples=args.memory_k, steps=args.memory_steps, leapfrog_steps=args.leapfrog
    )
    before = peak_rss_mb()
    seconds = time_ais(est, model, x).wall
    return {"k": args.memory_k, "steps": args.memory_steps, "leapfrog_steps": args.leapfrog, "batch": args.batch,
            "chunk_size": next(est.chunks(model, x))[1], "seconds": seconds,
            "peak_rss_mb_before_estimate": before, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=20, help="chains per datapoint (default 20)")
    p.add_argument("--steps", type=int, default=50, help="annealing steps T (default 50)")
    p.add_argument("--leapfrog", type=int, default=5, help="leapfrog steps L (default 5)")
    p.add_argument("--batch", type=int, default=100, help="datapoints (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and data")
    p.add_argument("--memory-k", type=int, default=100, help="K of the memory run (0: skip; default 100)")
    p.add_argument("--memory-steps", type=int, default=1000, help="T of the memory run (default 1000)")
    p.add_argument("--memory-leapfrog", type=int, default=1,
                   help="L of the memory run (default 1: memory does not depend on L, time does)")  # fmt: skip
    p.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ais.json"), help="JSON results file")
    args = p.parse_args(argv)
    if args.memory_only:
        print(json.dumps(memory_run(args)))
        return 0

    model, x = build(args.batch, args.seed)
    est = AnnealedImportanceSampling(num_samples=args.k, steps=args.steps, leapfrog_steps=args.leapfrog)
    sizes = gradient_evaluations(est, model, x)
    time_ais(AnnealedImportanceSampling(num_samples=2, steps=3, leapfrog_steps=2), model, x)  # warm-up
    time_floor(sizes[:20], model, x)
    times: dict[str, list[Timer]] = {"ais": [], "floor": []}
    for _ in range(args.repeats):  # interleaved, so drift and load from other processes hit both alike
        times["ais"].append(time_ais(est, model, x))
        times["floor"].append(time_floor(sizes, model, x))
    result: dict[str, Any] = {name: summary(t) for name, t in times.items()}
    chain_steps = (args.k + est.pilot_chains) * (args.steps - 1)
    paired = [a.wall / f.wall for a, f in zip(times["ais"], times["floor"], strict=True)]  # per round
    result.update(
        k=args.k, steps=args.steps, leapfrog_steps=args.leapfrog, batch=args.batch, repeats=args.repeats,
        pilot_chains=est.pilot_chains, chunk_size=next(est.chunks(model, x))[1],
        gradient_evaluations=len(sizes), threads=torch.get_num_threads(),
        ratio=statistics.median(paired), ratio_spread=[min(paired), max(paired)], ratios=paired,
        ratio_of_medians=result["ais"]["median_s"] / result["floor"]["median_s"],
        ratio_of_minima=result["ais"]["min_s"] / result["floor"]["min_s"],
        ratio_cpu=result["ais"]["cpu_median_s"] / result["floor"]["cpu_median_s"],
        ms_per_chain_step_per_datapoint=1e3 * result["ais"]["median_s"] / chain_steps / args.batch,
        data="random binary 784-pixel images (13% on), random-weight model",
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")  # the timings, before the long memory run
    if args.memory_k:
        cmd = [sys.executable, __file__, "--memory-only", "--memory-k", str(args.memory_k), "--memory-steps",
               str(args.memory_steps), "--leapfrog", str(args.memory_leapfrog), "--batch", str(args.batch)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result["memory_run"] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "torch": torch.__version__, "lvm": lvm.__version__, "cpus": os.cpu_count(),
                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"AIS K={args.k} T={args.steps} L={args.leapfrog} B={args.batch}: {result['ais']['median_s']:.2f} s, "
          f"floor {result['floor']['median_s']:.2f} s, ratio {result['ratio']:.2f}x (paired median of "
          f"{args.repeats} rounds, {min(paired):.2f}-{max(paired):.2f}; minima {result['ratio_of_minima']:.2f}x, "
          f"CPU {result['ratio_cpu']:.2f}x)")  # fmt: skip
    if "memory_run" in result:
        m = result["memory_run"]
        print(f"memory: K={m['k']} T={m['steps']} B={m['batch']}: peak RSS {m['peak_rss_mb']:.0f} MiB "
              f"in {m['seconds']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
