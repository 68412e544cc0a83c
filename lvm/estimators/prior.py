"""Simple Monte Carlo of log p(x) with samples from the prior."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from lvm.estimators.base import Estimate, Estimator
from lvm.estimators.diagnostics import LogWeights
from lvm.estimators.registry import register_estimator
from lvm.estimators.sampling import LatentSampler

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["PriorMonteCarlo"]


@register_estimator("prior")
class PriorMonteCarlo(Estimator):
    r"""log p-hat(x) = log (1/K) sum_k p(x | z_k), z_k ~ p(z).

    The plain Monte Carlo estimate of p(x) = E_{p(z)}[p(x | z)],
    computed in log space with a streaming logsumexp so that p(x | z) ~ 0.8^784 never
    underflows. Unbiased for p(x) and consistent, but its variance explodes when the posterior
    is much narrower than the prior, so it needs far more samples than
    :class:`~lvm.estimators.importance.ImportanceSampling`; useful with a low-dimensional z and
    as a check that needs no encoder.

    Args:
        num_samples: K.
        chunk_size: Samples per chunk (None: automatic).
    """

    name: ClassVar[str] = "prior"

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        sampler = LatentSampler(model.prior(), x.shape[0], index, seed)
        acc = LogWeights(self.num_samples)
        for start, count in self.chunks(model, x):
            z, _ = sampler.sample(start, count)  # (C, B, L)
            acc.update(model.observation(z).log_prob(x))  # (C, B)
        return acc.estimate()
