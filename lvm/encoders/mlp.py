"""Fully connected encoder and decoder bodies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lvm.encoders.registry import activation, register_decoder, register_encoder

__all__ = ["MLPDecoder", "MLPEncoder", "mlp"]


def mlp(sizes: Sequence[int], act: str, final_activation: bool) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


@register_encoder("mlp")
class MLPEncoder(nn.Module):
    """f_e: flatten x (B, *event_shape) and apply an MLP, h = MLP(x) of width ``hidden[-1]``.

    Args:
        event_shape: Shape of one datapoint.
        hidden: Widths of the hidden layers, e.g. ``(200, 200)`` (Burda et al. 2016).
        activation: Name of the nonlinearity (``tanh``, ``relu``, ``elu``, ...).
    """

    def __init__(
        self, event_shape: Sequence[int], hidden: Sequence[int] = (200, 200), activation: str = "tanh"
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("mlp encoder needs at least one hidden layer; got hidden=[]")
        self.event_shape = tuple(event_shape)
        self.net = mlp([math.prod(self.event_shape), *hidden], activation, final_activation=True)
        self.out_features = int(hidden[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(x.dim() - len(self.event_shape)))  # (B, H)


@register_decoder("mlp")
class MLPDecoder(nn.Module):
    """f_d followed by P_d's linear map: raw = W_out MLP(z) + b_out, for z of any leading shape.

    Args:
        latent_dim: Size of z.
        raw_size: Number of raw likelihood parameters per datapoint (``likelihood.raw_size``).
        event_shape: Shape of one datapoint (unused by the MLP; kept for a uniform signature).
        hidden: Widths of the hidden layers.
        activation: Name of the nonlinearity.
    """

    def __init__(
        self,
        latent_dim: int,
        raw_size: int,
        event_shape: Sequence[int] = (),
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.net = mlp([latent_dim, *hidden, raw_size], activation, final_activation=False)

    @property
    def output_layer(self) -> nn.Linear:
        return self.net[-1]  # type: ignore[return-value]

    def set_output_bias(self, raw: Tensor) -> None:
        """Set the output bias to ``raw`` (raw_size,), e.g. logit of the training mean."""
        with torch.no_grad():
            self.output_layer.bias.copy_(raw.reshape(-1))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (..., raw_size)
