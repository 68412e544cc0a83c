"""An MLP encoder on sign(x) log(1 + |x|), for columns of counts and reals on very different scales.

A count column of a few hundred (at bats) beside one of 0 to 3 (triples) saturates a tanh MLP fed
the raw values; scVI feeds its encoder log(1 + x) for the same reason (Lopez et al. 2018,
``log_variational``). sign(x) log(1 + |x|) is log(1 + x) on counts and also takes the negative
values of real columns. Registered as the ``symlog_mlp`` encoder on import.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lvm.encoders import MLPEncoder, register_encoder

__all__ = ["SymlogMLPEncoder"]


@register_encoder("symlog_mlp")
class SymlogMLPEncoder(MLPEncoder):
    """h = MLP(sign(x) log(1 + |x|)); the arguments are :class:`~lvm.encoders.MLPEncoder`'s."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(torch.sign(x) * torch.log1p(x.abs()))
