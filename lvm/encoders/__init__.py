"""Encoder bodies f_e and decoder bodies f_d, registered by name."""

from lvm.encoders import registry
from lvm.encoders.conv import ConvEncoder, ConvTransposeDecoder
from lvm.encoders.mlp import MLPDecoder, MLPEncoder  # noqa: E402  (register themselves)
from lvm.encoders.registry import *  # noqa: F403  (the registry's functions, listed in its __all__)

__all__ = ["ConvEncoder", "ConvTransposeDecoder", "MLPDecoder", "MLPEncoder", *registry.__all__]  # noqa: PLE0604
