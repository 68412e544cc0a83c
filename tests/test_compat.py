"""lvm._compat: each device that touches a private name says which path runs here, and both paths are right."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import lvm._compat as compat
from lvm.optim import Adam

HAS_PROBE = callable(getattr(torch.optim.Optimizer, compat.ACCELERATOR_PROBE, None))


def _count_probes(monkeypatch: pytest.MonkeyPatch, opt_cls: type, n: int = 3) -> tuple[int, nn.Module]:
    """Accelerator look-ups during ``n`` steps of ``opt_cls`` on a CPU model, and the model after them."""
    calls: list[Any] = []
    probe = torch.accelerator.current_accelerator if hasattr(torch, "accelerator") else None

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return probe(*args, **kw)  # type: ignore[misc]

    if probe is not None:
        monkeypatch.setattr(torch.accelerator, "current_accelerator", counting)
    torch.manual_seed(0)
    model, x = nn.Linear(4, 2), torch.randn(3, 4)
    opt = (
        opt_cls(model.parameters(), lr=0.1)
        if opt_cls is Adam
        else opt_cls(model.parameters(), lr=0.1, fused=True)
    )
    for _ in range(n):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    monkeypatch.undo()
    return len(calls), model


def test_the_flag_says_whether_this_torch_has_the_probe() -> None:
    assert compat.SKIPS_CPU_ACCELERATOR_PROBE is HAS_PROBE


@pytest.mark.skipif(not HAS_PROBE, reason=f"fallback path: this torch has no {compat.ACCELERATOR_PROBE}")
def test_device_path_a_cpu_step_skips_the_accelerator_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path that runs with this torch: torch's own Adam asks for the accelerator every step, lvm's never."""
    theirs, ref = _count_probes(monkeypatch, torch.optim.Adam)
    ours, model = _count_probes(monkeypatch, Adam)
    assert theirs >= 3 and ours == 0
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fallback_path_is_torchs_probe_and_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the device off (as where torch renames the method), lvm's Adam probes and steps as torch's does."""
    monkeypatch.setattr(compat, "SKIPS_CPU_ACCELERATOR_PROBE", False)
    theirs, ref = _count_probes(monkeypatch, torch.optim.Adam)
    monkeypatch.setattr(compat, "SKIPS_CPU_ACCELERATOR_PROBE", False)
    ours, model = _count_probes(monkeypatch, Adam)
    assert ours == theirs
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_parameters_off_the_cpu_get_torchs_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter on another device (the meta device here) makes the device call torch's method."""
    if not HAS_PROBE:
        pytest.skip(f"fallback path: this torch has no {compat.ACCELERATOR_PROBE}")
    called: list[bool] = []
    monkeypatch.setattr(torch.optim.Adam, compat.ACCELERATOR_PROBE, lambda self: called.append(True))
    opt = Adam([nn.Parameter(torch.zeros(2, device="meta")), nn.Parameter(torch.zeros(2))])
    getattr(opt, compat.ACCELERATOR_PROBE)()
    assert called == [True]
    called.clear()
    cpu_only = Adam([nn.Parameter(torch.zeros(2))])
    getattr(cpu_only, compat.ACCELERATOR_PROBE)()
    assert called == []
