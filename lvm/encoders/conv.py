"""Convolutional encoder and transposed-convolutional decoder bodies for image data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lvm.encoders.registry import activation, register_decoder, register_encoder

__all__ = ["ConvEncoder", "ConvTransposeDecoder"]


def _image_shape(event_shape: Sequence[int], kind: str) -> tuple[int, int, int]:
    if len(event_shape) != 3:
        raise ValueError(
            f"{kind} needs image-shaped data (C, H, W); got event_shape {tuple(event_shape)}. "
            f"Use flatten: false in the data module."
        )
    c, h, w = (int(s) for s in event_shape)
    return c, h, w


@register_encoder("conv")
class ConvEncoder(nn.Module):
    """f_e for images: stride-2 convolutions (kernel 4, padding 1), then a linear layer.

    Each convolution halves H and W; with ``channels=(32, 64)`` a 28x28 image becomes 64x7x7.

    Args:
        event_shape: ``(C, H, W)``.
        channels: Output channels of each convolution.
        hidden: Width of the final linear layer (``out_features``).
        activation: Name of the nonlinearity.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _image_shape(event_shape, "conv encoder")
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), _act(activation)]
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"conv encoder: {len(channels)} stride-2 layers shrink {tuple(event_shape)} to nothing"
            )
        self.event_shape = tuple(event_shape)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, hidden), _act(activation))
        self.out_features = int(hidden)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[: x.dim() - 3]
        return self.net(x.reshape(-1, *self.event_shape)).reshape(*batch, self.out_features)  # (B, H)


def _act(name: str) -> nn.Module:
    return activation(name)


@register_decoder("conv_transpose")
class ConvTransposeDecoder(nn.Module):
    """f_d for images: a linear layer to a small feature map, then stride-2 transposed convolutions.

    The last layer emits ``P * C`` channels (P = raw parameters per pixel), flattened
    parameter-major to (..., P*C*H*W), the layout :meth:`Likelihood.split` expects.

    Args:
        latent_dim: Size of z.
        raw_size: ``likelihood.raw_size``; must be a multiple of C*H*W.
        event_shape: ``(C, H, W)``; H and W divisible by ``2 ** len(channels)``.
        channels: Channels of the feature maps, coarsest first.
        hidden: Width of the first linear layer.
        activation: Name of the nonlinearity.
    """

    def __init__(
        self,
        latent_dim: int,
        raw_size: int,
        event_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _image_shape(event_shape, "conv_transpose decoder")
        if raw_size % (c * h * w):
            raise ValueError(
                f"conv_transpose decoder: raw_size {raw_size} is not a multiple of C*H*W={c * h * w}"
            )
        scale = 2 ** len(channels)
        if h % scale or w % scale:
            raise ValueError(f"conv_transpose decoder: H, W = {h}, {w} must be divisible by {scale}")
        self.start = (int(channels[0]), h // scale, w // scale)
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden),
            _act(activation),
            nn.Linear(hidden, math.prod(self.start)),
            _act(activation),
            nn.Unflatten(-1, self.start),
        ]
        ch = list(channels) + [raw_size // (h * w)]
        for i, (a, b) in enumerate(zip(ch[:-1], ch[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(ch) - 2:
                layers.append(_act(activation))
        self.net = nn.Sequential(*layers)
        self.raw_size = raw_size
        self.output_bias = nn.Parameter(torch.zeros(raw_size))

    def set_output_bias(self, raw: Tensor) -> None:
        """Set the per-output bias to ``raw`` (raw_size,), e.g. logit of the training mean."""
        with torch.no_grad():
            self.output_bias.copy_(raw.reshape(-1))

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1])).reshape(*batch, self.raw_size)
        return out + self.output_bias  # (..., raw_size)
