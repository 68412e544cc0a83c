"""Benchmark: ``lvm.optim.Adam`` against ``torch.optim.Adam`` on CPU parameters, Lightning imported.

Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``; where a CUDA build of torch runs
without a driver, every torch Adam step then retries loading NVML in its graph-capture check,
which ``lvm.optim.Adam`` skips for CPU parameters (``lvm._compat.SkipCPUAcceleratorProbe``). Both
optimisers take fused steps, interleaved in one process; the ratio is torch's time over lvm's
per round, median and spread reported, in wall time and in the process's CPU time (the CPU time
is less disturbed by other jobs on a shared machine). Default environment: no OpenMP or
allocator variables; ``--threads`` sets torch's thread count when given.

- default: optimiser steps alone on the parameters of the IWAE 1-layer model (784-200-200-100
  encoder, 50-200-200-784 decoder) with fixed gradients;
- ``--train``: whole training steps of the reference VAE of ``baselines.py`` (batch 100:
  forward, backward, optimiser step), what the device is worth in a run.

Usage:
    python benchmarks/bench_adam.py --steps 300 --repeats 11 --out benchmarks/results/adam.json
    python benchmarks/bench_adam.py --train --steps 100 --repeats 7 --out benchmarks/results/adam_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK, as in every lvm process)
import torch
from torch import nn

from lvm._compat import SKIPS_CPU_ACCELERATOR_PROBE
from lvm.optim import Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import MLPVAE, make_binary_data  # noqa: E402


def _params() -> list[nn.Parameter]:
    torch.manual_seed(0)
    sizes = [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]
    params = [p for i, o in sizes for p in nn.Linear(i, o).parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _make(cls: type[torch.optim.Optimizer], params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return cls(params, lr=1e-3, fused=True) if cls is torch.optim.Adam else cls(params, lr=1e-3)


def _optimiser_steps(cls: type[torch.optim.Optimizer], params: list[nn.Parameter], steps: int) -> None:
    opt = _make(cls, params)
    for _ in range(steps):
        opt.step()


def _training_steps(cls: type[torch.optim.Optimizer], model: MLPVAE, x: torch.Tensor, steps: int) -> None:
    opt = _make(cls, list(model.parameters()))
    for i in range(steps):
        loss = model.loss(x[(i % 10) * 100 : (i % 10 + 1) * 100])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return platform.processor()


def _summary(theirs: list[float], ours: list[float]) -> dict[str, float]:
    ratios = [a / b for a, b in zip(theirs, ours, strict=True)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "torch_median_s": statistics.median(theirs),
        "lvm_median_s": statistics.median(ours),
        "ratio_median": statistics.median(ratios),
        "ratio_q1": q[0],
        "ratio_q3": q[2],
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="steps per timing (default 300)")
    p.add_argument("--repeats", type=int, default=11, help="interleaved rounds (default 11)")
    p.add_argument("--train", action="store_true", help="time whole training steps of the reference VAE")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/adam.json"), help="JSON results file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        torch.manual_seed(0)
        model, x = MLPVAE(), make_binary_data(1000)

        def run(cls: type[torch.optim.Optimizer], steps: int) -> None:
            _training_steps(cls, model, x, steps)
    else:
        params = _params()

        def run(cls: type[torch.optim.Optimizer], steps: int) -> None:
            _optimiser_steps(cls, params, steps)

    run(torch.optim.Adam, 20), run(Adam, 20)  # warm-up
    wall: dict[type, list[float]] = {torch.optim.Adam: [], Adam: []}
    cpu: dict[type, list[float]] = {torch.optim.Adam: [], Adam: []}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        for cls in (torch.optim.Adam, Adam) if r % 2 else (Adam, torch.optim.Adam):
            w, c = _timed(lambda cls=cls: run(cls, args.steps))
            wall[cls].append(w)
            cpu[cls].append(c)
    result = {
        "what": "training steps (reference VAE, batch 100)" if args.train else "fused optimiser steps",
        "steps": args.steps,
        "repeats": args.repeats,
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "nvml_check_variable": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
        "probe_skipped": SKIPS_CPU_ACCELERATOR_PROBE,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "torch_adam_wall_s": wall[torch.optim.Adam],
        "lvm_adam_wall_s": wall[Adam],
        "torch_adam_cpu_s": cpu[torch.optim.Adam],
        "lvm_adam_cpu_s": cpu[Adam],
        "wall": _summary(wall[torch.optim.Adam], wall[Adam]),
        "cpu_time": _summary(cpu[torch.optim.Adam], cpu[Adam]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for clock in ("wall", "cpu_time"):
        s = result[clock]
        print(
            f"{args.steps} {result['what']}, {clock}: torch.optim.Adam {s['torch_median_s']:.3f} s, lvm.optim.Adam "
            f"{s['lvm_median_s']:.3f} s; torch / lvm median {s['ratio_median']:.3f} (quartiles "
            f"{s['ratio_q1']:.3f}-{s['ratio_q3']:.3f}, range {s['ratio_min']:.2f}-{s['ratio_max']:.2f}) "
            f"over {args.repeats} rounds"
        )
    print(f"{result['cpu']}, {result['threads']} threads, torch {result['torch']}; {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
