"""Prior Monte Carlo of log p(x) with one set of prior draws shared by every datapoint, nested over K."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from quadrature import log_lik_matrix
from torch import Tensor

from lvm.estimators import LogMeanExp

__all__ = ["shared_prior_mc"]


@torch.no_grad()
def shared_prior_mc(
    model: torch.nn.Module,
    x: Tensor,
    ks: Sequence[int],
    seed: int = 0,
    chunk: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> dict[int, dict[str, Tensor]]:
    r"""log p-hat(x_b) = log (1/K) sum_{k<K} p(x_b | z_k), z_k ~ N(0, I), for every K in ``ks``.

    For each datapoint this is exactly the estimator of lvm's ``prior`` :
    K i.i.d. prior draws, averaged in log space. Because p(z) does not depend on x, one set of
    draws serves the whole batch: the decoder runs once per draw and log p(x_b | z_k) for all
    b comes from :func:`~quadrature.log_lik_matrix`, about B times cheaper than drawing per
    datapoint. The estimates of different datapoints are then dependent (repeat with other seeds
    for error bars), and the estimate at a smaller K uses the first K draws of the larger one.
    Log weights are accumulated by lvm's :class:`~lvm.estimators.LogMeanExp`, which also gives the
    ESS and Var[log w].

    Args:
        model: A model with ``observation(z)``, ``latent_dim`` and a standard-normal prior.
        x: Data (B, *event_shape).
        ks: Sample sizes; the largest sets the number of draws.
        seed: Seed of the draws.
        chunk: Draws per decoder call.
        progress: Called with the number of draws done after each chunk.

    Returns:
        ``{K: {"log_px", "ess", "log_weight_var"}}``, each (B,) float64.
    """
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    acc, done, out = LogMeanExp(), 0, {}
    for k in sorted(set(int(k) for k in ks)):
        while done < k:
            c = min(chunk, k - done)
            z = torch.randn(c, model.latent_dim, generator=gen, dtype=dtype)
            acc.update(log_lik_matrix(model, x, z).T)  # (C, B)
            done += c
            if progress is not None:
                progress(c)
        out[k] = {"log_px": acc.log_mean_exp(), "ess": acc.ess(), "log_weight_var": acc.variance()}
    return out
