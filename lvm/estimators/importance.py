"""Importance sampling of log p(x), by default with the amortised posterior q(z | x) as proposal."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from lvm.estimators.base import Estimate, Estimator
from lvm.estimators.diagnostics import LogWeights
from lvm.estimators.proposals import Proposal, check_proposal
from lvm.estimators.registry import register_estimator
from lvm.estimators.sampling import log_density

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["ImportanceSampling"]


@register_estimator("importance")
class ImportanceSampling(Estimator):
    r"""log p-hat(x) = log (1/K) sum_k p(x | z_k) p(z_k) / r(z_k | x), z_k ~ r(z | x).

    The importance-sampling estimate that Burda, Grosse & Salakhutdinov (2016, section 5) use
    to evaluate log p(x) with K = 5000, r = q(z | x). Its expectation is the IWAE bound
    L_K <= log p(x), which is >= the ELBO and increases to log p(x) as K grows; with the exact
    posterior as proposal every weight equals p(x) and the estimate is exact for any K. The log
    weights log w = log p(x | z) + log p(z) - log r(z | x) are combined with a streaming
    logsumexp (:class:`~lvm.estimators.diagnostics.LogWeights`), which also gives the ESS,
    Var[log w], the Monte Carlo standard error and the Pareto k of the weights.

    The proposal r (:class:`~lvm.estimators.proposals.Proposal`) is q (``posterior``), the
    prior, the defensive mixture alpha q + (1 - alpha) p(z) (Hesterberg 1995), or a Student t
    with q's location, ``widen`` times q's scale and ``df`` degrees of freedom: heavier tails
    than q bound the weights where q is too narrow.

    Args:
        num_samples: K.
        chunk_size: Samples per chunk (None: automatic).
        proposal: One of ``posterior``, ``prior``, ``defensive``, ``student_t``.
        alpha: Weight of q in the defensive mixture, in (0, 1].
        df: Degrees of freedom of the Student t, a positive integer.
        widen: Factor on q's scale for the Student t.

    Raises:
        ValueError: for an unknown proposal (listing the allowed ones) or an option out of range.
    """

    name: ClassVar[str] = "importance"

    def __init__(
        self,
        num_samples: int = 1,
        chunk_size: int | None = None,
        proposal: str = "posterior",
        alpha: float = 0.5,
        df: int = 5,
        widen: float = 1.0,
    ) -> None:
        super().__init__(num_samples, chunk_size)
        check_proposal(proposal, alpha, df, widen)
        self.proposal, self.alpha, self.df, self.widen = proposal, alpha, df, widen

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        prior = model.prior()
        q = model.posterior(x)  # batch (B,), event (L,)
        r = Proposal(self.proposal, q, prior, index, seed, self.alpha, self.df, self.widen)
        log_prior = log_density(prior)
        acc = LogWeights(self.num_samples)
        for start, count in self.chunks(model, x):
            z, log_r = r.sample(start, count)  # (C, B, L), (C, B)
            acc.update(model.observation(z).log_prob(x) + log_prior(z) - log_r)  # log w, (C, B)
        return acc.estimate()

    def __repr__(self) -> str:
        return (
            f"ImportanceSampling(num_samples={self.num_samples}, chunk_size={self.chunk_size}, "
            f"proposal={self.proposal!r})"
        )
