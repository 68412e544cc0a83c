"""The thread policy of the estimators' chunk loops: the caller's thread count or one thread, whichever runs faster."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

__all__ = ["AdaptiveThreads", "ThreadPreference", "fixed", "preference", "preferred"]


@dataclass
class ThreadPreference:
    """What this process has measured so far: the faster setting, and how long ago the other was measured.

    Attributes:
        threads: The thread count that ran faster when last measured (None: not measured yet).
        caller: The caller's thread count it was measured against.
        since: Chunks run at ``threads`` since the other setting was last measured.
        interval: Chunks at ``threads`` before the other setting is measured again (None: the
            policy's first interval); it doubles each time a measurement confirms the choice.
        seconds: Seconds per sample of each setting when last measured, for chunks of ``size``.
        size: Samples per chunk of the loop that measured ``seconds``.
    """

    threads: int | None = None
    caller: int | None = None
    since: int = 0
    interval: int | None = None
    seconds: dict[int, float] = field(default_factory=dict)
    size: int | None = None


#: The process's measured preference, shared by every loop (an estimate is many loops: one per batch).
preference = ThreadPreference()

#: The caller's thread count while :func:`preferred` runs an estimate at one thread (else None).
_caller: contextvars.ContextVar[int | None] = contextvars.ContextVar("lvm_caller_threads", default=None)

#: True inside :func:`fixed`: the policy leaves the thread count alone.
_fixed: contextvars.ContextVar[bool] = contextvars.ContextVar("lvm_fixed_threads", default=False)


@contextlib.contextmanager
def fixed() -> Iterator[None]:
    """Run estimates inside the block at the caller's thread count, without the policy.

    For a caller who has set ``torch.set_num_threads`` for a reason of their own, and for
    benchmarks that compare the policy with a fixed count (``benchmarks/bench_threads.py``).
    """
    token = _fixed.set(True)
    try:
        yield
    finally:
        _fixed.reset(token)


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
    pref = preference
    if caller == 1 or _fixed.get() or _caller.get() is not None or pref.threads != 1 or pref.caller != caller:
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
      (unmeasured: first-touch allocation), chunk 1 at one thread and chunks 2 and 3 at the
      caller's count, and keeps the faster per sample (:data:`preference`);
    - after that, chunks run at the preferred setting, and the other is measured again (one
      thread on one chunk, the caller's count on two, whose first after the change runs slower),
      followed by one chunk at the preferred setting; each counts with its best chunk of the
      measurement (the preferred one also with its chunk before), so one chunk slowed or sped
      up by a passing job does not decide alone (:meth:`_measure`, :meth:`_choice`);
    - the other setting is measured after ``interval`` chunks, then after twice as many each
      time the measurement confirms the choice (up to ``max_interval``), and again after
      ``interval`` once the choice changes; so a choice made under a passing load is undone
      within ``interval`` chunks, and a lasting one costs a vanishing share of the chunks;
    - the load changing the preferred setting's time per sample (against its best since the
      last measurement, or as last measured on chunks of the same size) measures the other
      setting at once when the change could reverse the choice (:meth:`_probe`): the caller's
      count slowing by ``slowdown``, or one thread speeding up by ``speedup``. Chunk 0 of every
      loop is not measured: it touches the loop's buffers first and runs slower than the rest.

    The thread count the loop found is restored when it ends, however it ends. With one thread,
    fewer than four chunks, or inside :func:`fixed`, a loop runs at the caller's count. The
    numbers do not depend on the setting: torch's CPU kernels give the same results at one and
    two threads for the estimators' shapes (``tests/test_threads.py`` pins this). The
    measurements behind the policy: ``benchmarks/results/threads_*.json`` (``benchmarks/README.md``).

    Args:
        slowdown: The factor on the caller's count's best time per sample (in this loop, or as
            last measured for chunks of this size) that triggers a measurement of one thread.
        speedup: The factor below one thread's best time per sample that triggers a measurement
            of the caller's count; larger than ``slowdown`` because on a crowded machine that
            one chunk can take several times one thread's.
        interval: Chunks at the preferred setting before the other is measured again, after a
            change of choice.
        max_interval: The longest interval, reached by doubling while the choice holds.
        margin: The caller's count stays chosen while its time per sample is below ``margin``
            times one thread's.
        switch_margin: The caller's count is chosen over one thread when its time per sample is
            below ``switch_margin`` times one thread's: on an idle 2-core machine it is about 0.6,
            and with 0.9 one lucky chunk beside two busy neighbours chose it
            (``benchmarks/results/threads_importance_k1000_busy2_lucky.json``).
    """

    def __init__(
        self,
        slowdown: float = 1.5,
        speedup: float = 2.0,
        interval: int = 8,
        max_interval: int = 256,
        margin: float = 0.9,
        switch_margin: float = 0.75,
    ) -> None:
        self.slowdown, self.speedup = slowdown, speedup
        self.margin, self.switch_margin = margin, switch_margin
        self.interval, self.max_interval = interval, max_interval
        self.caller = _caller.get() or torch.get_num_threads()
        #: The thread count of each chunk run so far, in order (for tests and benchmarks).
        self.history: list[int] = []

    def loop(self, sizes: list[int], start: int = 0) -> Iterator[int]:
        """Yield ``start`` + the index of each chunk of ``sizes`` (samples per chunk), run at the
        thread count this policy chose, and restore the caller's count at the end."""
        if self.caller == 1 or len(sizes) < 4 or _fixed.get():
            self.history.extend([torch.get_num_threads()] * len(sizes))
            yield from range(start, start + len(sizes))
            return
        entry = torch.get_num_threads()  # restored at the end: the caller's, or 1 under preferred()
        pref = preference
        if pref.caller != self.caller:  # measured against another count: measure again
            pref.threads, pref.caller, pref.since, pref.interval = None, self.caller, 0, None
        if pref.size != sizes[0]:  # other work: the times measured before do not compare
            pref.seconds, pref.size = {}, sizes[0]
        plan = self._measure(None) if pref.threads is None else []  # chunk 0 is not measured
        last: dict[int, float] = {}  # this loop's latest time per sample, by setting
        best: dict[int, float] = {}  # and its best since the last decision
        trial: dict[int, float] = {}  # the best chunk of each setting in the measurement under way
        try:
            for i, size in enumerate(sizes):
                if not plan and i > 0 and pref.threads is not None and pref.since >= self._interval(pref):
                    plan = self._measure(pref.threads)  # the interval is up
                    trial = {pref.threads: last[pref.threads]} if pref.threads in last else {}
                measuring = bool(plan)
                threads = plan.pop(0) if plan else pref.threads
                assert threads is not None
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                self.history.append(threads)
                began = time.perf_counter()
                yield start + i
                per_sample = (time.perf_counter() - began) / max(size, 1)
                if i == 0:
                    continue  # first touch of the loop's buffers: slower than the chunks after it
                reference = best.get(threads, pref.seconds.get(threads))  # this loop's, else earlier loops'
                last[threads], best[threads] = per_sample, min(best.get(threads, per_sample), per_sample)
                if measuring:
                    trial[threads] = min(trial.get(threads, per_sample), per_sample)
                    if not plan and len(trial) == 2:
                        self._decide(pref, trial)
                        best, trial = dict(last), {}  # the load now: what later chunks are compared with
                else:
                    pref.since += 1
                    if reference is not None:
                        plan = self._probe(threads, per_sample, reference)
                        trial = {threads: per_sample}
        finally:
            if torch.get_num_threads() != entry:
                torch.set_num_threads(entry)

    def _measure(self, threads: int | None) -> list[int]:
        """The chunks that measure the other setting: it, then the current one ``threads`` again.

        The caller's count runs two chunks: the first after a change to it runs slower, while its
        threads wake and fill their caches, and measured on it alone an idle machine stayed at
        one thread (``benchmarks/results/threads_importance_k1000_busy0_transition.json``). The
        process's first loop measures one thread on chunk 1 and the caller's count on chunks 2
        and 3 (chunk 0 is not measured). Each setting counts with its best chunk of the
        measurement, and the current one also with its chunk before it.
        """
        if threads is None:
            return [1, 1, self.caller, self.caller]
        return [self.caller, self.caller, 1] if threads == 1 else [1, threads]

    def _decide(self, pref: ThreadPreference, trial: dict[int, float]) -> None:
        """Choose on a measurement's best chunks; the interval doubles if the choice held.

        The best chunk of each, so that one chunk slowed by a passing job, at either setting,
        does not change the choice.
        """
        choice = self._choice(trial, pref.threads)
        held = choice == pref.threads
        pref.interval = min(2 * self._interval(pref), self.max_interval) if held else self.interval
        pref.threads, pref.seconds, pref.since = choice, dict(trial), 0

    def _interval(self, pref: ThreadPreference) -> int:
        return self.interval if pref.interval is None else pref.interval

    def _probe(self, threads: int, per_sample: float, reference: float) -> list[int]:
        """Measure the other setting when the load has changed this one's time its way, else nothing.

        A chunk at the caller's count that slowed by ``slowdown`` (neighbours arrived) measures
        one thread, then the caller's count again, and the measurement decides: one slow chunk
        may be a passing job, and choosing one thread on it (against a one-thread chunk measured
        before) left an idle machine at one thread
        (``benchmarks/results/threads_importance_k1000_busy0_stuck.json``). A chunk at one
        thread that slowed measures nothing: more load only makes more threads slower, and
        measuring them is the one expensive chunk (measuring them on every slowdown ran AIS
        beside a spinning neighbour at 1.73x one thread's time, median of 3 rounds, against
        1.02x without: ``benchmarks/results/threads_ais_k100_busy1_{before,after}.json``). A
        chunk at one thread that sped up by ``speedup`` (the load dropped) measures the
        caller's count.
        """
        if threads != 1:
            return self._measure(threads) if per_sample > self.slowdown * reference else []
        return self._measure(threads) if per_sample * self.speedup < reference else []

    def _choice(self, last: dict[int, float], current: int | None) -> int:
        """The setting that ran faster per sample.

        Several threads must beat one by ``margin`` to stay chosen, and by ``switch_margin`` to
        be chosen over one thread: a wrong choice of them can cost several times the time on a
        crowded machine, where one lucky chunk at several threads happens; a wrong choice of one
        costs at most the thread count's speed-up until the next measurement.
        """
        margin = self.margin if current == self.caller else self.switch_margin
        return self.caller if last[self.caller] < margin * last[1] else 1
