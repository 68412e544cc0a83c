"""Encoder (f_e) and decoder (f_d) registries, and the activation table they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from lvm.registry import Registry, Spec, UnknownNameError

__all__ = [
    "ACTIVATIONS",
    "DECODERS",
    "ENCODERS",
    "activation",
    "create_decoder",
    "create_encoder",
    "list_decoders",
    "list_encoders",
    "register_decoder",
    "register_encoder",
]

#: Encoder bodies f_e: ``cls(event_shape, **kwargs)`` with attribute ``out_features``.
ENCODERS: Registry[type[nn.Module]] = Registry("encoder", "lvm.encoders")
#: Decoder bodies f_d (ending in P_d's linear map): ``cls(latent_dim, raw_size, event_shape, **kwargs)``.
DECODERS: Registry[type[nn.Module]] = Registry("decoder", "lvm.decoders")

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def register_encoder(name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator registering an encoder body under ``name``."""
    return ENCODERS.register(name, override=override)


def register_decoder(name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator registering a decoder body under ``name``."""
    return DECODERS.register(name, override=override)


def create_encoder(spec: Spec, event_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    """Build encoder body ``spec`` (a name or ``{"name": ..., **kwargs}``) for data of ``event_shape``."""
    return ENCODERS.create(spec, event_shape=tuple(event_shape), **kwargs)


def create_decoder(
    spec: Spec, latent_dim: int, raw_size: int, event_shape: Sequence[int], **kwargs: Any
) -> nn.Module:
    """Build decoder ``spec`` mapping z (..., latent_dim) to raw likelihood parameters (..., raw_size)."""
    return DECODERS.create(
        spec, latent_dim=latent_dim, raw_size=raw_size, event_shape=tuple(event_shape), **kwargs
    )


def list_encoders() -> list[str]:
    """Names of all encoder bodies, built-in and plugins."""
    return ENCODERS.names()


def list_decoders() -> list[str]:
    """Names of all decoder bodies, built-in and plugins."""
    return DECODERS.names()
