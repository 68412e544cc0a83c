"""Every log p(x) estimator with every likelihood of the library, on a tiny model with a 1-D latent."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lvm import LatentVariableModel, create_estimator


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Thousands of tiny operations (AIS above all): thread wake-ups would dominate."""


D = 3
SPECS: dict[str, tuple[dict[str, Any], int]] = {  # spec, event size
    "poisson": ({"name": "poisson"}, D),
    "poisson-size_factor": ({"name": "poisson", "size_factor": True}, D + 1),
    "negative_binomial": ({"name": "negative_binomial"}, D),
    "negative_binomial-datapoint": ({"name": "negative_binomial", "dispersion": "datapoint"}, D),
    "zip": ({"name": "zip"}, D),
    "zinb": ({"name": "zinb", "size_factor": True}, D + 1),
    "categorical": ({"name": "categorical", "num_categories": 4}, D),
    "beta": ({"name": "beta"}, D),
    "continuous_bernoulli": ({"name": "continuous_bernoulli"}, D),
    "student_t": ({"name": "student_t", "df": "shared"}, D),
    "student_t-per_output": ({"name": "student_t", "df": "per_output"}, D),
    "discretized_logistic": ({"name": "discretized_logistic", "num_components": 2}, D),
}


@pytest.fixture(scope="module", params=list(SPECS), ids=list(SPECS))
def setup(request: pytest.FixtureRequest) -> tuple[LatentVariableModel, torch.Tensor, torch.Tensor]:
    """A 1-D latent model, 6 datapoints drawn from it, and their exact log p(x) by dense quadrature."""
    spec, size = SPECS[request.param]
    torch.manual_seed(0)
    model = LatentVariableModel.build(
        (size,), 1, {"name": "mlp", "hidden": [8]}, {"name": "mlp", "hidden": [8]}, spec
    )
    with torch.no_grad():
        x = model.observation(model.prior().sample((6,))).sample()
        if spec.get("size_factor"):
            x[:, -1] = torch.tensor([0.5, 1.0, 2.0, 1.5, 3.0, 0.8])
    model.likelihood.check(x)
    exact = create_estimator("quadrature", points=2000, lim=8.0).estimate(model, x).log_px
    return model, x, exact


@pytest.mark.parametrize(
    ("estimator", "slack"),
    [
        ({"name": "elbo", "num_samples": 1000}, None),
        ({"name": "importance", "num_samples": 2000}, 5.0),
        ({"name": "prior", "num_samples": 4000}, 5.0),
        ({"name": "ais", "num_samples": 8, "steps": 30, "leapfrog_steps": 3}, 5.0),
        ({"name": "quadrature", "points": 200}, 5.0),
    ],
    ids=["elbo", "importance", "prior", "ais", "quadrature"],
)
def test_estimator_works_with_likelihood(
    setup: tuple, estimator: dict[str, Any], slack: float | None
) -> None:
    model, x, exact = setup
    torch.manual_seed(1)
    out = create_estimator(estimator).estimate(model, x)
    assert out.log_px.shape == (6,) and torch.isfinite(out.log_px).all()
    if slack is None:  # a lower bound, up to its Monte Carlo noise
        assert out.log_px.mean() <= exact.mean() + 0.01, (out.log_px, exact)
        return
    # within slack Monte Carlo standard errors (or the grid's error) of the exact value, plus float32 rounding
    err = (out.log_px.double() - exact.double()).abs()
    assert (err <= slack * out.mc_stderr.double() + 2e-3).all(), (out.log_px, exact, out.mc_stderr)
