"""The one place where lvm touches a private name of a dependency: a measured speed device, feature-checked.

Every name here is private to torch and may move in any release. Each device checks for the
name when lvm is imported and, where it is gone, leaves torch's public behaviour in place:
slower at worst, never wrong, never a crash. ``tests/test_compat.py`` says which path runs.
"""

from __future__ import annotations

import torch

__all__ = ["ACCELERATOR_PROBE", "SKIPS_CPU_ACCELERATOR_PROBE", "SkipCPUAcceleratorProbe"]

#: The method torch's optimisers call at the start of every ``step`` to refuse a step inside a
#: CUDA graph capture that was not built for one (recent torch; older releases call it
#: ``_cuda_graph_capture_health_check``, which this device leaves alone).
ACCELERATOR_PROBE = "_accelerator_graph_capture_health_check"

#: Whether this torch has the probe, so that :class:`SkipCPUAcceleratorProbe` takes effect.
SKIPS_CPU_ACCELERATOR_PROBE: bool = callable(getattr(torch.optim.Optimizer, ACCELERATOR_PROBE, None))


class SkipCPUAcceleratorProbe:
    """Optimizer mixin: skip torch's per-step graph-capture probe while every parameter is on the CPU.

    The probe asks ``torch.accelerator.current_accelerator(check_available=True)``. Where a CUDA
    build of torch runs without an NVIDIA driver (``pip install torch`` on a CPU-only Linux
    machine) and Lightning's import has set ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, that retries
    loading NVML at every step. No CUDA graph captures a step over CPU tensors, so the answer is
    known without asking. Parameters on any other device get torch's probe unchanged; where
    torch has no such method (:data:`SKIPS_CPU_ACCELERATOR_PROBE` false), this class changes
    nothing. Measured with ``benchmarks/bench_adam.py --threads 1`` under load on a shared 2-core
    AMD EPYC (CUDA build of torch 2.14.1, no driver, Lightning imported; 11 and 9 interleaved
    rounds): 300 fused Adam steps took 0.171 s of CPU against torch's 0.265 s (ratio median 1.52,
    quartiles 1.39-1.66), and whole training steps of the reference VAE (batch 100) a median 1.10
    less CPU time (quartiles 0.97-1.11; wall 1.02, 0.95-1.16); ``benchmarks/results/adam_*under_load*``.
    """

    param_groups: list[dict]

    def _accelerator_graph_capture_health_check(self) -> None:
        if SKIPS_CPU_ACCELERATOR_PROBE and all(
            p.device.type == "cpu" for group in self.param_groups for p in group["params"]
        ):
            return
        getattr(super(), ACCELERATOR_PROBE)()
