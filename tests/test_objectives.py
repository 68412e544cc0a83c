"""Objectives: the ELBO's terms, the IWAE bound's ordering in k and exactness with the true posterior."""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

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
