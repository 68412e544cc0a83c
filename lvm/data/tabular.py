"""Synthetic heterogeneous tabular data: x1 ~ Gamma, x2 ~ Normal, x3 ~ Normal(x2, x1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Gamma, Normal

from lvm.data.base import InMemoryDataModule, Split
from lvm.data.loader import derive_seed

__all__ = ["TabularDataModule", "sample_tabular", "tabular_log_density"]


def _check_params(k0: float, theta0: float, sigma0: float) -> None:
    for name, value in (("k0", k0), ("theta0", theta0), ("sigma0", sigma0)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number; got {value!r}")


def sample_tabular(n: int, k0: float, theta0: float, mu0: float, sigma0: float, seed: int) -> Tensor:
    """Draw n rows (x1, x2, x3), float32 (n, 3), reproducibly from ``seed``.

    The global RNG is forked, so the caller's random state is untouched (torch's Gamma sampler
    accepts no generator).
    """
    _check_params(k0, theta0, sigma0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        one = torch.ones((), dtype=torch.float64)
        x1 = Gamma(k0 * one, one / theta0).sample((n,))
        x2 = mu0 + sigma0 * torch.randn(n, dtype=torch.float64)
        x3 = x2 + x1 * torch.randn(n, dtype=torch.float64)
    return torch.stack([x1, x2, x3], dim=1).to(torch.float32)


def tabular_log_density(x: Tensor, k0: float, theta0: float, mu0: float, sigma0: float) -> Tensor:
    """Exact log p(x) of the generating process, (B,), for x of shape (B, 3).

    log p(x) = log Gamma(x1 | shape k0, scale theta0) + log N(x2 | mu0, sigma0)
    + log N(x3 | x2, x1), with x1 the standard deviation of x3. A ceiling for any
    model's log-likelihood on this data.
    """
    _check_params(k0, theta0, sigma0)
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"tabular_log_density expects x of shape (B, 3); got {tuple(x.shape)}")
    x1, x2, x3 = x.unbind(1)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    lp = Gamma(k0 * one, one / theta0, validate_args=False).log_prob(x1)
    lp = lp + Normal(mu0 * one, sigma0 * one).log_prob(x2)
    return lp + Normal(x2, x1, validate_args=False).log_prob(x3)


class TabularDataModule(InMemoryDataModule):
    """Three observed variables of different types (heterogeneous data as in Nazabal et al. 2020, HI-VAE).

    x1 ~ Gamma(shape k0, scale theta0), x2 ~ Normal(mu0, sigma0), x3 ~ Normal(x2, x1), drawn
    with fixed seeds derived from ``seed`` (one stream per split, so the test set does not move
    when ``n_train`` changes). Datapoints have shape (3,).

    Args:
        n_train: Training rows.
        n_val: Validation rows (0: none).
        n_test: Test rows (0: none).
        k0: Gamma shape of x1.
        theta0: Gamma scale of x1.
        mu0: Mean of x2.
        sigma0: Standard deviation of x2.
        seed: Seed of the data and of the shuffling.
        batch_size: Training batch size per rank.
        eval_batch_size: Validation/test batch size per rank.
    """

    def __init__(
        self,
        n_train: int = 10000,
        n_val: int = 2000,
        n_test: int = 2000,
        k0: float = 2.0,
        theta0: float = 1.0,
        mu0: float = 0.0,
        sigma0: float = 1.0,
        seed: int = 0,
        batch_size: int = 256,
        eval_batch_size: int = 2000,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        if n_train < 1 or n_val < 0 or n_test < 0:
            raise ValueError(f"need n_train >= 1 and n_val, n_test >= 0; got {n_train}, {n_val}, {n_test}")
        _check_params(k0, theta0, sigma0)
        self.save_hyperparameters()
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.k0, self.theta0, self.mu0, self.sigma0 = float(k0), float(theta0), float(mu0), float(sigma0)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (3,)

    def _load(self) -> dict[str, Split]:
        params = (self.k0, self.theta0, self.mu0, self.sigma0)
        return {
            name: Split(sample_tabular(n, *params, seed=derive_seed(self.seed, i, 3)))
            for i, (name, n) in enumerate(self.sizes.items())
            if n > 0
        }

    def log_density(self, x: Tensor) -> Tensor:
        """Exact log p(x), (B,), under this module's generating parameters."""
        return tabular_log_density(x, self.k0, self.theta0, self.mu0, self.sigma0)
