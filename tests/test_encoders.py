"""Encoder and decoder bodies: every pair composes with every likelihood; bad names and shapes are refused."""

from __future__ import annotations

import pytest
import torch

import lvm
from lvm import LatentVariableModel


@pytest.mark.parametrize(
    "encoder,decoder,shape",
    [("mlp", "mlp", (784,)), ("conv", "conv_transpose", (1, 28, 28)), ("mlp", "conv_transpose", (2, 8, 8))],
)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gamma"])
def test_networks_compose_with_any_likelihood(
    encoder: str, decoder: str, shape: tuple, likelihood: str
) -> None:
    model = LatentVariableModel.build(shape, 4, encoder, decoder, likelihood)
    x = torch.rand(3, *shape) * 0.9 + 0.05
    q = model.posterior(x)
    assert q.batch_shape == (3,) and q.event_shape == (4,)
    z = q.rsample((2,))
    p = model.observation(z)
    assert p.event_shape == shape and p.batch_shape == (2, 3)
    lp = p.log_prob(x)
    assert lp.shape == (2, 3) and torch.isfinite(lp).all()
    lp.sum().backward()
    assert all(torch.isfinite(prm.grad).all() for prm in model.parameters() if prm.grad is not None)


def test_conv_encoder_rejects_flat_data() -> None:
    with pytest.raises(ValueError, match=r"image-shaped data \(C, H, W\); got event_shape \(784,\)"):
        lvm.create_encoder("conv", (784,))


def test_unknown_activation_lists_known() -> None:
    with pytest.raises(ValueError, match="known: tanh, relu"):
        lvm.create_encoder({"name": "mlp", "activation": "tanhh"}, (4,))


def test_unknown_encoder_suggests_closest() -> None:
    with pytest.raises(lvm.UnknownNameError, match="Did you mean 'conv'"):
        lvm.create_encoder("cnv", (1, 28, 28))
