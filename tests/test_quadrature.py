"""The quadrature estimator against the exact log p(x) of linear-Gaussian models with 1-D and 2-D latents."""

from __future__ import annotations

import pytest
import torch
from exact_models import bernoulli_2d, linear_gaussian, sample_data

from lvm import LatentVariableModel, create_estimator
from lvm.estimators.quadrature import Grid, log_lik_pairs

torch.set_num_threads(2)


@pytest.mark.parametrize("latent", [1, 2])
def test_quadrature_is_exact_on_linear_gaussian(latent: int) -> None:
    lg = linear_gaussian(latent=latent, n=20)
    est = create_estimator("quadrature", points=400 if latent == 2 else 2000, lim=7.0).estimate(
        lg.model, lg.x
    )
    err = (est.log_px.double() - lg.exact).abs()
    assert err.max() < 2e-4, err.max()  # float32 log-likelihoods, float64 sums
    assert est.num_samples == (400**2 if latent == 2 else 2000)
    assert est.mc_stderr.max() < 2e-4


def test_grid_error_is_reported_and_bounds_the_error() -> None:
    lg = linear_gaussian(latent=2, n=20)  # posterior sd 0.24: a 24 x 24 grid over [-6, 6]^2 is coarse
    est = create_estimator("quadrature", points=24).estimate(lg.model, lg.x)
    err = (est.log_px.double() - lg.exact).abs()
    assert err.max() > 1e-3  # a coarse grid is visibly off ...
    assert (err <= est.mc_stderr.double() + 1e-5).all()  # ... and says by how much at most


def test_quadrature_does_not_depend_on_chunking_or_batch() -> None:
    model = bernoulli_2d(d=10)
    x = sample_data(model, 5)
    a = create_estimator("quadrature", points=60, chunk_size=7).estimate(model, x).log_px
    b = create_estimator("quadrature", points=60).estimate(model, x[2:3]).log_px
    torch.testing.assert_close(b, a[2:3], rtol=0, atol=1e-5)
    z = Grid(3.0, 4).points(2, torch.float32)  # (16, 2)
    with torch.no_grad():
        pairs = log_lik_pairs(model, x, z)  # (5, 16)
        direct = torch.stack([model.observation(z).log_prob(x[i]) for i in range(5)]).double()
    torch.testing.assert_close(pairs, direct)


def test_quadrature_rejects_large_latent_spaces() -> None:
    model = LatentVariableModel.build((5,), 3, "mlp", "mlp", "bernoulli")
    with pytest.raises(ValueError, match=r"latent_dim <= 2 .*got latent_dim=3"):
        create_estimator("quadrature").estimate(model, torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"points must be an integer >= 2; got 1"):
        create_estimator("quadrature", points=1)
