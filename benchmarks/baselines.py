"""Hand-written PyTorch baselines that lvm is measured against: the reference VAE and the decoder floor.

The reference work is the one-layer VAE of Burda, Grosse & Salakhutdinov (2016): encoder
784-200-200-(2x50), decoder 50-200-200-784, tanh, Bernoulli likelihood, analytic-KL ELBO, Adam 1e-3,
batch 100. These modules write it in plain torch, with the same parameterisation as lvm's
(sigma = softplus(raw) + 1e-5), so that a difference in time is overhead and not maths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvVAE",
    "MLPVAE",
    "bernoulli_log_prob",
    "decoder_floor",
    "make_binary_data",
    "train_epoch_dataloader",
    "train_epoch_sliced",
]

MIN_SCALE = 1e-5


def make_binary_data(
    n: int = 60_000, shape: Sequence[int] = (784,), p: float = 0.13, seed: int = 0
) -> Tensor:
    """Random binary float32 data (n, *shape), about the density of binarised MNIST; needs no files."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *shape), generator=g) < p).float()


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class _BernoulliLogProb(torch.autograd.Function):
    """x f - softplus(f) without log1p (a copy of lvm's, so that this file needs only torch)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(f, x)
        return torch.mul(x, f).sub_(torch.exp(-f.abs()).add_(1).log_().add_(f.clamp(min=0)))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        f, x = ctx.saved_tensors
        return (x - torch.sigmoid(f)) * grad, None


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """Elementwise log Bernoulli(x | sigma(logits)), logits and x of the same shape."""
    return _BernoulliLogProb.apply(logits, x)


class _ELBOMixin(nn.Module):
    """-ELBO per batch: Bernoulli log p(x | z) from logits and the closed-form Gaussian KL.

    ``tuned=False`` writes log p(x | z) as a minimal loop does, with
    ``binary_cross_entropy_with_logits``; ``tuned=True`` uses the kernel lvm uses.
    """

    latent_dim: int
    tuned: bool = False

    def loss(self, x: Tensor) -> Tensor:
        """Mean over the batch of -ELBO(x), one reparameterised sample of z."""
        loc, raw = self.encoder(x).chunk(2, dim=-1)  # (B, L) each
        scale = F.softplus(raw) + MIN_SCALE
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z).reshape(x.shape)
        if self.tuned:
            rec = bernoulli_log_prob(logits, x).flatten(1).sum(-1)  # (B,)
        else:
            rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum(-1) - scale.log().sum(-1)  # (B,)
        return (kl - rec).mean()


class MLPVAE(_ELBOMixin):
    """The reference VAE in plain torch: 784-200-200-(2L) encoder, L-200-200-784 decoder, tanh."""

    def __init__(self, data_dim: int = 784, hidden: Sequence[int] = (200, 200), latent_dim: int = 50) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        # tanh after the last hidden layer too, as in lvm, then the linear head to (loc, raw scale)
        self.encoder = nn.Sequential(
            *_mlp([data_dim, *hidden]), nn.Tanh(), nn.Linear(hidden[-1], 2 * latent_dim)
        )
        self.decoder = _mlp([latent_dim, *hidden, data_dim])


class ConvVAE(_ELBOMixin):
    """lvm's default conv encoder / transposed-conv decoder (32-64 channels, 256 hidden, relu) in plain torch."""

    def __init__(self, image: Sequence[int] = (1, 28, 28), latent_dim: int = 50, hidden: int = 256) -> None:
        super().__init__()
        c, h, w = image
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(c, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, 64 * (h // 4) * (w // 4)), nn.ReLU(),
            nn.Unflatten(-1, (64, h // 4, w // 4)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, c, 4, stride=2, padding=1),
        )  # fmt: skip


def train_epoch_sliced(
    model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, batch_size: int = 100
) -> None:
    """One epoch of the minimal hand-written loop: a permutation, batches gathered from ``x``, no syncs."""
    perm = torch.randperm(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], batch_size):
        xb = x[perm[start : start + batch_size]]
        loss = model.loss(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train_epoch_dataloader(
    model: nn.Module, opt: torch.optim.Optimizer, loader: torch.utils.data.DataLoader
) -> None:
    """One epoch of the same loop through a default ``DataLoader`` (per-item indexing and collate)."""
    for (xb,) in loader:
        loss = model.loss(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def decoder_floor(decoder: nn.Module, batch: int, latent_dim: int, num_samples: int, chunk: int) -> int:
    """The floor of importance sampling: decoder forward passes for ``num_samples * batch`` latents.

    Returns the number of latents decoded. Noise is drawn per chunk, as any estimator must.
    """
    done = 0
    for start in range(0, num_samples, chunk):
        c = min(chunk, num_samples - start)
        decoder(torch.randn(c, batch, latent_dim))
        done += c * batch
    return done


def num_params(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
