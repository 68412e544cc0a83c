"""The Bernoulli log-density kernels against torch: values, gradients, float32 range, no underflow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lvm.likelihoods import bernoulli, create_likelihood
from lvm.likelihoods.bernoulli import bernoulli_log_prob, bernoulli_log_prob_sum


def _torch_log_prob(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    f, x = torch.broadcast_tensors(f, x)
    return -F.binary_cross_entropy_with_logits(f, x, reduction="none")


SHAPES = [
    ((2, 2, 125), (2, 125)),
    ((3, 2, 9), (2, 9)),
    ((2, 125), (2, 2, 125)),
    ((3, 4, 7), (3, 4, 7)),
    ((2, 3, 5), (5,)),
    ((5,), (5,)),
]


@pytest.fixture(params=[(None, None), (1, None), (1, 1)], ids=["default", "large-array-path", "blocks"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each path of the kernels, whatever the size of the input."""
    fused_from, block = request.param
    if fused_from is not None:  # the path taken with gradients from 2^18 logits on, at any size
        monkeypatch.setattr(bernoulli, "_FUSED_FROM", fused_from)
    if block is not None:  # |f| made and reduced one sample at a time, as large arrays are
        monkeypatch.setattr(bernoulli, "_BLOCK", block)


def float64_case(f_shape: tuple, x_shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and grey values in float64 that require gradients."""
    g = torch.Generator().manual_seed(0)
    f = (5 * torch.randn(f_shape, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(x_shape, generator=g, dtype=torch.float64).requires_grad_()  # grey values too
    return f, x


@pytest.mark.parametrize(("f_shape", "x_shape"), SHAPES)
def test_kernels_match_torch_values_and_gradients_in_float64(
    f_shape: tuple, x_shape: tuple, kernel_path: None
) -> None:
    f, x = float64_case(f_shape, x_shape)
    ref = _torch_log_prob(f, x)
    torch.testing.assert_close(bernoulli_log_prob(f, x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bernoulli_log_prob_sum(f, x), ref.sum(-1), rtol=1e-12, atol=1e-10)
    with torch.no_grad():  # the evaluation path (products of sigmoids), not the training one
        torch.testing.assert_close(bernoulli_log_prob_sum(f, x), ref.sum(-1), rtol=1e-12, atol=1e-10)
    w = torch.randn(ref.shape[:-1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.autograd.grad((ref.sum(-1) * w).sum(), (f, x))  # torch's own gradients
    for fn in (bernoulli_log_prob, bernoulli_log_prob_sum):
        out = fn(f, x)
        got = torch.autograd.grad(((out.sum(-1) if out.shape == ref.shape else out) * w).sum(), (f, x))
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("f_shape", "x_shape"),
    # 125 values per datapoint (a group of 120 and a remainder) take 10-80 s each under load
    [pytest.param(*s, marks=pytest.mark.slow) if 125 in (*s[0], *s[1]) else s for s in SHAPES],
)
def test_kernels_pass_gradcheck_and_gradgradcheck_in_float64(
    f_shape: tuple, x_shape: tuple, kernel_path: None
) -> None:
    f, x = float64_case(f_shape, x_shape)
    for fn in (bernoulli_log_prob, bernoulli_log_prob_sum):
        assert torch.autograd.gradcheck(fn, (f, x))
        assert torch.autograd.gradgradcheck(fn, (f, x))


@pytest.mark.parametrize(
    ("fused_from", "block"), [(None, None), (1, None), (1, 1)], ids=["default", "large-array-path", "blocks"]
)
def test_sum_kernel_in_float32_over_the_whole_logit_range(
    fused_from: int | None, block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fused_from is not None:
        monkeypatch.setattr(bernoulli, "_FUSED_FROM", fused_from)
    if block is not None:
        monkeypatch.setattr(bernoulli, "_BLOCK", block)
    f = torch.linspace(-200, 200, 784 * 12).reshape(3, 4, 784).requires_grad_()  # (C, B, D)
    x = (torch.rand(4, 784, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    lp = bernoulli_log_prob_sum(f, x)
    ref = _torch_log_prob(f.double(), x.double()).sum(-1)
    torch.testing.assert_close(lp.double(), ref, rtol=1e-6, atol=1e-3)
    (grad,) = torch.autograd.grad(lp.sum(), f)
    torch.testing.assert_close(grad, x - torch.sigmoid(f.detach()))
    assert torch.isfinite(lp).all()
    with torch.no_grad():  # the evaluation path
        torch.testing.assert_close(bernoulli_log_prob_sum(f, x).double(), ref, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("d", [7, 125, 784, 3072])
def test_sum_kernel_at_zero_logits_is_d_log_half_without_underflow(d: int) -> None:
    """f = 0: p(x_j) = 1/2 for every x_j, so log p = -d log 2; a product of more than 126 halves
    would underflow in float32 (784 = 6 x 120 + 64, 3072 = 25 x 120 + 72, 125 = 120 + 5, 7 alone)."""
    x = (torch.rand(3, d, generator=torch.Generator().manual_seed(d)) < 0.5).float()
    lp = bernoulli_log_prob_sum(torch.zeros(5, 3, d), x)
    torch.testing.assert_close(lp, torch.full((5, 3), -d * math.log(2)), rtol=1e-6, atol=0)


def test_low_precision_logits_are_summed_in_float32() -> None:
    f = 3 * torch.randn(2, 784, generator=torch.Generator().manual_seed(2))
    x = (torch.rand(2, 784) < 0.5).float()
    lp = bernoulli_log_prob_sum(f.to(torch.bfloat16), x)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(
        lp, _torch_log_prob(f.to(torch.bfloat16).float(), x).sum(-1), rtol=1e-5, atol=1e-3
    )


def test_the_likelihood_folds_image_event_dims() -> None:
    lk = create_likelihood("bernoulli", (1, 4, 4))
    raw = torch.randn(3, 5, 16, dtype=torch.float64)
    x = (torch.rand(5, 1, 4, 4) < 0.5).double()
    expected = _torch_log_prob(raw.reshape(3, 5, 1, 4, 4), x).sum((-3, -2, -1))
    torch.testing.assert_close(lk(raw).log_prob(x), expected)


def test_empty_batch_log_density_is_empty() -> None:
    """No datapoints in the batch: C x 0 log densities, not a division by zero in the block size."""
    with torch.no_grad():
        assert bernoulli_log_prob_sum(torch.zeros(3, 0, 784), torch.zeros(0, 784)).shape == (3, 0)
