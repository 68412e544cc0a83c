"""The support of an elementwise distribution, read from its ``torch.distributions`` constraint."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

__all__ = ["Support", "support_of"]

#: Below this many values an integer interval is summed exactly instead of to a tail tolerance.
_MAX_FINITE = 100_000


def _bound(value: object, name: str) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1 and not bool((value == value.reshape(-1)[0]).all()):
            raise AssertionError(
                f"support: the {name} of the support differs between elements; the kit needs one"
            )
        value = value.reshape(-1)[0].item()
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Support:
    """Where an element lives, and how the kit walks it.

    Continuous supports are mapped onto the real line for quadrature, x = x(u):
    ``real`` x = sinh(u) (so an algebraic tail, Student t's, decays exponentially in u); ``positive`` x = lower + e^u; ``negative`` x = upper - e^u; ``interval``
    x = lower + (upper - lower) sigma(u). Discrete ones are ``finite`` (``values`` listed) or
    ``integer`` (lower, lower + 1, ... without end).

    Attributes:
        kind: One of ``real``, ``positive``, ``negative``, ``interval``, ``finite``, ``integer``.
        lower: Infimum of the support (-inf if none).
        upper: Supremum of the support (inf if none).
        values: The support values of a finite support, sorted, float64.
    """

    kind: str
    lower: float = -math.inf
    upper: float = math.inf
    values: Tensor | None = None

    @property
    def discrete(self) -> bool:
        return self.kind in ("finite", "integer")

    # -- continuous: the map onto the real line --------------------------------------------
    def x_of_u(self, u: Tensor) -> Tensor:
        if self.kind == "real":
            return torch.sinh(u)
        if self.kind == "positive":
            return self.lower + u.exp()
        if self.kind == "negative":
            return self.upper - u.exp()
        return self.lower + (self.upper - self.lower) * torch.sigmoid(u)

    def log_jacobian(self, u: Tensor) -> Tensor:
        """log |dx / du|.

        log(1 + e^{-a}) with a clamped at 700: past it the term is below 1e-304, and exp is many
        times slower on arguments whose result is subnormal.
        """
        if self.kind in ("positive", "negative"):
            return u
        a = u.abs()
        if self.kind == "real":  # log cosh u
            return a + torch.log(1 + torch.exp(-2 * a.clamp(max=350))) - math.log(2)
        # log sigma(u) + log sigma(-u)
        return math.log(self.upper - self.lower) - a - 2 * torch.log(1 + torch.exp(-a.clamp(max=700)))

    def u_of_x(self, x: Tensor) -> Tensor:
        if self.kind == "real":
            return torch.asinh(x)
        if self.kind == "positive":
            return (x - self.lower).log()
        if self.kind == "negative":
            return (self.upper - x).log()
        return (x - self.lower).log() - (self.upper - x).log()

    def u_range(self) -> tuple[float, float]:
        """The u over which x(u) is computed to 1e-7 relative accuracy of its distance to the bounds in float64.

        Beyond them the kit extends the density in u exponentially (a power law in x at a bound).
        """
        if self.kind == "real":
            return -700.0, 700.0
        if self.kind in ("positive", "negative"):
            bound = self.lower if self.kind == "positive" else self.upper
            lo = -700.0 if bound == 0 else math.log(1e-9 * abs(bound))
            return lo, 690.0
        width = self.upper - self.lower
        rel = 1e-9 * max(1.0, abs(self.lower), abs(self.upper)) / width
        lo = -700.0 if self.lower == 0 else math.log(rel)
        hi = -700.0 if self.upper == 0 else math.log(rel)
        return lo, -hi

    # -- values for the checks ---------------------------------------------------------------
    def inside(self) -> list[float]:
        """Data values in the hull of the support, bounds included (the likelihood's ``check`` decides)."""
        if self.kind == "finite":
            v = self.values.tolist()
            return sorted({v[0], v[min(1, len(v) - 1)], v[len(v) // 2], v[-1]})
        if self.kind == "integer":
            return [self.lower + k for k in (0, 1, 2, 5, 30, 1000)]
        if self.kind == "real":
            return [-100.0, -3.0, -0.5, 0.0, 0.5, 3.0, 100.0]
        if self.kind == "positive":
            return [self.lower + d for d in (0.0, 1e-4, 0.1, 1.0, 10.0, 1e3)]
        if self.kind == "negative":
            return [self.upper - d for d in (0.0, 1e-4, 0.1, 1.0, 10.0, 1e3)]
        w = self.upper - self.lower
        return [self.lower + w * f for f in (0.0, 1e-4, 0.25, 0.5, 0.75, 1 - 1e-4, 1.0)]

    def outside(self) -> list[float]:
        """Values outside the hull of the support, which ``check`` must reject naming them."""
        out = []
        if math.isfinite(self.lower):
            out.append(
                self.lower
                - (1.0 if self.discrete or not math.isfinite(self.upper) else (self.upper - self.lower) / 2)
            )
        if math.isfinite(self.upper):
            out.append(
                self.upper
                + (1.0 if self.discrete or not math.isfinite(self.lower) else (self.upper - self.lower) / 2)
            )
        return out

    def off_lattice(self) -> float | None:
        """A value between the first two support values of a discrete support, None for continuous ones."""
        if self.kind == "integer":
            return self.lower + 0.5
        if self.kind == "finite" and len(self.values) > 1:  # type: ignore[arg-type]
            v = self.values.tolist()
            return (v[0] + v[1]) / 2
        return None


def support_of(dist: Distribution) -> Support:
    """The :class:`Support` of an elementwise distribution (batch shape only, event shape ``()``).

    Finite supports come from ``enumerate_support``; others from the ``support`` constraint
    (``real``, ``positive``, ``greater_than``, ``less_than``, ``interval``, ``unit_interval``,
    ``nonnegative_integer``, ``integer_interval``, ``boolean``).

    Raises:
        AssertionError: for a constraint the kit cannot walk, naming it.
    """
    if dist.has_enumerate_support:
        values = dist.enumerate_support(expand=False).reshape(-1).double().unique()
        return Support("finite", values[0].item(), values[-1].item(), values)
    c = dist.support
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    lo = _bound(getattr(c, "lower_bound", -math.inf), "lower bound")
    hi = _bound(getattr(c, "upper_bound", math.inf), "upper bound")
    if c.is_discrete:
        if isinstance(c, type(constraints.boolean)):
            lo, hi = 0.0, 1.0
        if not math.isfinite(lo):
            raise AssertionError(
                f"support: the kit cannot walk {c!r}, an integer support without a lower bound"
            )
        if math.isfinite(hi) and hi - lo < _MAX_FINITE:
            values = torch.arange(lo, hi + 1, dtype=torch.float64)
            return Support("finite", lo, hi, values)
        return Support("integer", lo, math.inf)
    if math.isfinite(lo) and math.isfinite(hi):
        return Support("interval", lo, hi)
    if math.isfinite(lo):
        return Support("positive", lo)
    if math.isfinite(hi):
        return Support("negative", upper=hi)
    return Support("real")
