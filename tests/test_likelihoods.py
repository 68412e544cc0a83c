"""Built-in likelihoods against scipy.stats and hand-computed values: log_prob, mean, sample, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from lvm.likelihoods import Likelihood, create_likelihood

D = 3  # columns of every test datapoint
S, B = 4, 5  # latent samples, batch


def softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def chunks(raw: np.ndarray, k: int, d: int = D) -> list[np.ndarray]:
    """The k parameter blocks of a raw decoder output (..., k*d), each (..., d)."""
    return [raw[..., i * d : (i + 1) * d] for i in range(k)]


@dataclass(frozen=True)
class Case:
    """A likelihood spec with its reference density, mean and support, all written in numpy."""

    spec: dict[str, Any]
    data: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    logpdf: Callable[[np.ndarray, np.ndarray], np.ndarray]  # elementwise, (..., D)
    mean: Callable[[np.ndarray], np.ndarray]
    in_support: Callable[[torch.Tensor], bool]
    rtol: float = 1e-10


def _gamma_params(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f1, f2 = chunks(raw, 2, raw.shape[-1] // 2)
    return softplus(f1) + 1e-4, softplus(f2) + 1e-4


def _composite_logpdf(raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    # gaussian (per_output) on columns [2, 0], then gamma on column [1]; raw = [loc2, scale2, k1, r1]
    loc, f = chunks(raw[..., :4], 2, 2)
    k, r = _gamma_params(raw[..., 4:])
    out = np.empty(np.broadcast_shapes(raw.shape[:-1] + (D,), x.shape))
    out[..., [2, 0]] = stats.norm.logpdf(x[..., [2, 0]], loc, softplus(f) + 1e-3)
    out[..., [1]] = stats.gamma.logpdf(x[..., [1]], a=k, scale=1 / r)
    return out


def _composite_mean(raw: np.ndarray) -> np.ndarray:
    k, r = _gamma_params(raw[..., 4:])
    out = np.empty(raw.shape[:-1] + (D,))
    out[..., [2, 0]] = raw[..., :2]
    out[..., [1]] = k / r
    return out


def _composite_data(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.normal(size=shape)
    x[..., 1] = rng.gamma(2.0, size=shape[:-1])
    return x


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


CASES: dict[str, Case] = {
    "bernoulli": Case(
        {"name": "bernoulli"},
        lambda rng, shape: rng.integers(0, 2, shape).astype(float),
        lambda raw, x: stats.bernoulli.logpmf(x, expit(raw)),
        expit,
        lambda s: bool(((s == 0) | (s == 1)).all()),
    ),
    "gaussian-fixed": Case(
        {"name": "gaussian", "scale": "fixed", "init_scale": 0.7},
        _normal,
        lambda raw, x: stats.norm.logpdf(x, raw, 0.7),
        lambda raw: raw,
        _finite,
    ),
    "gaussian-shared": Case(
        {"name": "gaussian", "scale": "shared", "init_scale": 0.7},
        _normal,
        lambda raw, x: stats.norm.logpdf(x, raw, 0.7),  # the learned scale starts at init_scale
        lambda raw: raw,
        _finite,
        rtol=1e-6,  # the scale parameter was initialised in float32
    ),
    "gaussian-per_output": Case(
        {"name": "gaussian", "scale": "per_output"},
        _normal,
        lambda raw, x: stats.norm.logpdf(x, chunks(raw, 2)[0], softplus(chunks(raw, 2)[1]) + 1e-3),
        lambda raw: chunks(raw, 2)[0],
        _finite,
    ),
    "gamma": Case(
        {"name": "gamma"},
        lambda rng, shape: rng.gamma(2.0, size=shape),
        lambda raw, x: stats.gamma.logpdf(x, a=_gamma_params(raw)[0], scale=1 / _gamma_params(raw)[1]),
        lambda raw: np.divide(*_gamma_params(raw)),
        lambda s: bool((s > 0).all()),
    ),
    "composite": Case(
        {
            "name": "composite",
            "parts": [
                {"name": "gaussian", "columns": [2, 0]},
                {"name": "gamma", "columns": [1]},
            ],
        },
        _composite_data,
        _composite_logpdf,
        _composite_mean,
        lambda s: _finite(s) and bool((s[..., 1] > 0).all()),
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Likelihood, Case]:
    c = CASES[request.param]
    return create_likelihood(c.spec, (D,)).double(), c


def _raw(lk: Likelihood, *batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(*batch, lk.raw_size, generator=g, dtype=torch.float64)


# -- log_prob, mean, sample ----------------------------------------------------------------
def test_log_prob_matches_scipy_with_shape_s_b(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    raw = _raw(lk, S, B)  # (S, B, raw_size)
    x = c.data(np.random.default_rng(0), (B, D))  # broadcast over S
    lp = lk(raw).log_prob(torch.from_numpy(x))
    assert lp.shape == (S, B), lp.shape
    expected = c.logpdf(raw.numpy(), x).sum(-1)
    np.testing.assert_allclose(lp.detach().numpy(), expected, rtol=c.rtol, atol=1e-10)
    # one x per latent sample gives the same shape
    x_sb = c.data(np.random.default_rng(1), (S, B, D))
    assert lk(raw).log_prob(torch.from_numpy(x_sb)).shape == (S, B)


def test_mean_is_analytic(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    raw = _raw(lk, S, B)
    mean = lk.mean(raw)
    assert mean.shape == (S, B, D)
    np.testing.assert_allclose(mean.detach().numpy(), c.mean(raw.numpy()), rtol=1e-10)


def test_sample_shape_support_and_check(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    torch.manual_seed(0)
    dist = lk(_raw(lk, S, B))
    x = dist.sample()
    assert x.shape == (S, B, D)
    assert c.in_support(x), x
    assert dist.sample((7,)).shape == (7, S, B, D)
    lk.check(x.reshape(-1, D))  # samples pass the data check
    assert torch.isfinite(dist.log_prob(x)).all()


def test_gradients_reach_every_parameter(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    raw = _raw(lk, S, B).requires_grad_()
    x = torch.from_numpy(c.data(np.random.default_rng(0), (B, D)))
    lk(raw).log_prob(x).sum().backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert (raw.grad != 0).any(dim=(0, 1)).all(), "some raw output gets no gradient"
    for name, p in lk.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_multi_dim_event_folds_to_s_b() -> None:
    lk = create_likelihood("bernoulli", (1, 4, 4))
    assert lk.raw_size == 16
    lp = lk(torch.zeros(S, B, 16)).log_prob(torch.ones(B, 1, 4, 4))
    assert lp.shape == (S, B)


# -- hand-computed values ------------------------------------------------------------------
def test_bernoulli_logits_zero_is_minus_d_log_2() -> None:
    d = 784
    lk = create_likelihood("bernoulli", (d,))
    x = (torch.rand(B, d) > 0.5).float()
    lp = lk(torch.zeros(S, B, d)).log_prob(x)
    torch.testing.assert_close(lp, torch.full((S, B), -d * math.log(2)))


def test_bernoulli_grey_values_give_negative_cross_entropy() -> None:
    lk = create_likelihood("bernoulli", (2,))
    f, x = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.3, 0.8]])
    # x log sigma(f) + (1 - x) log(1 - sigma(f)), written out
    p = 1 / (1 + torch.exp(-f))
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    torch.testing.assert_close(lk(f).log_prob(x), expected)


def test_gaussian_fixed_at_its_mean_is_minus_half_d_log_2pi() -> None:
    lk = create_likelihood("gaussian", (D,), scale="fixed", init_scale=1.0)
    lp = lk(torch.zeros(B, D)).log_prob(torch.zeros(B, D))
    torch.testing.assert_close(lp, torch.full((B,), -0.5 * D * math.log(2 * math.pi)))


# -- the edges of the support, in float32 --------------------------------------------------
def test_bernoulli_confident_logits_are_finite_in_float32() -> None:
    logits = torch.tensor([[30.0, -30.0, 30.0, -30.0]], requires_grad=True)
    right = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    lk = create_likelihood("bernoulli", (4,))
    lp_right, lp_wrong = lk(logits).log_prob(right), lk(logits).log_prob(1 - right)
    (lp_right + lp_wrong).sum().backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(lp_right, torch.zeros(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(lp_wrong, torch.full((1,), -4 * 30.0), atol=1e-4, rtol=0)


def test_bernoulli_sum_of_logs_does_not_underflow() -> None:
    """The product of 784 probabilities 0.8 is 0 in float32; the sum of logs is not."""
    d = 784
    p = torch.full((1, d), 0.8)
    assert torch.prod(p) == 0  # the underflow the likelihood must avoid
    lk = create_likelihood("bernoulli", (d,))
    lp = lk(torch.log(p) - torch.log1p(-p)).log_prob(torch.ones(1, d))
    torch.testing.assert_close(lp, torch.full((1,), d * math.log(0.8)), rtol=1e-5, atol=0)


@pytest.mark.parametrize("x", [1e-6, 1e4])
def test_gamma_extreme_data_has_finite_log_prob_and_grad(x: float) -> None:
    lk = create_likelihood("gamma", (1,))
    raw = torch.tensor([[0.0, 0.0]], requires_grad=True)
    lp = lk(raw).log_prob(torch.tensor([[x]]))
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(raw.grad).all()
    k = r = math.log(2) + 1e-4
    torch.testing.assert_close(
        lp, torch.tensor([stats.gamma.logpdf(x, a=k, scale=1 / r)], dtype=torch.float32)
    )


# -- errors --------------------------------------------------------------------------------
COMPOSITE = {
    "name": "composite",
    "parts": [{"name": "gamma", "columns": [0]}, {"name": "gaussian", "columns": [1, 2]}],
}


@pytest.mark.parametrize(
    ("spec", "x", "needles"),
    [
        ("bernoulli", [[0.0, -0.5, 1.0]], ["bernoulli", "[0, 1]", "min=-0.5"]),
        ("bernoulli", [[0.0, 1.5, 1.0]], ["bernoulli", "max=1.5"]),
        ("gamma", [[1.0, 0.0, 2.0]], ["gamma", "(0, inf)", "min=0"]),
        ("gamma", [[1.0, -2.0, 2.0]], ["gamma", "min=-2"]),
        ("gaussian", [[0.0, float("nan"), 1.0]], ["gaussian", "non-finite", "nan"]),
        ("bernoulli", [[0.0, float("nan"), 1.0]], ["bernoulli", "nan"]),
        ("gamma", [[1.0, float("inf"), 2.0]], ["gamma", "inf"]),
        ("gaussian", [[0.0, float("-inf"), 1.0]], ["gaussian", "-inf"]),
        ("bernoulli", [[0.0, 1.0, 1.0, 0.0]], ["bernoulli", "(batch, 3)", "(1, 4)"]),
        ("gamma", [0.0, 1.0], ["gamma", "(2,)"]),
        (COMPOSITE, [[-1.0, 0.0, 0.0]], ["composite", "gamma", "[0]", "min=-1"]),
        (COMPOSITE, [[1.0, float("nan"), 0.0]], ["composite", "nan"]),
    ],
)
def test_check_rejects_bad_data_naming_likelihood_and_value(spec: Any, x: list, needles: list[str]) -> None:
    lk = create_likelihood(spec, (D,))
    with pytest.raises(ValueError) as err:
        lk.check(torch.tensor(x))
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_check_rejects_non_tensor() -> None:
    with pytest.raises(TypeError, match="bernoulli.*list"):
        create_likelihood("bernoulli", (D,)).check([[0.0, 1.0, 1.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ([[0], [1]], r"cover each of the 3 columns exactly once; got columns \[0, 1\]"),
        ([[0, 1], [1, 2]], r"exactly once; got columns \[0, 1, 1, 2\]"),
        ([[0, 1], [3]], r"columns \[3\] out of range for D=3"),
        ([[0, 1], [-1]], r"columns \[-1\] out of range"),
    ],
)
def test_composite_columns_must_partition(columns: list[list[int]], match: str) -> None:
    parts = [{"name": "gamma", "columns": columns[0]}, {"name": "gaussian", "columns": columns[1]}]
    with pytest.raises(ValueError, match=match):
        create_likelihood("composite", (D,), parts=parts)


@pytest.mark.parametrize(
    ("parts", "match"),
    [([], "at least one part"), ([{"name": "gamma"}], "'name' and 'columns'")],
)
def test_composite_bad_parts(parts: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_likelihood("composite", (D,), parts=parts)


def test_gaussian_bad_scale_mode() -> None:
    with pytest.raises(ValueError, match="scale must be one of fixed, shared, per_output; got 'learned'"):
        create_likelihood("gaussian", (D,), scale="learned")


@pytest.mark.parametrize("spec", ["bernoulli", "gamma", "gaussian", COMPOSITE])
def test_raw_size_mismatch_names_expected_and_got(spec: Any) -> None:
    lk = create_likelihood(spec, (D,))
    with pytest.raises(
        ValueError, match=rf"expects {lk.raw_size} decoder outputs.*got raw shape \(2, {lk.raw_size + 1}\)"
    ):
        lk(torch.zeros(2, lk.raw_size + 1))


# -- raw_from_mean -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"name": "bernoulli"},
        {"name": "gaussian", "scale": "fixed"},
        {"name": "gaussian", "scale": "shared"},
        {"name": "gaussian", "scale": "per_output", "init_scale": 0.5},
        {
            "name": "composite",
            "parts": [{"name": "gaussian", "columns": [2]}, {"name": "bernoulli", "columns": [0, 1]}],
        },
    ],
    ids=["bernoulli", "gaussian-fixed", "gaussian-shared", "gaussian-per_output", "composite"],
)
def test_raw_from_mean_round_trip(spec: dict[str, Any]) -> None:
    lk = create_likelihood(spec, (D,))
    m = torch.tensor([0.2, 0.9, 0.05])
    raw = lk.raw_from_mean(m)
    assert raw is not None and raw.shape == (lk.raw_size,)
    torch.testing.assert_close(lk.mean(raw), m)


def test_raw_from_mean_per_output_scale_starts_at_init_scale() -> None:
    lk = create_likelihood("gaussian", (D,), scale="per_output", init_scale=0.5)
    torch.testing.assert_close(lk(lk.raw_from_mean(torch.zeros(D))).base_dist.scale, torch.full((D,), 0.5))


def test_raw_from_mean_is_none_without_an_inverse() -> None:
    assert create_likelihood("gamma", (D,)).raw_from_mean(torch.ones(D)) is None
    assert create_likelihood(COMPOSITE, (D,)).raw_from_mean(torch.ones(D)) is None
