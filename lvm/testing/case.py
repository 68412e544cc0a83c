"""The likelihood under test and what the kit's properties share: raw outputs, messages, the elementwise view."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

from lvm.likelihoods.base import Likelihood
from lvm.testing.integrals import Mass, mass_of
from lvm.testing.support import Support, support_of

__all__ = ["Case", "base_of", "close", "fail", "names"]

#: Per-element properties look at about this many elements (rows of raw outputs x event elements).
_ELEMENTS = 16


def fail(prop: str, message: str) -> NoReturn:
    raise AssertionError(f"{prop}: {message}")


def names(message: str, value: float) -> bool:
    """Whether ``message`` shows ``value`` in one of the usual formats."""
    forms = {f"{value:g}", f"{value:.3g}", f"{value:.4g}", f"{value:.6g}", repr(value), str(value)}
    if float(value).is_integer():
        forms.add(str(int(value)))
    return any(f in message for f in forms)


@dataclass
class Case:
    """The likelihood under test and what the properties share."""

    lik: Likelihood
    options: dict[str, Any]
    seed: int
    false_alarm: float
    tolerance: float
    num_samples: int
    gen: torch.Generator = field(init=False)
    _elementwise: tuple | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)

    @property
    def event(self) -> torch.Size:
        return self.lik.event_shape

    def model(self, dtype: torch.dtype = torch.float64) -> Likelihood:
        return copy.deepcopy(self.lik).to(dtype)

    def typical(self, rows: int) -> Tensor:
        """Raw outputs as a decoder gives them: standard normal, clipped to [-3, 3], float64."""
        return torch.randn(rows, self.lik.raw_size, generator=self.gen, dtype=torch.float64).clamp(-3, 3)

    def describe(self, raw: Tensor, index: int) -> str:
        """The constrained parameters of flat element ``index`` of raw (N, raw_size)."""
        n = self.lik.event_numel
        row, elem = divmod(index, n)
        try:
            params = self.lik.split(raw)
        except Exception:  # noqa: BLE001 - a custom split: show the raw values instead
            return f"raw row {row}, element {elem}"
        shown = []
        for name, t in params.items():
            v = t[row].reshape(n, -1)[elem].tolist()
            shown.append(
                f"{name}={v[0]:.4g}" if len(v) == 1 else f"{name}=[{', '.join(f'{a:.3g}' for a in v)}]"
            )
        return f"element {elem} of raw row {row}: " + ", ".join(shown)

    def elementwise(self) -> tuple[Tensor, Distribution, Support, Tensor, Mass]:
        """(raw, elementwise distribution, support, samples (n, P), mass), computed once."""
        if self._elementwise is None:
            rows = max(1, math.ceil(_ELEMENTS / self.lik.event_numel))
            raw = self.typical(rows)
            base = base_of(self.model()(raw))
            support = support_of(base)
            P = rows * self.lik.event_numel
            with torch.no_grad():
                samples = base.sample((self.num_samples,)).reshape(self.num_samples, P).double()

            def log_prob(x: Tensor) -> Tensor:
                with torch.no_grad():
                    return base.log_prob(x.reshape(len(x), rows, *self.event)).reshape(len(x), P).double()

            self._elementwise = (raw, base, support, samples, mass_of(support, log_prob, samples))
        return self._elementwise


def base_of(dist: Distribution) -> Distribution:
    if not isinstance(dist, Independent) or dist.base_dist.event_shape != ():
        fail(
            "shapes",
            f"forward returned {type(dist).__name__}; the kit checks factorised likelihoods, "
            f"torch.distributions.Independent over an elementwise distribution",
        )
    return dist.base_dist


def close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-9)
