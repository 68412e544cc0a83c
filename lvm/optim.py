"""Optimisers and learning-rate schedulers of lvm's modules: the fused Adam by default, any torch class by path."""

from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from lvm._compat import SkipCPUAcceleratorProbe
from lvm.deprecation import warn_deprecated

__all__ = ["Adam", "IWAESchedule", "build_optimizers", "class_spec", "iwae_lr_factor", "optimizer_settings"]

#: Where a class path without a dot is looked up, per kind.
_SHORT_NAMES = {"optimizer": "torch.optim", "lr_scheduler": "torch.optim.lr_scheduler"}


class Adam(SkipCPUAcceleratorProbe, torch.optim.Adam):
    """``torch.optim.Adam`` (Kingma & Ba 2015, Algorithm 1), fused where every parameter allows.

    The fused kernel updates every parameter in one call, the same update up to float rounding,
    instead of about ten small ops per parameter tensor. On CPU parameters torch's per-step
    accelerator probe is skipped where torch allows it (:class:`lvm._compat.SkipCPUAcceleratorProbe`;
    the timing: ``benchmarks/results/adam.json``, ``benchmarks/README.md``).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        groups: list[Any] = [
            _materialise(g) for g in params
        ]  # tensors, or parameter groups as torch takes them
        tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
        b1, b2 = betas
        super().__init__(groups, lr=lr, betas=(b1, b2), eps=eps, fused=fused or None)


def _materialise(group: Tensor | dict[str, Any]) -> Tensor | dict[str, Any]:
    """A parameter group's ``params`` as a list (it may be one tensor or a one-pass iterator)."""
    if not isinstance(group, dict):
        return group
    params = group["params"]
    return {**group, "params": [params] if isinstance(params, Tensor) else list(params)}


def iwae_lr_factor(epoch: int) -> float:
    """Burda et al. (2016), sec. 5: epochs [sum_{j<i} 3^j, sum_{j<=i} 3^j) use 10^(-i/7), i = 0..7."""
    i, start = 0, 0
    while i < 7 and epoch >= start + 3**i:
        start += 3**i
        i += 1
    return 10 ** (-i / 7)


class IWAESchedule(LambdaLR):
    """The learning-rate schedule of Burda, Grosse & Salakhutdinov (2016), sec. 5, stepped once per epoch.

    Stage i = 0..7 runs 3^i epochs at lr * 10^(-i/7): 3,280 epochs in all, then the last rate
    stays. ``lvm fit --lr_scheduler lvm.optim.IWAESchedule``, or in Python
    ``VAE(lr_scheduler="lvm.optim.IWAESchedule")``.

    Args:
        optimizer: The optimiser whose learning rates it scales.
        last_epoch: As in torch's schedulers (-1: start from the beginning).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, iwae_lr_factor, last_epoch=last_epoch)


def _resolve(path: str, kind: str) -> type:
    module_name, _, name = path.rpartition(".")
    module_name = module_name or _SHORT_NAMES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{kind} {path!r}: cannot import module {module_name!r} ({err})") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        known = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {module_name}.{close[0]}?" if close else ""
        raise ValueError(f"{kind} {path!r}: module {module_name!r} has no class {name!r}.{hint}")
    return cls


def class_spec(value: Any, kind: str) -> dict[str, Any] | None:
    """A torch optimiser or scheduler as ``{"class_path": ..., "init_args": {...}}``, checked, or None.

    ``value`` is None, a class, a class path (``"torch.optim.SGD"``; a bare name is looked up in
    ``torch.optim`` or ``torch.optim.lr_scheduler``), or a mapping with ``class_path`` and
    optional ``init_args`` (LightningCLI's form). The result holds only plain values, so it is
    saved with the hyperparameters and read back with ``torch.load(weights_only=True)``.

    Args:
        value: The optimiser or scheduler.
        kind: ``"optimizer"`` or ``"lr_scheduler"``.

    Raises:
        ValueError: for a class that cannot be found, or that is not a torch optimiser (scheduler).
        TypeError: for init arguments the class does not take.
    """
    if value is None:
        return None
    if hasattr(value, "as_dict"):  # a jsonargparse Namespace, as LightningCLI links it
        value = value.as_dict()
    if isinstance(value, type):
        value = f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, str):
        value = {"class_path": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("class_path"), str):
        raise ValueError(
            f"{kind} must be a class path or {{'class_path': ..., 'init_args': {{...}}}}; got {value!r}"
        )
    unknown = set(value) - {"class_path", "init_args"}
    if unknown:
        raise ValueError(f"{kind} takes keys class_path and init_args; got {sorted(unknown)}")
    init_args = dict(value.get("init_args") or {})
    cls = _resolve(value["class_path"], kind)
    base: tuple[type, ...] = (
        (torch.optim.Optimizer,)
        if kind == "optimizer"
        else (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    )
    if not issubclass(cls, base):
        raise ValueError(f"{kind} {value['class_path']!r} is not a subclass of {base[0].__qualname__}")
    try:
        inspect.signature(cls).bind(None, **init_args)  # the parameters (optimizer) come first
    except TypeError as err:
        raise TypeError(f"{kind} {value['class_path']}: {err}; got init_args {init_args}") from None
    if issubclass(cls, torch.optim.lr_scheduler.ReduceLROnPlateau) and "monitor" not in init_args:
        raise ValueError(
            f"lr_scheduler {value['class_path']!r} needs the metric it watches: use "
            f"lightning.pytorch.cli.ReduceLROnPlateau with init_args monitor (e.g. val/elbo) and mode max"
        )
    return {"class_path": value["class_path"], "init_args": init_args}


def optimizer_settings(
    optimizer: Any,
    lr_scheduler: Any,
    lr_schedule: str = "constant",
    *,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A module's ``optimizer`` and ``lr_scheduler`` as :func:`class_spec` dicts, checked before any step.

    ``lr_schedule="iwae"`` (deprecated) becomes the scheduler :class:`IWAESchedule`. ``lr``,
    ``betas`` and ``eps`` configure the default :class:`Adam` only: set to other values beside an
    ``optimizer``, they are unused, and a warning says so.

    Raises:
        ValueError, TypeError: as :func:`class_spec`; ValueError for ``lr_schedule="iwae"`` beside
            an ``lr_scheduler``.
    """
    opt, sched = class_spec(optimizer, "optimizer"), class_spec(lr_scheduler, "lr_scheduler")
    if lr_schedule == "iwae":
        if sched is not None:
            raise ValueError(
                f"give lr_scheduler or the deprecated lr_schedule='iwae', not both; got lr_scheduler "
                f"{sched['class_path']!r}"
            )
        warn_deprecated(
            "lr_schedule='iwae'",
            "lr_scheduler='lvm.optim.IWAESchedule' (lvm fit: --lr_scheduler lvm.optim.IWAESchedule)",
            since="0.2.0",
            stacklevel=4,
        )
        sched = class_spec(IWAESchedule, "lr_scheduler")
    if opt is not None:
        given = {"lr": lr, "betas": tuple(float(b) for b in betas), "eps": eps}
        unused = [k for k, v in given.items() if v != _ADAM_DEFAULTS[k]]
        if unused:
            settings = ", ".join(f"{k}={given[k]}" for k in unused)
            warnings.warn(
                f"{settings}: for lvm's default Adam, not used with optimizer {opt['class_path']}; "
                f"set the optimizer's own in its init_args",
                UserWarning,
                stacklevel=3,
            )
    return opt, sched


_ADAM_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def _instantiate(spec: Mapping[str, Any], first: Any, kind: str) -> Any:
    return _resolve(spec["class_path"], kind)(first, **spec["init_args"])


def build_optimizers(
    params: Iterable[Tensor],
    optimizer: Mapping[str, Any] | None,
    lr_scheduler: Mapping[str, Any] | None,
    default: dict[str, Any],
) -> Any:
    """What ``configure_optimizers`` returns: ``optimizer`` (default: :class:`Adam` with ``default``
    keyword arguments), and ``lr_scheduler`` on it, stepped once per epoch as LightningCLI does.

    Args:
        params: The module's parameters.
        optimizer: A :func:`class_spec` of an optimiser, or None for :class:`Adam`.
        lr_scheduler: A :func:`class_spec` of a scheduler, or None for a constant rate.
        default: Keyword arguments of the default :class:`Adam` (``lr``, ``betas``, ``eps``).

    Returns:
        The optimiser, or ``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., ...}}``.
    """
    opt = Adam(params, **default) if optimizer is None else _instantiate(optimizer, params, "optimizer")
    if lr_scheduler is None:
        return opt
    sched = _instantiate(lr_scheduler, opt, "lr_scheduler")
    config: dict[str, Any] = {"scheduler": sched, "interval": "epoch"}
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = lr_scheduler["init_args"]["monitor"]
    return {"optimizer": opt, "lr_scheduler": config}
