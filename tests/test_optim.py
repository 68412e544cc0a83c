"""lvm.optim.Adam: torch's Adam update, without the per-step accelerator probe on CPU parameters."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from lvm.optim import Adam


def _steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, n: int = 5) -> None:
    for _ in range(n):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()


def test_steps_match_torch_adam() -> None:
    torch.manual_seed(0)
    ours, x = nn.Linear(6, 3), torch.randn(8, 6)
    theirs, start = copy.deepcopy(ours), ours.weight.detach().clone()
    _steps(ours, Adam(ours.parameters(), lr=0.1, betas=(0.8, 0.99), eps=1e-6), x)
    _steps(theirs, torch.optim.Adam(theirs.parameters(), lr=0.1, betas=(0.8, 0.99), eps=1e-6), x)
    assert (ours.weight - start).abs().min() > 0.01  # the five steps moved every weight
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_cpu_step_does_not_probe_for_an_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    probe = torch.accelerator.current_accelerator

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return probe(*args, **kw)

    monkeypatch.setattr(torch.accelerator, "current_accelerator", counting)
    model, x = nn.Linear(4, 2), torch.randn(3, 4)
    _steps(model, torch.optim.Adam(model.parameters()), x, n=2)
    assert len(calls) >= 2  # torch's own Adam probes once a step
    calls.clear()
    _steps(model, Adam(model.parameters()), x, n=2)
    assert calls == []


def test_parameter_groups_keep_their_own_settings() -> None:
    torch.manual_seed(0)
    ours, x = nn.Linear(6, 3), torch.randn(8, 6)
    theirs = copy.deepcopy(ours)
    _steps(ours, Adam([{"params": ours.weight}, {"params": iter([ours.bias]), "lr": 0.5}], lr=0.1), x)
    _steps(
        theirs, torch.optim.Adam([{"params": theirs.weight}, {"params": [theirs.bias], "lr": 0.5}], lr=0.1), x
    )
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
