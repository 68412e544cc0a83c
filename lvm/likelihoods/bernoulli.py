"""Bernoulli observation model parameterised by logits."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Bernoulli as _Bernoulli
from torch.distributions import Distribution, Independent

from lvm.likelihoods.base import Likelihood, ParamSpec
from lvm.likelihoods.registry import register_likelihood

__all__ = ["Bernoulli", "bernoulli_log_prob", "bernoulli_log_prob_sum"]

# torch's Bernoulli log density (binary_cross_entropy_with_logits, softplus, log_sigmoid) goes
# through log1p, whose AVX-512 CPU kernel in recent torch builds runs without SIMD: it dominated
# the training step and the estimators. The kernels below avoid log1p and compute the gradient
# x - sigma(f) in one pass (measurements: benchmarks/README.md, "Speed devices in the code").


class _BernoulliLogProb(torch.autograd.Function):
    """Elementwise x f - softplus(f) with softplus(f) = max(f, 0) + log(1 + exp(-|f|))."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(f, x)
        softplus = torch.exp(-f.abs()).add_(1).log_().add_(f.clamp(min=0))
        return torch.mul(x, f).sub_(softplus)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        f, x = ctx.saved_tensors
        df = ((x - torch.sigmoid(f)) * grad).sum_to_size(f.shape) if ctx.needs_input_grad[0] else None
        dx = (f * grad).sum_to_size(x.shape) if ctx.needs_input_grad[1] else None
        return df, dx


def _sum_log(p: Tensor, group: int = 120) -> Tensor:
    """sum_j log p_j over the last dim for p_j in [1/2, 1]: one log per product of at most ``group`` factors.

    A product of 120 such factors is at least 2^-120, a normal float32 number (no underflow).
    """
    m = p.shape[-1] // group
    out = p[..., m * group :].prod(-1).log_()  # the remainder: all of p when it has fewer than ``group``
    return out + p[..., : m * group].unflatten(-1, (m, group)).prod(-1).log_().sum(-1) if m else out


# Samples per block of :func:`_log_prob_sum`: |f| is made and reduced 2^18 values (1 MB in
# float32) at a time, so the temporary stays in cache instead of a fresh 16 MB array per chunk,
# whose first touch page-faults (importance sampling with blocks: results/20261130T075605Z.json;
# the measurements with and without them: benchmarks/README.md, "Speed devices in the code").
_BLOCK = 2**18


def _log_prob_sum(f: Tensor, y: Tensor) -> Tensor:
    """sum_j (y_j f_j - |f_j| / 2 + log sigma(|f_j|)) over the last dim, y = x - 1/2.

    For samples f (C, B, D) of a batch y (B, D), as the estimators have, sum_j y_j f_j is one
    batched product over f's strides (no copy of f), and |f| is made and reduced a block of
    about ``_BLOCK`` values at a time (sum, then sigma(|f|) in place). Other shapes take one
    elementwise pass and one sum.
    """
    if f.dim() == 3 and y.shape == f.shape[1:]:
        # (B, 1, D) @ (B, D, C): f[:, b, :] read as a transposed matrix in place
        out = torch.bmm(y.unsqueeze(1), f.transpose(0, 1).transpose(1, 2)).squeeze(1).T.contiguous()
        step = max(1, _BLOCK // max(1, f[0].numel()))
        for s in range(0, f.shape[0], step):
            a = f[s : s + step].abs()
            out[s : s + step].add_(a.sum(-1), alpha=-0.5).add_(_sum_log(a.sigmoid_()))
        return out
    a = f.abs()
    twice_neg_linear = torch.addcmul(a, f, y, value=-2.0).sum(-1)
    return torch.add(_sum_log(a.sigmoid_()), twice_neg_linear, alpha=-0.5)


def _log_prob_sum_small(f: Tensor, x: Tensor) -> Tensor:
    """sum_j (x_j f_j - max(f_j, 0) - log(1 + exp(-|f_j|))) over the last dim: five elementwise passes.

    Fewer kernels than :func:`_log_prob_sum`, so faster on a training batch, whose logits fit in
    cache and whose step pays per kernel; on an estimator's many samples without gradients the
    other is faster (benchmarks/README.md, "Speed devices in the code").
    """
    softplus = torch.exp(-f.abs()).add_(1).log_().add_(f.clamp(min=0))
    return torch.mul(x, f).sub_(softplus).sum(-1)


# From this many logits on, the forward pass with gradients takes :func:`_log_prob_sum` (three
# elementwise passes and a batched product) instead of :func:`_log_prob_sum_small`: the five-pass
# version wins on a training batch, the three-pass one on the many samples of AIS's and IWAE's
# gradients (the timings per number of samples: benchmarks/README.md, "Speed devices in the code").
_FUSED_FROM = 2**18


class _BernoulliLogProbSum(torch.autograd.Function):
    """sum_j log p(x_j | f_j) with the gradient x - sigma(f) written in place (the training path)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(f, x)
        if f.numel() >= _FUSED_FROM:
            return _log_prob_sum(f, x - 0.5)
        return _log_prob_sum_small(f, x)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        f, x = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        df = dx = None
        if ctx.needs_input_grad[0]:
            df = torch.sigmoid(f)
            in_place = not torch.is_grad_enabled()  # (a double backward needs sigma(f) kept)
            if in_place and torch.broadcast_shapes(f.shape, x.shape, g.shape) == f.shape:  # one array
                df = df.sub_(x).mul_(g.neg())
            else:
                df = ((x - df) * g).sum_to_size(f.shape)
        if ctx.needs_input_grad[1]:
            dx = (f * g).sum_to_size(x.shape)
        return df, dx


def _prepare(logits: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    if logits.dtype in (torch.float16, torch.bfloat16):  # products and sums of logs need float32
        logits = logits.float()
    return logits, x.to(logits.dtype)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log Bernoulli(x | sigma(logits)) elementwise, broadcast; x may be grey values in [0, 1].

    Equal to ``-binary_cross_entropy_with_logits(logits, x, reduction="none")`` up to float
    rounding: log(1 + e) stands for log1p(e), e = exp(-|f|) <= 1, an absolute difference below
    1.2e-7 per element in float32.
    """
    return _BernoulliLogProb.apply(*_prepare(logits, x))


def bernoulli_log_prob_sum(logits: Tensor, x: Tensor) -> Tensor:
    """sum_j log Bernoulli(x_j | sigma(logits_j)) over the last dim, broadcast, in one fused pass.

    softplus(f) = (f + |f|) / 2 - log sigma(|f|) turns the sum into a dot product, a sum of
    |f| and the logs of products of at most 120 factors sigma(|f|) in [1/2, 1]. Exact for
    x in [0, 1] up to float rounding; the gradient is x - sigma(f) everywhere, f = 0 included.
    With gradients (training) it runs :func:`_log_prob_sum_small` instead, faster on a batch.
    """
    f, x = _prepare(logits, x)
    if torch.is_grad_enabled() and (f.requires_grad or x.requires_grad):
        return _BernoulliLogProbSum.apply(f, x)
    return _log_prob_sum(f, x - 0.5)


class _LogitBernoulli(_Bernoulli):
    """``torch.distributions.Bernoulli`` whose ``log_prob`` is :func:`bernoulli_log_prob`."""

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return bernoulli_log_prob(self.logits, value)


class _FoldedBernoulli(Independent):
    """``Independent(Bernoulli(logits), n)`` whose ``log_prob`` is :func:`bernoulli_log_prob_sum`."""

    def log_prob(self, value: Tensor) -> Tensor:
        n = self.reinterpreted_batch_ndims
        logits = self.base_dist.logits
        if n == 0 or value.dim() < n:
            return super().log_prob(value)
        return bernoulli_log_prob_sum(logits.flatten(-n), value.flatten(-n))


@register_likelihood("bernoulli")
class Bernoulli(Likelihood):
    r"""Factorised Bernoulli, p(x | z) = prod_j sigma(f_j)^{x_j} (1 - sigma(f_j))^{1 - x_j}.

    Kingma & Welling (2014), appendix C.1. The decoder predicts logits
    f_j (identity link) and the log density is evaluated from them,
    log p = x f - softplus(f), which never underflows or takes log(0) in float32. Data may be
    binary or grey values in [0, 1] (then the log density is the negative cross-entropy).
    The mean (``mean``) is the activation probability sigma(f), what image figures show.
    """

    name: ClassVar[str] = "bernoulli"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("logits", "identity"),)
    support: ClassVar[str] = "[0, 1]"

    def distribution(self, logits: Tensor) -> Distribution:  # type: ignore[override]
        return _LogitBernoulli(logits=logits, validate_args=False)

    def forward(self, raw: Tensor) -> Distribution:
        """p(x | z) with event dims folded, its ``log_prob`` summed over them in one fused pass."""
        return _FoldedBernoulli(self.distribution(**self.split(raw)), len(self.event_shape))

    def support_violation(self, x: Tensor) -> str | None:
        lo, hi = x.min(), x.max()
        if lo < 0 or hi > 1:
            return f"got min={lo.item():.4g}, max={hi.item():.4g}"
        return None

    def raw_from_mean(self, mean: Tensor) -> Tensor:
        p = mean.clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)
