"""Adam as lvm's modules use it: fused where the parameters allow, no CUDA probe per CPU step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Adam"]


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (Kingma & Ba 2015, Algorithm 1), fused where every parameter allows.

    The fused kernel updates every parameter in one call, the same update up to float rounding,
    instead of about ten small ops per parameter tensor.

    Each torch step first checks that no CUDA graph is being captured, which asks whether an
    accelerator is available. Where a CUDA build of torch runs without a driver (``pip install
    torch`` on a CPU-only Linux machine) and Lightning's import has set
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, that retries loading NVML at every step. No CUDA graph
    captures a step over CPU tensors, so the check is skipped while every parameter is on the
    CPU (``benchmarks/bench_adam.py``, ``benchmarks/results/adam.json``). Parameters on any other
    device get torch's check unchanged.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        groups = [_materialise(g) for g in params]  # tensors, or parameter groups as torch takes them
        tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
        super().__init__(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)

    def _accelerator_graph_capture_health_check(self) -> None:
        if any(p.device.type != "cpu" for group in self.param_groups for p in group["params"]):
            super()._accelerator_graph_capture_health_check()


def _materialise(group: Tensor | dict[str, Any]) -> Tensor | dict[str, Any]:
    """A parameter group's ``params`` as a list (it may be one tensor or a one-pass iterator)."""
    if not isinstance(group, dict):
        return group
    params = group["params"]
    return {**group, "params": [params] if isinstance(params, Tensor) else list(params)}
