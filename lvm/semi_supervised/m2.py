"""The M2 model of Kingma et al. (2014): a VAE with a partially observed class label, from registered parts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, kl_divergence

from lvm.distributions import DiagonalGaussianHead, StandardNormalPrior
from lvm.encoders import create_decoder, create_encoder
from lvm.likelihoods import Likelihood, create_likelihood
from lvm.model import LatentVariableModel
from lvm.registry import Spec

__all__ = ["M2Bound", "M2Model"]


@dataclass(frozen=True)
class M2Bound:
    """Per-datapoint terms of the M2 objective for a batch of labelled and unlabelled points.

    Attributes:
        value: L(x, y) where y is observed (a bound on log p(x, y)), U(x) where not (on log p(x)); (B,).
        log_q_y: log q(y | x) at the observed label, 0 where y is unobserved; (B,).
        entropy: H(q(y | x)) for every point; (B,).
        logits: Classifier logits of q(y | x); (B, C).
        labelled: True where y is observed; (B,).
        objective: What the optimiser maximises, ``value + alpha * log_q_y``; (B,).
    """

    value: Tensor
    log_q_y: Tensor
    entropy: Tensor
    logits: Tensor
    labelled: Tensor
    objective: Tensor


class M2Model(nn.Module):
    r"""M2 (Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised learning with deep generative models").

    Generative model p(x, y, z) = p(y) p(z) p(x | y, z) with p(y) = Cat(1/C), p(z) = N(0, I) and
    p(x | y, z) = P_d(f_d([z, onehot(y)])); inference model q(y | x) = Cat(softmax(g(x))) and
    q(z | x, y) = P_e([f_e(x), onehot(y)]), with f_e, g (classifier body), f_d and P_d taken from
    lvm's encoder, decoder and likelihood registries. The bounds (paper, eqs. 6-9):

        L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))  <= log p(x, y)
        U(x)    = sum_y q(y | x) L(x, y) + H(q(y | x))                             <= log p(x)
        J^alpha = sum_labelled [L(x, y) + alpha log q(y | x)] + sum_unlabelled U(x)

    U(x) enumerates the C classes in one batched pass, (C, B); the reparameterised noise of z is
    shared across the C classes (common random numbers), so row c equals L(x, c) drawn alone.

    Args:
        encoder: Body f_e with attribute ``out_features``.
        classifier: Body g with attribute ``out_features`` (a linear layer to C logits is added).
        decoder: Body f_d, [z, onehot(y)] (..., L + C) -> raw likelihood parameters.
        likelihood: P_d and the observation model.
        latent_dim: Size of z.
        num_classes: Number of classes C.
    """

    def __init__(
        self,
        encoder: nn.Module,
        classifier: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        self.encoder, self.classifier, self.decoder, self.likelihood = (
            encoder,
            classifier,
            decoder,
            likelihood,
        )
        self.posterior_head = DiagonalGaussianHead(encoder.out_features + num_classes, latent_dim)
        self.classifier_head = nn.Linear(classifier.out_features, num_classes)
        self.prior_dist = StandardNormalPrior(latent_dim)
        self.latent_dim, self.num_classes = latent_dim, num_classes

    @classmethod
    def build(
        cls,
        event_shape: Sequence[int],
        latent_dim: int,
        num_classes: int,
        encoder: Spec = "mlp",
        classifier: Spec = "mlp",
        decoder: Spec = "mlp",
        likelihood: Spec = "bernoulli",
    ) -> M2Model:
        """Compose registered parts by name (or ``{"name": ..., **kwargs}`` specs)."""
        shape = tuple(event_shape)
        lik = create_likelihood(likelihood, shape)
        dec = create_decoder(decoder, latent_dim + num_classes, lik.raw_size, shape)
        enc, cls_body = create_encoder(encoder, shape), create_encoder(classifier, shape)
        return cls(enc, cls_body, dec, lik, latent_dim, num_classes)

    @property
    def event_shape(self) -> torch.Size:
        return self.likelihood.event_shape

    init_output_bias = LatentVariableModel.init_output_bias  # the same decoder and likelihood contract

    def check_labels(self, y: Tensor, unobserved: bool = True) -> None:
        """Raise ValueError unless ``y`` holds integer labels in [0, C) (or -1, if ``unobserved``)."""
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor; got dtype {y.dtype}")
        low = -1 if unobserved else 0
        if y.numel() and (y.min() < low or y.max() >= self.num_classes):
            raise ValueError(
                f"labels must be in [0, {self.num_classes})"
                + (" or -1 for unobserved" if unobserved else "")
                + f"; got min={int(y.min())}, max={int(y.max())}"
            )

    # -- distributions ---------------------------------------------------------------------
    def classify(self, x: Tensor) -> Categorical:
        """q(y | x), batch shape (B,)."""
        return Categorical(logits=self.classifier_head(self.classifier(x)), validate_args=False)

    def _onehot(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        return F.one_hot(y, self.num_classes).to(dtype)  # (*Y, B, C)

    def _posterior(self, h: Tensor, y: Tensor) -> Independent:
        hy = torch.cat([h.expand(*y.shape, h.shape[-1]), self._onehot(y, h.dtype)], -1)  # (*Y, B, H + C)
        return self.posterior_head(hy)

    def posterior(self, x: Tensor, y: Tensor) -> Independent:
        """q(z | x, y) for labels y of shape (*Y, B), batch shape (*Y, B)."""
        return self._posterior(self.encoder(x), y)

    def observation(self, z: Tensor, y: Tensor) -> Distribution:
        """p(x | y, z) for z (..., L) and y broadcastable to z.shape[:-1]: batch shape z.shape[:-1]."""
        onehot = self._onehot(y, z.dtype).expand(*z.shape[:-1], self.num_classes)
        return self.likelihood(self.decoder(torch.cat([z, onehot], -1)))

    # -- bounds ----------------------------------------------------------------------------
    def _elbo(self, h: Tensor, x: Tensor, y: Tensor, num_samples: int) -> Tensor:
        q = self._posterior(h, y)  # batch (*Y, B)
        shape = (num_samples, *[1] * (y.dim() - 1), y.shape[-1], self.latent_dim)
        eps = torch.randn(shape, device=h.device, dtype=h.dtype)
        z = q.base_dist.loc + q.base_dist.scale * eps  # (S, *Y, B, L), noise shared over *Y
        rec = self.observation(z, y).log_prob(x).mean(0)  # (*Y, B)
        return rec - kl_divergence(q, self.prior_dist()) - math.log(self.num_classes)

    def elbo(self, x: Tensor, y: Tensor, num_samples: int = 1) -> Tensor:
        """L(x, y) for x (B, ...) and labels y (*Y, B) in [0, C): shape (*Y, B)."""
        self.check_labels(y, unobserved=False)
        return self._elbo(self.encoder(x), x, y, num_samples)

    def enumerate_elbo(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """L(x, c) for every class c, (C, B), in one batched pass."""
        y = torch.arange(self.num_classes, device=x.device)[:, None].expand(-1, x.shape[0])
        return self.elbo(x, y, num_samples)

    def bound(self, x: Tensor, y: Tensor | None = None, alpha: float = 0.0, num_samples: int = 1) -> M2Bound:
        """Per-datapoint M2 terms for x (B, ...) and labels y (B,), -1 (or ``y=None``) where unobserved."""
        y = torch.full(x.shape[:1], -1, dtype=torch.long, device=x.device) if y is None else y
        self.check_labels(y)
        if y.shape != x.shape[:1]:
            raise ValueError(f"labels must have shape {tuple(x.shape[:1])}; got {tuple(y.shape)}")
        h, logits = self.encoder(x), self.classifier_head(self.classifier(x))  # (B, H), (B, C)
        log_q = logits.log_softmax(-1)
        entropy = -(log_q.exp() * log_q).sum(-1)  # (B,)
        labelled = y >= 0
        lab, unl = labelled.nonzero().squeeze(-1), (~labelled).nonzero().squeeze(-1)
        value, log_q_y = logits.new_zeros(x.shape[0]), logits.new_zeros(x.shape[0])
        if len(lab):
            value = value.index_put((lab,), self._elbo(h[lab], x[lab], y[lab], num_samples))
            log_q_y = log_q_y.index_put((lab,), log_q[lab].gather(-1, y[lab, None]).squeeze(-1))
        if len(unl):
            ys = torch.arange(self.num_classes, device=x.device)[:, None].expand(-1, len(unl))
            elbos = self._elbo(h[unl], x[unl], ys, num_samples)  # (C, B_u)
            u = (log_q[unl].exp() * elbos.T).sum(-1) + entropy[unl]  # (B_u,)
            value = value.index_put((unl,), u)
        return M2Bound(value, log_q_y, entropy, logits, labelled, value + alpha * log_q_y)

    @torch.no_grad()
    def sample(self, y: Tensor, mean: bool = True) -> Tensor:
        """x ~ p(x | y, z), z ~ p(z), one per label in y (n,); ``mean=True`` gives E[x | y, z]."""
        self.check_labels(y, unobserved=False)
        y = y.to(self.classifier_head.weight.device)
        p = self.observation(self.prior_dist().sample(y.shape), y)
        return p.mean if mean else p.sample()
