"""Objectives: the ELBO's terms, the IWAE bound's ordering in k and exactness with the true posterior."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

import lvm
from lvm import LatentVariableModel, elbo, iwae_bound


def tiny_model(
    d: int = 12, latent: int = 3, seed: int = 0, likelihood: str = "bernoulli"
) -> LatentVariableModel:
    torch.manual_seed(seed)
    return LatentVariableModel.build(
        (d,), latent, {"name": "mlp", "hidden": [16]}, {"name": "mlp", "hidden": [16]}, likelihood
    )


def test_elbo_terms_are_consistent() -> None:
    model = tiny_model()
    x = (torch.rand(8, 12) > 0.5).float()
    b = elbo(model, x, num_samples=3, kl_weight=0.25)
    assert b.value.shape == (8,)
    torch.testing.assert_close(b.value, b.reconstruction - b.kl)
    torch.testing.assert_close(b.objective, b.reconstruction - 0.25 * b.kl)


def test_iwae_bound_is_above_elbo_and_non_decreasing_in_k() -> None:
    model = tiny_model(seed=1)
    x = (torch.rand(64, 12) > 0.5).float()
    torch.manual_seed(0)
    reps = 200
    means = {}
    with torch.no_grad():
        for k in (1, 5, 50):
            vals = torch.stack([iwae_bound(model, x, k).value for _ in range(reps)])  # (reps, B)
            means[k] = (vals.mean().item(), vals.std().item() / math.sqrt(vals.numel()))
        e = torch.stack([elbo(model, x).value for _ in range(reps)]).mean().item()
    assert abs(means[1][0] - e) < 4 * means[1][1] + 1e-3  # L_1 is the ELBO
    assert means[5][0] > means[1][0] + 3 * means[1][1]
    assert means[50][0] > means[5][0] + 3 * means[5][1]


def test_iwae_with_exact_posterior_is_exact() -> None:
    """With q = p(z | x), every importance weight equals p(x): L_k = log p(x) for any k."""
    torch.manual_seed(0)
    d, s = 4, 0.5
    w = torch.randn(d, 1)
    model = LatentVariableModel.build(
        (d,),
        1,
        {"name": "mlp", "hidden": [4]},
        {"name": "mlp", "hidden": [4]},
        {"name": "gaussian", "scale": "fixed", "init_scale": s},
    )
    model.decoder = torch.nn.Linear(1, d)
    with torch.no_grad():
        model.decoder.weight.copy_(w)
        model.decoder.bias.zero_()
    x = torch.randn(5, d)
    prec = 1 + (w.T @ w) / s**2  # (1, 1)
    post_var = 1 / prec
    post_mean = (x @ w) / s**2 * post_var  # (B, 1)
    model.posterior = lambda _x: Independent(Normal(post_mean, post_var.sqrt().expand_as(post_mean)), 1)  # type: ignore[method-assign]
    exact = torch.distributions.MultivariateNormal(torch.zeros(d), w @ w.T + s**2 * torch.eye(d)).log_prob(x)
    for k in (1, 7):
        torch.testing.assert_close(iwae_bound(model, x, k).value, exact, atol=1e-4, rtol=1e-5)


def _linear_gaussian(d: int = 4, s: float = 0.5, seed: int = 0) -> tuple[LatentVariableModel, Tensor]:
    """z ~ N(0, 1), x | z ~ N(w z, s^2 I): returns the model and w (d, 1); log p(x) = N(x; 0, w w^T + s^2 I)."""
    torch.manual_seed(seed)
    w = torch.randn(d, 1)
    model = LatentVariableModel.build(
        (d,), 1, "mlp", "mlp", {"name": "gaussian", "scale": "fixed", "init_scale": s}
    )
    model.decoder = torch.nn.Linear(1, d)
    with torch.no_grad():
        model.decoder.weight.copy_(w)
        model.decoder.bias.zero_()
    return model, w


def test_prior_mc_bound_is_logmeanexp_of_likelihood_at_prior_draws() -> None:
    model = tiny_model(seed=2)
    x = (torch.rand(5, 12) > 0.5).float()
    torch.manual_seed(7)
    b = lvm.prior_mc_bound(model, x, num_samples=6)
    torch.manual_seed(7)
    z = model.prior().sample((6, 5))  # the same draws, by hand
    log_px_z = model.observation(z).log_prob(x).double()  # (6, 5)
    by_hand = (log_px_z.exp().mean(0)).log() if log_px_z.min() > -700 else None
    expected = torch.logsumexp(log_px_z, 0) - math.log(6)
    torch.testing.assert_close(b.value.double(), expected, atol=1e-5, rtol=0)
    if by_hand is not None:
        torch.testing.assert_close(expected, by_hand, atol=1e-9, rtol=0)
    torch.testing.assert_close(b.reconstruction, log_px_z.mean(0).float())
    assert (b.kl == 0).all() and torch.equal(b.objective, b.value)


def test_prior_mc_bound_is_below_log_px_on_average_and_registered() -> None:
    """E[log mean p(x | z_k)] <= log p(x) (Jensen), approaching it as K grows (linear-Gaussian, exact)."""
    model, w = _linear_gaussian()
    x = torch.randn(6, 4) * 2
    exact = torch.distributions.MultivariateNormal(torch.zeros(4), w @ w.T + 0.25 * torch.eye(4)).log_prob(x)
    fn = lvm.objectives.OBJECTIVES.get("prior_mc")
    torch.manual_seed(0)
    with torch.no_grad():
        gaps = {k: torch.stack([exact - fn(model, x, k).value for _ in range(300)]).mean(0) for k in (1, 100)}
    assert (gaps[1] > 0).all() and (gaps[100] > -0.02).all()
    assert (gaps[100] < gaps[1]).all(), gaps


def test_prior_mc_bound_trains_only_the_decoder() -> None:
    model = tiny_model(seed=3)
    x = (torch.rand(4, 12) > 0.5).float()
    lvm.prior_mc_bound(model, x, num_samples=8).objective.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
