"""Benchmark: where an estimate's time goes beyond the decoder floor, idle or beside busy neighbours.

The model is the 1-layer architecture of Burda et al. (2016) with random weights and random
binary x, as ``bench_estimator.py``. For importance sampling or the prior Monte Carlo estimate
(K samples, 100 datapoints), each round times, in the order rotated round by round:

- ``floor``: ``model.decoder(z)`` for the same number of z in the estimator's chunks;
- ``estimate``: one estimate, with its parts timed inside it: ``decoder`` (the same forward
  passes as the floor), ``log_density`` (the likelihood's log p(x | z) from the decoder's
  output), ``sampling`` (the proposal's noise, z and log r(z)), ``weights`` (the streaming
  logsumexp, ESS, variance and Pareto tail, and the final estimate) and ``rest`` (the encoder,
  the prior's log density, the loop);
- ``sigmoid``: ``torch.sigmoid`` alone over the logits of every chunk (C x B x 784 values), the
  one transcendental function per logit that a Bernoulli log density needs: what even a fused
  kernel would add to the floor.

Everything runs at one thread count, the caller's (torch's default) unless ``--threads`` sets
it, inside :func:`lvm.estimators.threads.fixed`. With ``--busy N``, N processes spin on a core
each during the measurement. No OpenMP, allocator or thread variable is set.

Usage:
    python benchmarks/bench_parts.py --estimator importance --k 1000 --busy 0 --out OUT.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_estimator import build  # noqa: E402
from bench_threads import cpu_name, neighbours  # noqa: E402

from lvm.estimators import create_estimator  # noqa: E402
from lvm.estimators import threads as policy  # noqa: E402
from lvm.estimators.diagnostics import LogWeights  # noqa: E402
from lvm.estimators.proposals import Proposal  # noqa: E402
from lvm.estimators.sampling import LatentSampler  # noqa: E402

PARTS = ("decoder", "log_density", "sampling", "weights")


class Parts:
    """Seconds spent in each part during the current estimate (wrapped callables add to them)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)

    def timed(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - began

        return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estimator", default="importance", choices=("importance", "prior"))
    parser.add_argument("--k", type=int, default=1000, help="samples per datapoint K")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--busy", type=int, default=0, metavar="N", help="spinning neighbour processes")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, x = build(args.batch, 0)
    est = create_estimator({"name": args.estimator, "num_samples": args.k})
    index = torch.arange(x.shape[0])
    sizes = [c for _, c in est.chunks(model, x, adaptive=False)]
    z = torch.randn(max(sizes), x.shape[0], model.latent_dim)
    with torch.no_grad():
        logits = model.decoder(z)

    parts = Parts()
    decoder = model.decoder.forward
    model.decoder.forward = parts.timed("decoder", decoder)  # type: ignore[method-assign]
    with torch.no_grad():
        dist_type = type(model.observation(z[:1]))
    dist_type.log_prob = parts.timed("log_density", dist_type.log_prob)  # type: ignore[method-assign]
    Proposal.sample = parts.timed("sampling", Proposal.sample)  # type: ignore[method-assign]
    if args.estimator == "prior":
        LatentSampler.sample = parts.timed("sampling", LatentSampler.sample)  # type: ignore[method-assign]
    LogWeights.update = parts.timed("weights", LogWeights.update)  # type: ignore[method-assign]
    LogWeights.estimate = parts.timed("weights", LogWeights.estimate)  # type: ignore[method-assign]

    def floor() -> None:
        with torch.no_grad():
            for c in sizes:
                decoder(z[:c])

    def estimate() -> None:
        with policy.fixed():
            est.estimate(model, x, index=index, seed=0)

    def sigmoid() -> None:
        for c in sizes:
            torch.sigmoid(logits[:c])

    cases = {"floor": floor, "estimate": estimate, "sigmoid": sigmoid}
    times: dict[str, list[float]] = {k: [] for k in (*cases, *PARTS, "rest")}
    with neighbours(args.busy):
        load_start = os.getloadavg()
        estimate()  # warm-up
        names = list(cases)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                parts.seconds = dict.fromkeys(PARTS, 0.0)
                began = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - began)
                if name == "estimate":
                    for part, s in parts.seconds.items():
                        times[part].append(s)
                    times["rest"].append(times["estimate"][-1] - sum(parts.seconds.values()))
        load_end = os.getloadavg()

    def over_floor(name: str) -> dict[str, float]:
        rs = [a / b for a, b in zip(times[name], times["floor"], strict=True)]
        return {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}

    result = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "busy_neighbours": args.busy,
        "load_average": [load_start, load_end],
        "estimator": {"name": args.estimator, "num_samples": args.k},
        "batch": args.batch,
        "chunks": sizes,
        "logits": sum(sizes) * x.shape[0] * x.shape[1],
        "repeats": args.repeats,
        "seconds": {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
            for k, v in times.items()
        },
        "over_floor": {k: over_floor(k) for k in times if k != "floor"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["over_floor"]
    print(
        f"{result['cpu']} ({result['cpu_capability']}), {result['threads']} threads, busy {args.busy}, "
        f"{args.estimator} K={args.k}: floor {result['seconds']['floor']['median']:.3f} s; / floor: "
        + ", ".join(f"{k} {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})" for k, v in r.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
