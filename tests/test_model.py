"""LatentVariableModel: closed-form KL, output bias at the training mean, sampling, reconstruction, interpolation."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from lvm import LatentVariableModel


def tiny_model(d: int = 12, latent: int = 3, seed: int = 0) -> LatentVariableModel:
    torch.manual_seed(seed)
    return LatentVariableModel.build(
        (d,), latent, {"name": "mlp", "hidden": [16]}, {"name": "mlp", "hidden": [16]}
    )


def test_analytic_kl_matches_closed_form_and_monte_carlo() -> None:
    torch.manual_seed(0)
    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.3
    q = Independent(Normal(loc, scale), 1)
    model = tiny_model()
    kl = model.kl(q)
    # Kingma & Welling (2014), appendix B: 1/2 sum(var + mu^2 - 1 - log var)
    closed = 0.5 * (scale**2 + loc**2 - 1 - torch.log(scale**2)).sum(-1)
    torch.testing.assert_close(kl, closed)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    assert torch.allclose(mc, kl, atol=0.02), (mc, kl)


def test_output_bias_init_gives_training_mean() -> None:
    model = tiny_model()
    mean = torch.linspace(0.05, 0.95, 12)
    assert model.init_output_bias(mean)
    with torch.no_grad():
        model.decoder.output_layer.weight.zero_()
    torch.testing.assert_close(
        model.observation(torch.randn(2, 3)).mean, mean.expand(2, 12), atol=1e-5, rtol=1e-4
    )


def test_sample_reconstruct_interpolate() -> None:
    model = tiny_model(d=20)
    x = (torch.rand(4, 20) < 0.5).float()
    s = model.sample(25)
    assert s.shape == (25, 20) and ((s > 0) & (s < 1)).all()  # activation probabilities, not binarised
    assert model.reconstruct(x).shape == (4, 20)
    path = model.interpolate(x[0], x[1], steps=25)
    assert path.shape == (25, 20)
    ends = model.observation(model.encode(x[:2])).mean
    torch.testing.assert_close(path[0], ends[0])
    torch.testing.assert_close(path[-1], ends[1])
    mid = model.observation(model.encode(x[:2]).mean(0)).mean
    torch.testing.assert_close(model.interpolate(x[0], x[1], steps=3)[1], mid)
