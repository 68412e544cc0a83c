"""Benchmark: ``lvm.optim.Adam`` against ``torch.optim.Adam`` on CPU parameters, Lightning imported.

Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``; where a CUDA build of torch runs
without a driver, every torch Adam step then retries loading NVML in its graph-capture check,
which ``lvm.optim.Adam`` skips for CPU parameters. Both optimisers take fused steps on the
parameters of the IWAE 1-layer model (784-200-200-100 encoder, 50-200-200-784 decoder) with
fixed gradients, interleaved in one process; the ratio is torch's time over lvm's per round,
median and spread reported. Default environment: no OpenMP or allocator variables.

Usage:
    python benchmarks/bench_adam.py --steps 300 --repeats 11 --out benchmarks/results/adam.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK, as in every lvm process)
import torch
from torch import nn

from lvm.optim import Adam


def _params() -> list[nn.Parameter]:
    torch.manual_seed(0)
    sizes = [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]
    params = [p for i, o in sizes for p in nn.Linear(i, o).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _time(cls: type[torch.optim.Optimizer], params: list[nn.Parameter], steps: int) -> float:
    opt = cls(params, lr=1e-3, fused=True) if cls is torch.optim.Adam else cls(params, lr=1e-3)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per timing (default 300)")
    p.add_argument("--repeats", type=int, default=11, help="interleaved rounds (default 11)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/adam.json"), help="JSON results file")
    args = p.parse_args(argv)
    params = _params()
    _time(torch.optim.Adam, params, 20), _time(Adam, params, 20)  # warm-up
    theirs, ours = [], []
    for r in range(args.repeats):
        order = (torch.optim.Adam, Adam) if r % 2 else (Adam, torch.optim.Adam)
        t = {cls: _time(cls, params, args.steps) for cls in order}
        theirs.append(t[torch.optim.Adam])
        ours.append(t[Adam])
    ratios = [a / b for a, b in zip(theirs, ours, strict=True)]
    result = {
        "steps": args.steps,
        "repeats": args.repeats,
        "nvml_check_variable": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
        "torch": torch.__version__,
        "torch_adam_s": theirs,
        "lvm_adam_s": ours,
        "torch_adam_median_s": statistics.median(theirs),
        "lvm_adam_median_s": statistics.median(ours),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "load_avg": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.steps} fused steps: torch.optim.Adam {result['torch_adam_median_s']:.3f} s, lvm.optim.Adam "
        f"{result['lvm_adam_median_s']:.3f} s; torch / lvm median {result['ratio_median']:.2f} "
        f"({result['ratio_min']:.2f}-{result['ratio_max']:.2f}) over {args.repeats} rounds; {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
