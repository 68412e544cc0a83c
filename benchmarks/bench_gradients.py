"""Benchmark: a DReG training step against the reparameterised IWAE step, same model, same K.

DReG (Tucker et al. 2019, sec. 3) changes only how the encoder's gradient is formed: log q(z | x)
is evaluated with q's parameters detached (one more pass of q's distribution, not of the encoder)
and a hook rescales the gradient reaching z by the normalised weights; the decoder runs once
either way. The target is a DReG step within 1.3x of the reparameterised one.

Each step is what ``lvm.VAE.training_step`` computes (the objective, its backward pass and an
``lvm.optim.Adam`` step) on the IWAE model of ``experiments/mnist/iwae.yaml`` (784-200-200-50
tanh, Bernoulli) with a batch of 20 random binary images. Both models start from the same
weights; each round times ``--steps`` steps of each, in alternating order; the ratio is DReG's
time over reparam's in the same round, reported as the median over ``--rounds`` rounds with its
min-max. Default environment: torch's default threads, no OpenMP or allocator variables
(``--threads N`` opts out, and the JSON's ``environment`` says so).

    python benchmarks/bench_gradients.py                      # K = 5 and 64, 5 rounds of 50 steps
    python benchmarks/bench_gradients.py --k 64 --rounds 7 --out benchmarks/results/gradients.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import lvm

ARCH = {
    "encoder": {"name": "mlp", "hidden": [200, 200], "activation": "tanh"},
    "decoder": {"name": "mlp", "hidden": [200, 200], "activation": "tanh"},
}


def _cpu() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def _step_timer(gradient: str, k: int, x: torch.Tensor):  # noqa: ANN202
    torch.manual_seed(0)
    vae = lvm.VAE(data_shape=[784], latent_dim=50, **ARCH, objective={"name": "iwae", "gradient": gradient},
                  num_samples=k, eps=1e-4)  # fmt: skip
    opt = vae.adam()

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            (-vae(x).objective.mean()).backward()
            opt.step()
        return time.perf_counter() - start

    return run


def bench(k: int, steps: int, rounds: int, x: torch.Tensor) -> dict:
    timers = {g: _step_timer(g, k, x) for g in ("reparam", "dreg")}
    for t in timers.values():
        t(5)  # warm-up
    times: dict[str, list[float]] = {"reparam": [], "dreg": []}
    for r in range(rounds):
        for g in ("reparam", "dreg") if r % 2 == 0 else ("dreg", "reparam"):
            times[g].append(timers[g](steps) / steps)
    ratios = [d / p for d, p in zip(times["dreg"], times["reparam"], strict=True)]
    return {
        "k": k,
        "steps_per_round": steps,
        "rounds": rounds,
        "reparam_step_s": times["reparam"],
        "dreg_step_s": times["dreg"],
        "reparam_median_ms": 1000 * statistics.median(times["reparam"]),
        "dreg_median_ms": 1000 * statistics.median(times["dreg"]),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[5, 64], help="importance samples per datapoint")
    p.add_argument("--steps", type=int, default=50, help="training steps per timing")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--batch", type=int, default=20, help="images per step")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, labelled)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gradients.json"), help="JSON results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.bernoulli(torch.full((args.batch, 784), 0.13), generator=torch.Generator().manual_seed(0))
    load_before = os.getloadavg()
    cases = [bench(k, args.steps, args.rounds, x) for k in args.k]
    load_after = os.getloadavg()
    cores = os.cpu_count() or 1
    busy = max(load_before[0], load_after[0]) > 0.5 * cores  # other work shared the cores
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    result = {
        "what": "DReG IWAE training step / reparameterised IWAE training step, same K, batch, weights",
        "label": "measured under load" if busy else "quiet machine",
        "cpu": _cpu(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "environment": f"set_num_threads({args.threads})" if args.threads else "default",
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit.strip(),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['cpu']}, {result['torch_threads']} torch threads, {result['label']} (load {load_before[0]:.1f} "
          f"-> {load_after[0]:.1f} on {cores} cores)")  # fmt: skip
    for c in cases:
        print(f"K = {c['k']:3d}: reparam {c['reparam_median_ms']:.1f} ms, DReG {c['dreg_median_ms']:.1f} ms per step; "
              f"DReG / reparam median {c['ratio_median']:.3f} ({c['ratio_min']:.3f}-{c['ratio_max']:.3f}) over "
              f"{c['rounds']} rounds of {c['steps_per_round']} steps")  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
