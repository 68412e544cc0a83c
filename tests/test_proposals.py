"""Importance-sampling proposals against exact densities and the exact log p(x) of a linear-Gaussian model."""

from __future__ import annotations

import math

import pytest
import torch
from exact_models import linear_gaussian
from scipy import stats
from torch.distributions import Independent, Normal

from lvm import create_estimator
from lvm.estimators.proposals import Proposal

torch.set_num_threads(2)


def proposal(name: str, **kwargs: float) -> tuple[Proposal, Independent, Independent]:
    lg = linear_gaussian(n=5)
    model = lg.plant(0.8, shift=0.3)
    with torch.no_grad():
        q, prior = model.posterior(lg.x), model.prior()
    return Proposal(name, q, prior, torch.arange(5), 0, **kwargs), q, prior


def test_log_densities_at_fixed_z() -> None:
    z = torch.randn(7, 5, 2, generator=torch.Generator().manual_seed(0)) * 2  # (C, B, L)
    r, q, prior = proposal("defensive", alpha=0.3)
    with torch.no_grad():
        expected = torch.log(0.3 * q.log_prob(z).exp() + 0.7 * prior.log_prob(z).exp())
        torch.testing.assert_close(r.log_prob(z), expected, rtol=1e-5, atol=1e-5)
        r, q, _ = proposal("student_t", df=3, widen=1.5)
        loc, scale = q.base_dist.loc, q.base_dist.scale * 1.5
        for b in range(5):
            ref = stats.multivariate_t(loc[b].numpy(), torch.diag(scale[b] ** 2).numpy(), df=3).logpdf(
                z[:, b]
            )
            torch.testing.assert_close(r.log_prob(z[:, b : b + 1].expand(7, 5, 2))[:, b].double(),
                                       torch.tensor(ref), rtol=1e-5, atol=1e-5)  # fmt: skip
        for name, dist in [("posterior", q), ("prior", prior)]:
            torch.testing.assert_close(proposal(name)[0].log_prob(z), dist.log_prob(z))


@pytest.mark.parametrize(("name", "kwargs"), [("defensive", {"alpha": 0.3}), ("student_t", {"df": 3})])
def test_samples_follow_the_density_they_report(name: str, kwargs: dict) -> None:
    r, q, prior = proposal(name, **kwargs)
    with torch.no_grad():
        z, log_r = r.sample(0, 20_000)  # (C, B, L)
        torch.testing.assert_close(log_r, r.log_prob(z))
    loc, scale = q.base_dist.loc, q.base_dist.scale  # (B, L)
    if name == "defensive":  # P_r(box of +/- 4 sigma around q's mean) = 0.3 P_q(box) + 0.7 P_p(box)
        share = ((z - loc).abs() < 4 * scale).all(-1).double().mean(0)  # (B,)
        box_p = (torch.special.ndtr(loc + 4 * scale) - torch.special.ndtr(loc - 4 * scale)).prod(-1)
        expected = 0.3 * (2 * stats.norm.cdf(4) - 1) ** 2 + 0.7 * box_p.double()
        torch.testing.assert_close(share, expected, rtol=0, atol=0.015)
    else:  # each coordinate of a multivariate t is a univariate t with the same df
        u = ((z - loc) / scale)[:, 2, 0].double().numpy()
        assert stats.kstest(u, stats.t(df=3).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("posterior", {}),
        ("prior", {}),
        ("defensive", {"alpha": 0.5}),
        ("student_t", {"df": 4, "widen": 1.2}),
    ],
)
def test_estimate_is_within_monte_carlo_error_of_exact(name: str, kwargs: dict) -> None:
    lg = linear_gaussian(n=50)
    model = lg.plant(0.9, shift=0.2)
    est = create_estimator("importance", num_samples=3000, proposal=name, **kwargs).estimate(
        model, lg.x, index=torch.arange(50), seed=1
    )
    if name != "prior":  # p(z) is far wider than p(z | x): a few datapoints have heavy-tailed weights
        assert (est.pareto_k < 0.7).all()
    err = est.log_px.double() - lg.exact
    z = err / est.mc_stderr.double()
    assert z.abs().max() < 4.5, f"{name}: worst datapoint {z.abs().max():.2f} MC SE off"
    mean_z = err.sum() / est.mc_stderr.double().square().sum().sqrt()  # the mean error in its own SE
    assert abs(mean_z) < 4, mean_z


def test_defensive_with_alpha_one_is_the_posterior() -> None:
    lg = linear_gaussian(n=6)
    model = lg.plant(0.5)
    a = create_estimator("importance", num_samples=50).estimate(model, lg.x, index=torch.arange(6))
    b = create_estimator("importance", num_samples=50, proposal="defensive", alpha=1.0)
    b_ = b.estimate(model, lg.x, index=torch.arange(6))
    torch.testing.assert_close(a.log_px, b_.log_px)


def test_bad_proposal_options() -> None:
    with pytest.raises(
        ValueError, match=r"unknown proposal 'posteriour'; allowed: posterior, prior, defensive, student_t"
    ):
        create_estimator("importance", proposal="posteriour")
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]; got 0"):
        create_estimator("importance", proposal="defensive", alpha=0)
    with pytest.raises(ValueError, match=r"df must be a positive integer; got 2.5"):
        create_estimator("importance", proposal="student_t", df=2.5)
    with pytest.raises(ValueError, match=r"widen must be positive and finite; got -1"):
        create_estimator("importance", proposal="student_t", widen=-1)
    assert math.isfinite(Normal(0, 1).log_prob(torch.tensor(0.0)).item())
