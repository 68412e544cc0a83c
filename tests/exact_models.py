"""Small models with a known log p(x) for estimator tests: linear-Gaussian (closed form) and 2-D Bernoulli."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from lvm import LatentVariableModel
from lvm.encoders.mlp import MLPDecoder
from lvm.likelihoods import Bernoulli, Gaussian
from lvm.likelihoods.base import inverse_softplus

MIN_SCALE = 1e-5  # DiagonalGaussianHead's floor on sigma


class Identity(nn.Module):
    """Encoder body f_e(x) = x, so the posterior head is an affine map of x."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return x


def set_head(model: LatentVariableModel, weight: Tensor, bias: Tensor, scale: Tensor) -> None:
    """q(z | x) = N(weight x + bias, diag(scale^2)) through lvm's DiagonalGaussianHead."""
    n = model.latent_dim
    lin = model.posterior_head.linear
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:n] = weight
        lin.bias[:n] = bias
        lin.bias[n:] = inverse_softplus(scale - MIN_SCALE)


class Spy(nn.Module):
    """Counts the z rows decoded."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, z: Tensor) -> Tensor:
        self.rows += z.shape[:-1].numel()
        return self.inner(z)


@dataclass
class LinearGaussian:
    """x = W z + b + s eps, z ~ N(0, I_L), W with orthogonal columns, so p(z | x) is a diagonal Gaussian.

    p(x) = N(b, W W^T + s^2 I); p(z | x) = N(A (x - b), diag(v)) with v = 1 / (1 + |W_l|^2 / s^2),
    A = diag(v) W^T / s^2.
    """

    model: LatentVariableModel
    x: Tensor  # (N, D) float32
    exact: Tensor  # (N,) float64
    a: Tensor  # (L, D)
    b: Tensor  # (D,)
    sd: Tensor  # (L,) posterior standard deviation
    marginal: MultivariateNormal  # p(x), float64

    def log_px(self, x: Tensor) -> Tensor:
        """Exact log p(x), (N,) float64."""
        return self.marginal.log_prob(x.double())

    def plant(self, scale: float = 1.0, shift: float = 0.0) -> LatentVariableModel:
        """Set q(z | x) = N(posterior mean + shift, (scale sd)^2) and return the model."""
        set_head(self.model, self.a.float(), (-self.a @ self.b).float() + shift, (scale * self.sd).float())
        return self.model


def linear_gaussian(
    d: int = 6, latent: int = 2, s: float = 0.5, n: int = 200, seed: int = 0
) -> LinearGaussian:
    """A linear-Gaussian model with the exact posterior as q, data drawn from p(x), exact log p(x)."""
    g = torch.Generator().manual_seed(seed)
    q_, _ = torch.linalg.qr(torch.randn(d, latent, generator=g, dtype=torch.float64))
    w = q_ * torch.tensor([2.0, 0.7], dtype=torch.float64)[:latent]  # W^T W = diag(4, 0.49)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    decoder = nn.Linear(latent, d)
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
    lik = Gaussian((d,), scale="fixed", init_scale=s)
    model = LatentVariableModel(Identity(d), decoder, lik, latent).eval()
    var = 1 / (1 + (w * w).sum(0) / s**2)  # (L,)
    a = var[:, None] * w.T / s**2  # (L, D)
    marginal = MultivariateNormal(b, w @ w.T + s**2 * torch.eye(d, dtype=torch.float64))
    x = _sample(marginal, n, seed)
    out = LinearGaussian(model, x.float(), marginal.log_prob(x.float().double()), a, b, var.sqrt(), marginal)
    out.plant()
    return out


def _sample(dist: MultivariateNormal, n: int, seed: int) -> Tensor:
    torch.manual_seed(seed)
    return dist.sample((n,))


def bernoulli_2d(d: int = 24, seed: int = 0) -> LatentVariableModel:
    """A 2-128-128-d ELU decoder with random weights and a Bernoulli likelihood over a 2-D latent.

    The output layer is scaled by 4, so p(x | z) is sharp and the posterior narrower than the prior.
    q(z | x) is an untrained linear head on x (a poor proposal).
    """
    torch.manual_seed(seed)
    lik = Bernoulli((d,))
    decoder = MLPDecoder(2, lik.raw_size, hidden=(128, 128), activation="elu")
    with torch.no_grad():
        decoder.output_layer.weight.mul_(4.0)
    return LatentVariableModel(Identity(d), decoder, lik, 2).eval()


def sample_data(model: LatentVariableModel, n: int, seed: int = 1) -> Tensor:
    """x ~ p(x) = int p(x | z) p(z) dz, (n, D)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.observation(torch.randn(n, model.latent_dim)).sample()
