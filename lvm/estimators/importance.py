"""Importance sampling of log p(x) with the amortised posterior q(z | x) as proposal."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from lvm.estimators.base import Estimate, Estimator
from lvm.estimators.diagnostics import LogWeights
from lvm.estimators.registry import register_estimator
from lvm.estimators.sampling import LatentSampler, log_density

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["ImportanceSampling"]


@register_estimator("importance")
class ImportanceSampling(Estimator):
    r"""log p-hat(x) = log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x), z_k ~ q(z | x).

    The importance-sampling estimate that Burda, Grosse & Salakhutdinov (2016, section 5) use
    to evaluate log p(x) with K = 5000. Its expectation is the IWAE bound L_K <= log p(x),
    which is >= the ELBO and increases to log p(x) as K grows; with the exact posterior as
    proposal every weight equals p(x) and the estimate is exact for any K. The log weights
    log w = log p(x | z) + log p(z) - log q(z | x) are combined with a streaming logsumexp
    (:class:`~lvm.estimators.streaming.LogMeanExp`), which also gives the ESS and Var[log w].

    Args:
        num_samples: K.
        chunk_size: Samples per chunk (None: automatic).
    """

    name: ClassVar[str] = "importance"

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        q = model.posterior(x)  # batch (B,), event (L,)
        log_prior = log_density(model.prior())
        sampler = LatentSampler(q, x.shape[0], index, seed)
        acc = LogWeights(self.num_samples)
        for start, count in self.chunks(model, x):
            z, log_q = sampler.sample(start, count, with_log_prob=True)  # (C, B, L), (C, B)
            assert log_q is not None
            acc.update(model.observation(z).log_prob(x) + log_prior(z) - log_q)  # log w, (C, B)
        return acc.estimate()
