"""The likelihood contract: P_d maps decoder outputs to a folded ``torch.distributions`` object."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

__all__ = ["LINKS", "Likelihood", "ParamSpec", "inverse_softplus"]


def inverse_softplus(y: Tensor) -> Tensor:
    """x with softplus(x) = y, stable for large and small y (y > 0)."""
    return y + torch.log(-torch.expm1(-y))


#: Inverse link functions, from an unconstrained decoder output onto a parameter's domain.
LINKS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda t: t,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "exp": torch.exp,
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter predicted by the decoder, one value per data element.

    Attributes:
        name: Keyword of the parameter in :meth:`Likelihood.distribution`.
        link: Inverse link, a key of :data:`LINKS`.
        min: Added after the link (a floor for scales, to keep densities finite).
    """

    name: str
    link: str = "identity"
    min: float = 0.0

    def __post_init__(self) -> None:
        if self.link not in LINKS:
            raise ValueError(f"unknown link {self.link!r}; known: {', '.join(LINKS)}")

    def apply(self, raw: Tensor) -> Tensor:
        out = LINKS[self.link](raw)
        return out + self.min if self.min else out


class Likelihood(nn.Module):
    """Observation model p(x | z): the output head P_d on the decoder body f_d.

    The decoder body f_d produces ``raw_size`` unconstrained numbers per datapoint; the
    likelihood splits them into its parameters (``params``, one value per element of
    ``event_shape`` each), applies each parameter's inverse link and returns a
    ``torch.distributions.Distribution`` whose event dims are folded with ``Independent``, so
    that ``log_prob(x)`` has the batch shape of the decoder output, (S, B) under S latent
    samples. Parameters that do not depend on z (a learned shared scale) are module state.

    Subclasses set ``name``, ``params`` and ``support`` and implement :meth:`distribution`
    and :meth:`support_violation`. Nothing outside a likelihood branches on its name.

    Args:
        event_shape: Shape of one datapoint, e.g. ``(784,)`` or ``(1, 28, 28)``.
    """

    name: ClassVar[str] = "likelihood"
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    support: ClassVar[str] = "real"

    def __init__(self, event_shape: Sequence[int] | int) -> None:
        super().__init__()
        if isinstance(event_shape, int):
            event_shape = (event_shape,)
        self.event_shape = torch.Size(int(s) for s in event_shape)
        if any(s <= 0 for s in self.event_shape):
            raise ValueError(f"{self.name}: event_shape must be positive; got {tuple(event_shape)}")

    # -- sizes -------------------------------------------------------------------------
    @property
    def event_numel(self) -> int:
        return math.prod(self.event_shape)

    @property
    def num_params(self) -> int:
        """Number of decoder-predicted parameters per data element."""
        return len(self.params)

    @property
    def raw_size(self) -> int:
        """Number of unconstrained decoder outputs per datapoint."""
        return self.num_params * self.event_numel

    # -- the contract --------------------------------------------------------------------
    def distribution(self, **params: Tensor) -> Distribution:
        """Elementwise distribution from constrained parameters of shape (*batch, *event)."""
        raise NotImplementedError

    def support_violation(self, x: Tensor) -> str | None:
        """A message describing values of finite ``x`` outside the support, or None."""
        return None

    def split(self, raw: Tensor) -> dict[str, Tensor]:
        """Constrained parameters, each (*batch, *event), from raw (*batch, raw_size)."""
        if raw.shape[-1] != self.raw_size:
            raise ValueError(
                f"{self.name} likelihood expects {self.raw_size} decoder outputs per datapoint "
                f"({self.num_params} parameter(s) x {self.event_numel} elements); "
                f"got raw shape {tuple(raw.shape)}"
            )
        batch = raw.shape[:-1]
        # One parameter: a view, as unbind's backward copies the gradient into a new array (AIS
        # after it: benchmarks/results/ais.json; the paired timing: benchmarks/README.md).
        if self.num_params == 1:
            chunks: tuple[Tensor, ...] = (raw.reshape(*batch, *self.event_shape),)
        else:
            chunks = raw.reshape(*batch, self.num_params, *self.event_shape).unbind(len(batch))
        return {spec.name: spec.apply(c) for spec, c in zip(self.params, chunks)}

    def forward(self, raw: Tensor) -> Distribution:
        """p(x | z) with event dims folded; ``log_prob(x)`` has shape ``raw.shape[:-1]``."""
        return Independent(self.distribution(**self.split(raw)), len(self.event_shape))

    def mean(self, raw: Tensor) -> Tensor:
        """E[x | z], (*batch, *event); for Bernoulli the activation probability."""
        return self(raw).mean

    def raw_from_mean(self, mean: Tensor) -> Tensor | None:
        """Raw decoder output whose distribution has mean ``mean`` (*event), or None.

        Used to initialise the decoder's output bias at the training mean (Burda et al. 2016).
        """
        return None

    def check(self, x: Tensor) -> None:
        """Validate data before training: shape, finiteness, support.

        Raises:
            ValueError: naming the likelihood, the problem and the offending value.
        """
        if not torch.is_tensor(x):
            raise TypeError(f"{self.name} likelihood expects a tensor; got {type(x).__name__}")
        n = len(self.event_shape)
        if x.dim() < n or x.shape[x.dim() - n :] != self.event_shape:
            raise ValueError(
                f"{self.name} likelihood expects data of shape (batch, {', '.join(map(str, self.event_shape))}); "
                f"got {tuple(x.shape)}"
            )
        if not torch.is_floating_point(x):
            x = x.float()
        bad = ~torch.isfinite(x)
        if bad.any():
            idx = bad.nonzero()[0].tolist()
            raise ValueError(
                f"{self.name} likelihood: data contains {int(bad.sum())} non-finite value(s) "
                f"(first: {x[tuple(idx)].item()} at index {idx})"
            )
        msg = self.support_violation(x)
        if msg is not None:
            raise ValueError(f"{self.name} likelihood expects x in {self.support}; {msg}")

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"
