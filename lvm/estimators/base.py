"""The estimator contract: ``Estimator.estimate(model, x) -> Estimate`` with per-datapoint log p(x)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from lvm.estimators.threads import AdaptiveThreads, preferred

if TYPE_CHECKING:
    from lvm.model import LatentVariableModel

__all__ = ["CHUNK_BYTES", "Estimate", "Estimator"]

#: Default budget for one chunk's decoder output (chunk x B x raw_size values); see ``Estimator.chunk_size``.
CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Estimate:
    """Per-datapoint estimates of log p(x), in nats.

    Attributes:
        log_px: The estimate of log p(x), (B,).
        num_samples: Samples of z per datapoint that went into it (exactly the number asked for).
        ess: Effective sample size of the normalised importance weights, (sum w)^2 / sum w^2, (B,),
            or None for an estimator without weights (the ELBO).
        log_weight_var: Sample variance of the log weights, (B,), or None.
        mc_stderr: Monte Carlo standard error of each datapoint's own log p-hat, (B,), or None:
            the delta method on the weights (:func:`~lvm.estimators.diagnostics.mc_stderr`), the
            spread of independent chains for AIS, the grid error for quadrature.
        pareto_k: Shape of a generalised Pareto fit to the largest weights, (B,), or None
            (Vehtari et al., "Pareto smoothed importance sampling"); above 0.7 the weights'
            variance is effectively infinite and ``mc_stderr`` cannot be trusted.
    """

    log_px: Tensor
    num_samples: int
    ess: Tensor | None = None
    log_weight_var: Tensor | None = None
    mc_stderr: Tensor | None = None
    pareto_k: Tensor | None = None

    @property
    def nll(self) -> Tensor:
        """Negative log-likelihood -log p(x), (B,), nats per datapoint."""
        return -self.log_px


class Estimator:
    """An estimator of log p(x) for each datapoint of a batch, kept apart from the model.

    Subclasses set ``name`` and implement :meth:`_estimate`. Samples of z lie on dim 0 and are
    processed ``chunk_size`` at a time, so memory does not grow with ``num_samples``; randomness
    comes from :class:`~lvm.estimators.noise.NormalNoise`, keyed by dataset index and seed.

    Args:
        num_samples: K, samples of z per datapoint; exactly this many are drawn.
        chunk_size: Samples per chunk; None picks it so that one chunk's decoder output
            (chunk x B x raw_size values) takes about ``CHUNK_BYTES``.

    Raises:
        ValueError: if ``num_samples`` or ``chunk_size`` is not a positive integer.
    """

    name: ClassVar[str] = "estimator"

    def __init__(self, num_samples: int = 1, chunk_size: int | None = None) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"{self.name}: num_samples must be a positive integer; got {num_samples!r}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(
                f"{self.name}: chunk_size must be a positive integer or None; got {chunk_size!r}"
            )
        self.num_samples = num_samples
        self.chunk_size = chunk_size

    def estimate(
        self, model: LatentVariableModel, x: Tensor, *, index: Tensor | None = None, seed: int = 0
    ) -> Estimate:
        """Estimate log p(x) for each datapoint of ``x`` (B, *event_shape), without gradients.

        Args:
            model: The latent variable model.
            x: A batch of data.
            index: Dataset indices of the datapoints (B,); with them the randomness of each
                datapoint depends only on (seed, index), not on the batch. None: seeded ``randn``.
            seed: Evaluation seed.

        Returns:
            An :class:`Estimate` whose tensors have shape (B,).
        """
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"{self.name}: x must be a non-empty batch (B, ...); got shape {tuple(x.shape)}")
        with torch.no_grad(), preferred():
            return self._estimate(model, x, index, int(seed))

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        raise NotImplementedError(f"{type(self).__name__} must implement _estimate")

    def decoder_evaluations(self, model: LatentVariableModel) -> int:
        """Latent vectors z that :meth:`estimate` decodes per datapoint: its cost in decoder passes.

        K here: one pass of p(x | z_k) per sample, as in importance sampling, the prior Monte
        Carlo estimate and the ELBO (S samples). Estimators that decode more override it.
        """
        return self.num_samples

    def chunks(
        self, model: LatentVariableModel, x: Tensor, total: int | None = None, adaptive: bool = True
    ) -> Iterator[tuple[int, int]]:
        """(start, count) of the chunks of ``total`` samples (default ``num_samples``); the last may be short.

        With ``adaptive`` the chunks run under ``lvm.estimators.threads.AdaptiveThreads``: at
        the caller's torch thread count or at one thread, whichever measures faster while the loop
        runs (an estimator whose chunks are few and long adapts inside them instead).
        """
        total = self.num_samples if total is None else total
        size = self.chunk_size
        if size is None:
            lik = getattr(model, "likelihood", None)
            raw_size = int(getattr(lik, "raw_size", 0) or x[0].numel())
            size = max(1, CHUNK_BYTES // (x.shape[0] * raw_size * x.element_size()))
        starts = range(0, total, size)
        sizes = [min(size, total - start) for start in starts]
        for i in AdaptiveThreads().loop(sizes) if adaptive else range(len(sizes)):
            yield starts[i], sizes[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_samples={self.num_samples}, chunk_size={self.chunk_size})"
