"""The thread policy of the estimators' chunk loops: the caller's thread count or one thread, whichever runs faster."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

__all__ = ["AdaptiveThreads", "ThreadPreference", "preference", "preferred"]


@dataclass
class ThreadPreference:
    """What this process has measured so far: the faster setting, and loops run since it was measured.

    Attributes:
        threads: The thread count that ran faster when last measured (None: not measured yet).
        caller: The caller's thread count it was measured against.
        loops_since_measured: Loops run at ``threads`` without measuring the other setting.
    """

    threads: int | None = None
    caller: int | None = None
    loops_since_measured: int = 0
    #: Seconds per sample of each setting when last measured, for loops of chunks of ``size``.
    seconds: dict[int, float] = field(default_factory=dict)
    size: int | None = None


#: The process's measured preference, shared by every loop (an estimate is many loops: one per batch).
preference = ThreadPreference()

#: The caller's thread count while :func:`preferred` runs an estimate at one thread (else None).
_caller: contextvars.ContextVar[int | None] = contextvars.ContextVar("lvm_caller_threads", default=None)


@contextlib.contextmanager
def preferred() -> Iterator[None]:
    """Run a whole estimate at one thread when its loops last measured one thread faster.

    The work around the chunk loops (the encoder, the proposal's noise, the reductions, AIS's
    pilot chains) is dozens of small parallel kernels; at the caller's count on a crowded
    machine each can wait out a scheduler time slice at OpenMP's barrier. The loops inside still
    measure against the caller's count, and the caller's setting comes back at the end, however
    it ends (``tests/test_threads.py``).
    """
    caller = torch.get_num_threads()
    if caller == 1 or _caller.get() is not None or preference.threads != 1 or preference.caller != caller:
        yield
        return
    token = _caller.set(caller)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(caller)
        _caller.reset(token)


class AdaptiveThreads:
    """Runs a loop of similar chunks at the caller's torch thread count or at one thread, by measurement.

    An estimate is many chunks of the same work (decoder passes and log densities over C samples).
    Each chunk issues hundreds of parallel kernels, each ending at a barrier where all of torch's
    threads meet; when the machine has more runnable threads than cores (other processes, a
    notebook beside a training run), a thread that the scheduler has parked holds every barrier,
    and a chunk can take several times as long as with one thread, which waits at no barrier. On an
    idle machine the caller's threads are the faster. So loops measure both, sparingly:

    - the first loop of the process (with at least four chunks) runs chunk 0 at one thread
      (unmeasured: first-touch allocation), chunk 1 at one thread and chunk 2 at the caller's
      count, and keeps the faster per sample (:data:`preference`) for its other chunks;
    - later loops run at the preferred setting and measure the other on one chunk again after
      ``remeasure_every`` loops, or as soon as the machine's load changes the preferred
      setting's time per sample by ``slowdown`` or ``speedup`` (against its best in that loop,
      or when it was last measured on chunks of the same size) in the direction that could
      change the choice: the caller's count slowing down, or one thread speeding up
      (:meth:`_probe`). Chunk 0 of every loop is not measured: it touches the loop's buffers
      first and runs slower than the rest.

    So at most one chunk per change of load, or per ``remeasure_every`` loops, runs at the slower
    setting. The thread count the loop found is restored when it ends, however it ends. With one
    thread, or fewer than four chunks, a loop runs at the caller's count. The numbers do not depend
    on the setting: torch's CPU kernels give the same results at one and two threads for the
    estimators' shapes (``tests/test_threads.py`` pins this). The measurement behind the policy:
    ``benchmarks/results/threads_*.json`` (``benchmarks/README.md``).

    Args:
        slowdown: The factor on the caller's count's best time per sample (in this loop, or as
            last measured for chunks of this size) that triggers a measurement of one thread.
        speedup: The factor below one thread's best time per sample that triggers a measurement
            of the caller's count; larger than ``slowdown`` because on a crowded machine that
            one chunk can take several times one thread's.
        remeasure_every: Loops between measurements of the other setting when nothing slows down.
        margin: The caller's count is chosen when its time per sample is below ``margin`` times
            one thread's.
    """

    def __init__(
        self, slowdown: float = 1.5, speedup: float = 2.0, remeasure_every: int = 16, margin: float = 0.9
    ) -> None:
        self.slowdown, self.speedup = slowdown, speedup
        self.remeasure_every, self.margin = remeasure_every, margin
        self.caller = _caller.get() or torch.get_num_threads()
        #: The thread count of each chunk run so far, in order (for tests and benchmarks).
        self.history: list[int] = []

    def loop(self, sizes: list[int], start: int = 0) -> Iterator[int]:
        """Yield ``start`` + the index of each chunk of ``sizes`` (samples per chunk), run at the
        thread count this policy chose, and restore the caller's count at the end."""
        if self.caller == 1 or len(sizes) < 4:
            self.history.extend([torch.get_num_threads()] * len(sizes))
            yield from range(start, start + len(sizes))
            return
        entry = torch.get_num_threads()  # restored at the end: the caller's, or 1 under preferred()
        pref = preference
        if pref.caller != self.caller:  # measured against another count: measure again
            pref.threads, pref.caller, pref.loops_since_measured = None, self.caller, 0
        if pref.size != sizes[0]:  # other work: the times measured before do not compare
            pref.seconds, pref.size = {}, sizes[0]
        plan = self._first_plan() if pref.threads is None else self._plan(pref)
        last: dict[int, float] = {}  # this loop's latest time per sample, by setting
        best: dict[int, float] = {}  # and its best
        probed: set[int] = set()  # settings measured in this loop because the load changed
        try:
            for i, size in enumerate(sizes):
                threads = plan.pop(0) if plan else self._choice(last, pref)
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                self.history.append(threads)
                began = time.perf_counter()
                yield start + i
                per_sample = (time.perf_counter() - began) / max(size, 1)
                if i == 0:
                    continue  # first touch of the loop's buffers: slower than the chunks after it
                reference = best.get(threads, pref.seconds.get(threads))  # this loop's, else earlier loops'
                if reference is not None and not plan:
                    plan = self._probe(threads, per_sample, reference, last, probed)
                last[threads], best[threads] = per_sample, min(best.get(threads, per_sample), per_sample)
                if len(last) == 2:
                    pref.threads = self._choice(last, pref)
                    pref.seconds, pref.loops_since_measured = dict(last), 0
        finally:
            if torch.get_num_threads() != entry:
                torch.set_num_threads(entry)
            pref.loops_since_measured += 1

    def _probe(
        self, threads: int, per_sample: float, reference: float, last: dict[int, float], probed: set[int]
    ) -> list[int]:
        """Measure the other setting on the next chunk when the load has changed its way, else nothing.

        A chunk at the caller's count that slowed by ``slowdown`` (neighbours arrived) measures
        one thread, unless one thread already ran slower in this loop. A chunk at one thread that
        slowed measures nothing: more load only makes more threads slower, and measuring them is
        the one expensive chunk (measuring them on every slowdown ran AIS beside a spinning
        neighbour at 1.73x one thread's time, median of 3 rounds, against 1.02x without:
        ``benchmarks/results/threads_ais_k100_busy1_{before,after}.json``). A chunk at one
        thread that sped up by ``speedup`` (the load dropped) measures the caller's count, once
        per loop.
        """
        if threads != 1:
            slowed = per_sample > self.slowdown * reference
            return [1] if slowed and per_sample <= last.get(1, float("inf")) else []
        if per_sample * self.speedup < reference and self.caller not in probed:
            probed.add(self.caller)
            return [self.caller]
        return []

    def _first_plan(self) -> list[int]:
        return [1, 1, self.caller]

    def _plan(self, pref: ThreadPreference) -> list[int]:
        assert pref.threads is not None
        if pref.loops_since_measured >= self.remeasure_every:
            other = 1 if pref.threads != 1 else self.caller
            return [pref.threads, pref.threads, other]  # warm, measure, then the other once
        return []

    def _choice(self, last: dict[int, float], pref: ThreadPreference) -> int:
        """The setting whose latest chunk ran faster per sample, else the process's preference.

        Several threads must beat one by ``margin``: a wrong choice of them can cost several
        times the time on a crowded machine, a wrong choice of one at most the thread count's speed-up
        until the next measurement.
        """
        if len(last) == 2:
            return self.caller if last[self.caller] < self.margin * last[1] else 1
        return pref.threads if pref.threads is not None else next(iter(last))
