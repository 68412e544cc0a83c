"""The estimators' thread policy: the faster of the caller's thread count and one thread, the caller's
setting restored, and the same numbers either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from lvm.estimators import create_estimator
from lvm.estimators import threads as threads_module
from lvm.estimators.threads import AdaptiveThreads
from lvm.model import LatentVariableModel


@pytest.fixture
def two_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two torch threads, and a process that has measured nothing yet."""
    monkeypatch.setattr(threads_module, "preference", threads_module.ThreadPreference())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class FakeClock:
    """``time.perf_counter`` whose chunks take ``cost(threads, chunk)`` seconds per sample."""

    def __init__(self, cost) -> None:
        self.now, self.cost, self.chunk = 0.0, cost, 0

    def __call__(self) -> float:
        return self.now

    def run(self, policy: AdaptiveThreads, sizes: list[int]) -> None:
        for i in policy.loop(sizes):
            self.now += self.cost(torch.get_num_threads(), i) * sizes[i]


def fake_clock(monkeypatch: pytest.MonkeyPatch, cost) -> FakeClock:
    """A :class:`FakeClock` that the policy reads as ``time.perf_counter``."""
    clock = FakeClock(cost)
    monkeypatch.setattr(threads_module.time, "perf_counter", clock)
    return clock


def one_thread_was_chosen(seconds: dict[int, float]) -> threads_module.ThreadPreference:
    """The process's preference as if a loop of chunks of 10 samples had chosen one thread."""
    pref = threads_module.preference
    pref.threads, pref.caller, pref.seconds, pref.size = 1, 2, seconds, 10
    return pref


def test_one_thread_is_chosen_when_it_is_faster_and_the_callers_setting_comes_back(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a machine with busy neighbours
    clock = fake_clock(monkeypatch, lambda threads, i: 5.0 if threads == 2 else 1.0)
    policy = AdaptiveThreads()
    clock.run(policy, [10] * 8)
    assert policy.history == [1, 1, 2, 2, 1, 1, 1, 1]  # two chunks at the slow setting
    assert torch.get_num_threads() == 2
    later = AdaptiveThreads()  # the next loop keeps what the first measured
    clock.run(later, [10] * 4)
    assert later.history == [1] * 4


def test_the_other_setting_is_measured_again_at_doubling_intervals_while_the_choice_holds(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, lambda threads, i: 5.0 if threads == 2 else 1.0)
    clock.run(policy := AdaptiveThreads(interval=2, max_interval=8), [10] * 24)
    # after each decision 2 chunks, then 4, then 8 (the longest) at one thread before two threads
    # are measured again, each time followed by one thread, the pair that decides
    assert policy.history == [1, 1, 2, 2] + [1] * 2 + [2, 2, 1] + [1] * 4 + [2, 2, 1] + [1] * 8
    assert threads_module.preference.interval == 8


def test_an_idle_machine_left_at_one_thread_goes_back_to_the_callers_count(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread was chosen under a load that has gone: two threads are now twice as fast, but
    # for the first chunk after the change to them (their threads wake and fill their caches)
    pref = one_thread_was_chosen({1: 2.0, 2: 5.0})
    clock = fake_clock(monkeypatch, lambda threads, i: (1.8 if i == 4 else 1.0) if threads == 2 else 2.0)
    clock.run(policy := AdaptiveThreads(interval=3), [10] * 8)
    assert policy.history == [1, 1, 1, 1, 2, 2, 1, 2] and pref.threads == 2


def test_one_slow_chunk_at_the_callers_count_does_not_decide_alone(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an idle machine where one chunk at two threads is slowed by a passing job
    clock = fake_clock(monkeypatch, lambda threads, i: (3.0 if i == 4 else 1.0) if threads == 2 else 2.0)
    clock.run(policy := AdaptiveThreads(), [10] * 10)
    assert policy.history == [1, 1, 2, 2, 2, 1, 2, 2, 2, 2]  # one thread, then two threads again
    assert threads_module.preference.threads == 2


def test_a_lucky_chunk_at_two_threads_does_not_switch_a_crowded_machine_to_them(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread is faster (two threads 1.2 per sample), but the chunk that measures two threads
    # is lucky (0.85) and the one-thread chunk after the measurement is slowed (1.5)
    pref = one_thread_was_chosen({1: 1.0, 2: 1.2})
    clock = fake_clock(
        monkeypatch,
        lambda threads, i: (0.85 if i == 4 else 1.2) if threads == 2 else (1.5 if i == 6 else 1.0),
    )
    clock.run(policy := AdaptiveThreads(interval=3), [10] * 8)
    assert policy.history == [1, 1, 1, 1, 2, 2, 1, 1] and pref.threads == 1


def test_fixed_leaves_the_thread_count_alone(two_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = fake_clock(monkeypatch, lambda threads, i: 5.0 if threads == 2 else 1.0)
    clock.run(AdaptiveThreads(), [10] * 6)
    assert threads_module.preference.threads == 1
    with threads_module.fixed():
        clock.run(policy := AdaptiveThreads(), [10] * 6)
        with threads_module.preferred():
            assert torch.get_num_threads() == 2
    assert policy.history == [2] * 6


def test_the_callers_threads_stay_when_faster_and_a_slowdown_is_measured_again(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # idle until chunk 5, then neighbours arrive: two threads become 4x slower than one
    clock = fake_clock(monkeypatch, lambda threads, i: (1.0 if i < 5 else 8.0) if threads == 2 else 2.0)
    policy = AdaptiveThreads()
    clock.run(policy, [10] * 9)
    # chunk 5 slows down; 6 measures one thread, 7 two threads again
    assert policy.history == [1, 1, 2, 2, 2, 2, 1, 2, 1]
    assert torch.get_num_threads() == 2


def test_nothing_changes_with_one_thread_or_few_chunks(two_threads: None) -> None:
    policy = AdaptiveThreads()
    assert list(policy.loop([5, 5, 5])) == [0, 1, 2] and policy.history == [2, 2, 2]
    torch.set_num_threads(1)
    policy = AdaptiveThreads()
    list(policy.loop([5] * 6))
    assert policy.history == [1] * 6


def test_an_error_in_the_loop_restores_the_callers_threads(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, lambda threads, i: 5.0 if threads == 2 else 1.0)
    with pytest.raises(RuntimeError, match="boom"):
        for i in AdaptiveThreads().loop([10] * 8):
            clock.now += 50.0 if torch.get_num_threads() == 2 else 10.0
            if i == 4:
                assert torch.get_num_threads() == 1 and threads_module.preference.threads == 1
                raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("name", ["importance", "prior", "elbo", "ais"])
def test_estimates_are_the_same_whatever_the_policy_chooses(two_threads: None, name: str) -> None:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "hidden": [32], "activation": "tanh"}
    model = LatentVariableModel.build((64,), 3, encoder=mlp, decoder=mlp, likelihood="bernoulli").eval()
    x = (torch.rand(50, 64) < 0.3).float()
    spec = {"name": name, "num_samples": 40, "chunk_size": 5}
    if name == "ais":
        spec["steps"] = 5
    est = create_estimator(spec)
    index = torch.arange(x.shape[0])
    mixed = est.estimate(model, x, index=index, seed=3).log_px
    torch.set_num_threads(1)
    single = est.estimate(model, x, index=index, seed=3).log_px
    assert torch.equal(mixed, single)


def test_a_setting_that_slowed_since_an_earlier_loop_is_measured_against_the_other(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = {"busy": False}
    clock = fake_clock(
        monkeypatch, lambda threads, i: (8.0 if loads["busy"] else 1.0) if threads == 2 else 2.0
    )
    clock.run(first := AdaptiveThreads(), [10] * 6)
    assert first.history == [1, 1, 2, 2, 2, 2] and threads_module.preference.threads == 2
    loads["busy"] = True  # neighbours arrive between two loops: every chunk at 2 threads is slow
    clock.run(second := AdaptiveThreads(), [10] * 6)
    assert second.history == [2, 2, 1, 2, 1, 1] and threads_module.preference.threads == 1


def test_a_slowdown_at_one_thread_measures_nothing(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread preferred; from chunk 5 a neighbour makes it 3x slower, and two threads stay slower still
    clock = fake_clock(monkeypatch, lambda threads, i: 15.0 if threads == 2 else (1.0 if i < 5 else 3.0))
    clock.run(policy := AdaptiveThreads(), [10] * 9)
    assert policy.history == [1, 1, 2, 2, 1, 1, 1, 1, 1]  # only the first loop's measurement


def test_a_speedup_at_one_thread_measures_the_callers_count_once(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a crowded machine until chunk 5, then idle: two threads become the faster
    clock = fake_clock(
        monkeypatch, lambda threads, i: (8.0 if i < 5 else 0.5) if threads == 2 else (4.0 if i < 5 else 1.0)
    )
    clock.run(policy := AdaptiveThreads(), [10] * 9)
    assert policy.history == [1, 1, 2, 2, 1, 1, 2, 2, 1]  # chunk 5 runs 4x faster; 6 to 8 measure
    assert threads_module.preference.threads == 2


def test_the_slow_first_chunk_of_a_loop_measures_nothing(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunk 0 of every loop touches fresh buffers: 3x slower; two threads are the slower setting throughout
    clock = fake_clock(
        monkeypatch, lambda threads, i: (3.0 if i == 0 else 1.0) * (10.0 if threads == 2 else 1.0)
    )
    clock.run(AdaptiveThreads(interval=100), [10] * 6)
    for _ in range(3):
        clock.run(later := AdaptiveThreads(interval=100), [10] * 6)
        assert later.history == [1] * 6


def test_a_whole_estimate_runs_at_one_thread_once_its_loops_prefer_it(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "hidden": [16], "activation": "tanh"}
    model = LatentVariableModel.build((32,), 2, encoder=mlp, decoder=mlp, likelihood="bernoulli").eval()
    x = (torch.rand(10, 32) < 0.3).float()
    seen: list[tuple[int, int]] = []  # (threads, the loops' caller) when the encoder runs
    posterior = model.posterior

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((torch.get_num_threads(), AdaptiveThreads().caller))
        return posterior(*args, **kwargs)

    monkeypatch.setattr(model, "posterior", spy)
    est = create_estimator({"name": "importance", "num_samples": 40, "chunk_size": 5})
    est.estimate(model, x, seed=0)  # nothing measured yet: the caller's count
    pref = threads_module.preference
    assert seen[-1] == (2, 2) and pref.threads is not None
    pref.threads, pref.caller = 1, 2  # the loops measured one thread faster
    est.estimate(model, x, seed=0)
    assert seen[-1] == (1, 2) and torch.get_num_threads() == 2  # the loops still measure against 2
    with pytest.raises(RuntimeError, match="boom"):
        monkeypatch.setattr(model, "posterior", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        est.estimate(model, x, seed=0)
    assert torch.get_num_threads() == 2
