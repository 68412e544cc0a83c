"""Bidirectional Monte Carlo against the exact log p(x) of a linear-Gaussian model."""

from __future__ import annotations

import pytest
import torch
from exact_models import linear_gaussian

from lvm.estimators.bdmc import bdmc, compare_to_sandwich

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bounds_bracket_the_exact_value_and_tighten_with_t() -> None:
    lg = linear_gaussian(n=5)
    model = lg.plant(0.5, shift=0.5)  # a poor q, so that short annealing leaves a visible gap
    widths = {}
    for steps in (5, 100):
        s = bdmc(model, num_datapoints=40, steps=steps, num_chains=4, seed=3, leapfrog_steps=3)
        exact = lg.log_px(s.x)
        n = len(exact)
        lower_se = s.lower_stderr.double().square().sum().sqrt() / n
        upper_se = s.upper_stderr.double().square().sum().sqrt() / n
        gap_low = (exact - s.lower.double()).mean()  # >= 0 in expectation
        gap_up = (s.upper.double() - exact).mean()  # >= 0 in expectation
        assert gap_low > -3 * lower_se and gap_up > -3 * upper_se, (
            steps,
            gap_low,
            lower_se,
            gap_up,
            upper_se,
        )
        widths[steps] = s.width.double().mean().item()
        assert s.z.shape == (40, 2) and s.x.shape == (40, 6) and s.num_chains == 4
    assert widths[100] < 0.5 * widths[5], widths
    assert widths[5] > 0.1  # the short run's sandwich is visibly open


def test_exact_posterior_closes_the_sandwich_and_estimators_are_placed_in_it() -> None:
    lg = linear_gaussian(n=5)
    s = bdmc(lg.model, num_datapoints=10, steps=3, num_chains=2, seed=0, leapfrog_steps=2)
    exact = lg.log_px(s.x)
    torch.testing.assert_close(s.lower.double(), exact, rtol=0, atol=2e-4)
    torch.testing.assert_close(s.upper.double(), exact, rtol=0, atol=2e-4)
    same = bdmc(lg.model, num_datapoints=10, steps=3, num_chains=2, seed=0, leapfrog_steps=2)
    assert torch.equal(same.x, s.x) and torch.equal(same.z, s.z)  # simulation is seeded
    model = lg.plant(0.5, shift=0.5)
    s = bdmc(model, num_datapoints=20, steps=20, num_chains=4, seed=1, leapfrog_steps=3)
    rows = compare_to_sandwich(model, s, ["elbo", {"name": "importance", "num_samples": 100}])
    elbo, imp = rows
    assert elbo.below_upper > imp.below_upper > 0  # IS is closer to the top than the ELBO
    assert elbo.above_lower < 0  # and the ELBO lies below the AIS lower bound
    assert elbo.width == pytest.approx(s.width.double().mean().item(), rel=1e-5)
    assert elbo.mean_log_px == pytest.approx(imp.mean_log_px + (imp.below_upper - elbo.below_upper), abs=1e-4)


def test_simulated_z_is_independent_of_the_forward_chains_noise() -> None:
    """AIS with the same seed must not start a chain at the simulated z (that would bias the lower bound)."""
    from lvm.estimators.bdmc import simulate
    from lvm.estimators.noise import NormalNoise

    lg = linear_gaussian(n=5)
    z, _ = simulate(lg.model, 6, seed=0)
    index = torch.arange(6)
    chain0 = NormalNoise(index, 0, 6, lg.model.latent_dim, z.device, z.dtype).draw(0, 1)[0]
    assert not torch.allclose(z, chain0)
    assert (z - chain0).abs().max() > 0.1
