"""Benchmark: the estimators' thread policy against one thread, fixed threads and the decoder floor, idle and busy.

The model is the 1-layer architecture of Burda et al. (2016) with random weights and random
binary x, as ``bench_estimator.py``. In one process, round by round (the order rotated each
round), it times on 100 datapoints:

- ``floor``: ``model.decoder(z)`` for the same number of z in the estimator's chunks, at torch's
  default thread count (what the user's process has);
- ``lvm``: the estimate as lvm runs it (:class:`lvm.estimators.threads.AdaptiveThreads`);
- ``fixed``: the estimate inside :func:`lvm.estimators.threads.fixed` (the policy switched off:
  everything at the default count, lvm before the policy);
- ``one_thread``: the estimate after ``torch.set_num_threads(1)``.

With ``--busy N``, N processes spin on a core each during the measurement (a shared machine).
The environment is the user's: no OpenMP, allocator or thread variable is set.

Usage:
    python benchmarks/bench_threads.py --estimator importance --k 1000 --busy 0 --out OUT.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_estimator import build  # noqa: E402

from lvm.estimators import create_estimator  # noqa: E402
from lvm.estimators import threads as policy  # noqa: E402


@contextlib.contextmanager
def neighbours(n: int) -> Iterator[None]:
    """``n`` processes that spin on a core each while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estimator", default="importance", choices=("importance", "prior", "ais"))
    parser.add_argument("--k", type=int, default=1000, help="K (AIS: chains)")
    parser.add_argument("--steps", type=int, default=20, help="AIS: annealing steps T")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, metavar="N", help="spinning neighbour processes")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model, x = build(args.batch, 0)
    spec = {"name": args.estimator, "num_samples": args.k}
    if args.estimator == "ais":
        spec.update(steps=args.steps, leapfrog_steps=1)
    est = create_estimator(spec)
    index = torch.arange(x.shape[0])
    default = torch.get_num_threads()
    sizes = [c for _, c in est.chunks(model, x, adaptive=False)]
    z = torch.randn(max(sizes), x.shape[0], model.latent_dim)
    decoder_passes = est.decoder_evaluations(model) / args.k  # AIS: per chain

    def floor() -> None:
        with torch.no_grad():
            for _ in range(int(round(decoder_passes))):
                for c in sizes:
                    model.decoder(z[:c])

    def estimate() -> None:
        est.estimate(model, x, index=index, seed=0)

    def fixed() -> None:
        with policy.fixed():
            estimate()

    def one_thread() -> None:
        torch.set_num_threads(1)
        try:
            estimate()
        finally:
            torch.set_num_threads(default)

    cases = {"floor": floor, "lvm": estimate, "fixed": fixed, "one_thread": one_thread}
    times: dict[str, list[float]] = {k: [] for k in cases}
    chosen: list[list[int]] = []
    with neighbours(args.busy):
        load_start = os.getloadavg()
        estimate()  # warm-up
        names = list(cases)
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - t0)
        load_end = os.getloadavg()
        history: list[int] = []
        original_init = policy.AdaptiveThreads.__init__

        def spy(self: policy.AdaptiveThreads, *a: object, **k: object) -> None:
            original_init(self, *a, **k)
            self.history = history

        policy.AdaptiveThreads.__init__ = spy  # type: ignore[method-assign]
        estimate()
        policy.AdaptiveThreads.__init__ = original_init  # type: ignore[method-assign]
        chosen.append(history)

    def ratios(a: str, b: str) -> dict[str, float]:
        rs = [x / y for x, y in zip(times[a], times[b], strict=True)]
        return {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}

    result = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "default_threads": default,
        "busy_neighbours": args.busy,
        "load_average": [load_start, load_end],
        "estimator": spec,
        "batch": args.batch,
        "chunks": len(sizes),
        "repeats": args.repeats,
        "seconds": {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
            for k, v in times.items()
        },
        "ratio_to_floor": {k: ratios(k, "floor") for k in ("lvm", "fixed", "one_thread")},
        "lvm_over_one_thread": ratios("lvm", "one_thread"),
        "lvm_over_fixed": ratios("lvm", "fixed"),
        "threads_chosen_last_run": chosen[-1],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["ratio_to_floor"]
    print(
        f"{result['cpu']}, busy {args.busy}, {args.estimator} K={args.k}: "
        + ", ".join(f"{k}/floor {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})" for k, v in r.items())
        + f"; lvm/one_thread {result['lvm_over_one_thread']['median']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
