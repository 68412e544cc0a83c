"""Per-datapoint Monte Carlo error and Pareto tail shape of importance weights against exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exact_models import linear_gaussian
from scipy import stats

from lvm import create_estimator
from lvm.estimators.diagnostics import LogWeights, mc_stderr, pareto_k, pareto_tail_size

torch.set_num_threads(2)


def gpdfit_reference(x: np.ndarray, prior_k: float = 10.0) -> float:
    """Zhang & Stephens (2009) with the weakly informative prior, written as in the PSIS reference code."""
    x = np.sort(x)
    n = len(x)
    m_est = 30 + int(np.sqrt(n))
    b = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1) - 0.5))
    b = b / (3 * x[int(n / 4 + 0.5) - 1]) + 1 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(b / k)) - k - 1)
    weights = 1 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    b_post = np.sum(b * weights / weights.sum())
    k_post = np.log1p(-b_post * x).mean()
    return (n * k_post + prior_k * 0.5) / (n + prior_k)


def as_top_log_weights(exceedances: np.ndarray) -> torch.Tensor:
    """Log weights 1 + [0, x_1, ..., x_M] whose exceedances over the smallest are x, (B, M + 1)."""
    zero = np.zeros((exceedances.shape[0], 1))
    return torch.log1p(torch.tensor(np.concatenate([zero, exceedances], 1)))


def test_pareto_fit_equals_reference_code_row_by_row() -> None:
    x = stats.genpareto.rvs(0.5, size=(6, 40), random_state=3)
    ours = pareto_k(as_top_log_weights(x).flip(-1))  # order of the M + 1 weights does not matter
    ref = torch.tensor([gpdfit_reference(row) for row in x], dtype=torch.float64)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", [0.3, 0.8, -0.2])
def test_pareto_fit_recovers_the_shape_of_genpareto_samples(shape: float) -> None:
    x = stats.genpareto.rvs(shape, size=(300, 1000), random_state=0)
    k = pareto_k(as_top_log_weights(x))
    assert abs(k.mean().item() - shape) < 0.02, k.mean()
    assert k.std().item() < 0.07


def test_pareto_fit_edge_cases() -> None:
    assert pareto_tail_size(25) == 5 and pareto_tail_size(10_000) == 300
    assert pareto_k(torch.zeros(2, 5)).isnan().all()  # M = 4 < 5: no fit
    assert (pareto_k(torch.full((2, 8), -3.0)) == -math.inf).all()  # constant weights
    lw = torch.randn(3, 40, dtype=torch.float32) * 5 - 1e4  # far below exp's float32 range
    torch.testing.assert_close(pareto_k(lw), pareto_k(lw.double() + 1e4), rtol=0, atol=1e-6)


def test_mc_stderr_is_the_delta_method_on_the_weights() -> None:
    lw = torch.randn(500, 4, dtype=torch.float64) * 1.5 - 800  # exp underflows in float64
    acc = LogWeights(500)
    for chunk in lw.float().split(33):
        acc.update(chunk)
    est = acc.estimate()
    w = (lw - lw.amax(0)).exp()
    direct = (w.var(0) / (500 * w.mean(0) ** 2)).sqrt()  # Var[p-hat] / p-hat^2, unbiased Var[w]
    torch.testing.assert_close(est.mc_stderr.double(), direct, rtol=1e-4, atol=0)
    assert mc_stderr(torch.ones(3), 1).isnan().all()
    whole = pareto_k(lw.float().topk(pareto_tail_size(500) + 1, dim=0).values.T)
    assert torch.equal(est.pareto_k, whole.float())  # the top-M merge over chunks is exact


@pytest.mark.parametrize("name", ["importance", "prior"])
def test_diagnostics_do_not_depend_on_chunking(name: str) -> None:
    lg = linear_gaussian(n=7)
    model = lg.plant(0.7)
    index = torch.arange(7)
    whole = create_estimator(name, num_samples=400, chunk_size=400).estimate(model, lg.x, index=index)
    parts = create_estimator(name, num_samples=400, chunk_size=9).estimate(model, lg.x, index=index)
    torch.testing.assert_close(parts.mc_stderr, whole.mc_stderr, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(parts.pareto_k, whole.pareto_k, rtol=0, atol=1e-5)
    assert create_estimator("elbo").estimate(model, lg.x).pareto_k is None


def test_narrow_proposal_is_flagged_by_pareto_k() -> None:
    """q 0.5x the posterior's scale: w ~ exp(1.5 |u|^2), a Pareto tail of shape 0.75 (infinite variance)."""
    lg = linear_gaussian(n=100)
    est = create_estimator("importance", num_samples=10_000).estimate(
        lg.plant(0.5), lg.x, index=torch.arange(100), seed=0
    )
    share = (est.pareto_k > 0.7).float().mean().item()
    assert share > 0.5, f"only {share:.2f} of the datapoints have k > 0.7"


def test_wide_proposal_has_small_k_and_an_honest_stderr() -> None:
    """q 1.3x wider: bounded weights (k < 0.5), and the delta-method SE matches the spread of 64 repeats."""
    lg = linear_gaussian(n=100)
    model, index = lg.plant(1.3), torch.arange(100)
    est = create_estimator("importance", num_samples=200)
    runs = [est.estimate(model, lg.x, index=index + 1000 * r, seed=r) for r in range(64)]
    log_px = torch.stack([r.log_px.double() for r in runs])  # (64, B)
    se = torch.stack([r.mc_stderr.double() for r in runs]).mean(0)  # (B,)
    assert torch.stack([r.pareto_k for r in runs]).max() < 0.5
    ratio = se / log_px.std(0)
    assert abs(ratio.mean().item() - 1) < 0.1, ratio.mean()
    within = ((ratio - 1).abs() < 0.25).float().mean().item()
    assert within > 0.9, f"{within:.2f} of the datapoints have mc_stderr within 25% of the spread"
