"""Encoder bodies f_e and decoder bodies f_d, registered by name."""

from lvm.encoders.conv import ConvEncoder, ConvTransposeDecoder
from lvm.encoders.mlp import MLPDecoder, MLPEncoder  # noqa: E402  (register themselves)
from lvm.encoders.registry import (
    ACTIVATIONS,
    DECODERS,
    ENCODERS,
    create_decoder,
    create_encoder,
    list_decoders,
    list_encoders,
    register_decoder,
    register_encoder,
)

__all__ = [
    "ACTIVATIONS",
    "DECODERS",
    "ENCODERS",
    "ConvEncoder",
    "ConvTransposeDecoder",
    "MLPDecoder",
    "MLPEncoder",
    "create_decoder",
    "create_encoder",
    "list_decoders",
    "list_encoders",
    "register_decoder",
    "register_encoder",
]
