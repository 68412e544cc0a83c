"""A factorised Laplace likelihood for lvm, shipped as a plugin through the ``lvm.likelihoods`` entry point."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor
from torch.distributions import Distribution
from torch.distributions import Laplace as _Laplace

from lvm.likelihoods import Likelihood, ParamSpec

__all__ = ["Laplace"]


class Laplace(Likelihood):
    r"""Factorised Laplace, p(x | z) = prod_j 1 / (2 b_j) exp(-|x_j - mu_j(z)| / b_j).

    log p = -|x - mu| / b - log(2 b), per element. The location mu is the decoder output
    (identity link); the scale is b = softplus(f) + 1e-3, predicted per element. Heavier tails
    than the Gaussian, so the reconstruction term is an L1 loss rather than a squared one.

    Registered by the entry point ``laplace = "lvm_laplace:Laplace"`` in the group
    ``lvm.likelihoods``; ``lvm`` imports this module only when ``laplace`` is first used.
    """

    name: ClassVar[str] = "laplace"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("loc", "identity"),
        ParamSpec("scale", "softplus", 1e-3),
    )
    support: ClassVar[str] = "(-inf, inf)"

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return _Laplace(loc, scale, validate_args=False)
