"""The thread policy of the estimators' chunk loops: the caller's thread count or one thread, whichever runs faster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

__all__ = ["AdaptiveThreads"]


class AdaptiveThreads:
    """Runs a loop of similar chunks at the caller's torch thread count or at one thread, by measurement.

    An estimate is many chunks of the same work (decoder passes and log densities over C samples).
    Each chunk issues hundreds of parallel kernels, and each kernel ends at a barrier where all of
    torch's threads meet; when the machine has more runnable threads than cores (other processes,
    a notebook beside a training run), a thread that the scheduler has parked holds every barrier,
    and the estimate can take several times as long as with one thread, which never waits at a
    barrier. On an idle machine the caller's threads are the faster. So the loop measures both:

    - chunk 0 runs at the caller's count (its time includes first-touch allocation and is not used),
      chunk 1 at the caller's count, chunk 2 at one thread; later chunks take the faster per sample;
    - when a chunk of the chosen setting takes over ``slowdown`` times that setting's best per
      sample (the machine's load changed), the next chunk measures the other setting again.

    At most one chunk in each change of load runs at the slower setting, so an estimate is never
    much slower than with one thread, nor than with the caller's threads. The caller's setting is
    restored when the loop ends, however it ends. With one thread, or fewer than four chunks,
    nothing changes. The numbers do not depend on the setting: torch's CPU kernels give the same
    results at any thread count for the estimators' shapes (a test pins this); the measurement that
    keeps this policy is ``benchmarks/results/threads.json`` (``benchmarks/README.md``).

    Args:
        slowdown: The factor on the chosen setting's best time per sample that triggers a new
            measurement of the other.
    """

    def __init__(self, slowdown: float = 1.5) -> None:
        self.slowdown = slowdown
        self.caller = torch.get_num_threads()
        #: The thread count of each chunk run so far, in order (for tests and benchmarks).
        self.history: list[int] = []
        self._best: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def loop(self, sizes: list[int], start: int = 0) -> Iterator[int]:
        """Yield ``start`` + the index of each chunk of ``sizes`` (samples per chunk), run at the
        thread count this policy chose, and restore the caller's count at the end."""
        adapt = self.caller > 1 and len(sizes) >= 4
        probe: int | None = None
        try:
            for i, size in enumerate(sizes):
                threads = self._choose(i, probe) if adapt else self.caller
                probe = None
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                self.history.append(threads)
                began = time.perf_counter()
                yield start + i
                per_sample = (time.perf_counter() - began) / max(size, 1)
                if adapt and i > 0:
                    probe = self._record(threads, per_sample)
        finally:
            if torch.get_num_threads() != self.caller:
                torch.set_num_threads(self.caller)

    def _choose(self, i: int, probe: int | None) -> int:
        if i <= 1:
            return self.caller
        if i == 2:
            return 1
        if probe is not None:
            return probe
        return min(self._last, key=self._last.__getitem__)

    def _record(self, threads: int, per_sample: float) -> int | None:
        """Keep the measurement; the other setting, if this one has slowed past ``slowdown``."""
        self._last[threads] = per_sample
        best = self._best.get(threads)
        self._best[threads] = per_sample if best is None else min(best, per_sample)
        if len(self._last) == 2 and best is not None and per_sample > self.slowdown * best:
            return 1 if threads != 1 else self.caller
        return None
