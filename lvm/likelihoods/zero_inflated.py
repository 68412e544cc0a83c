"""Zero inflation of a count distribution: an extra point mass at 0 with a gate from the decoder."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

__all__ = ["ZeroInflated"]

_NO_SAMPLES = torch.Size()


class ZeroInflated(Distribution):
    r"""p(x) = pi 1[x = 0] + (1 - pi) q(x), pi = sigma(h), for a count distribution q.

    In log space (as scVI's ``log_zinb_positive``, Lopez et al. 2018): log p(x) = log sigma(-h)
    + log q(x) for x > 0 and log p(0) = logaddexp(log sigma(h), log sigma(-h) + log q(0)). The
    mean is (1 - pi) E_q[x] and the variance (1 - pi) (Var_q[x] + pi E_q[x]^2).

    Args:
        base: q, elementwise (event shape ()).
        gate_logits: h, broadcastable to q's batch shape.
    """

    arg_constraints: ClassVar[dict] = {"gate_logits": constraints.real}
    support = constraints.nonnegative_integer
    has_rsample = False

    def __init__(self, base: Distribution, gate_logits: Tensor) -> None:
        self.base = base
        self.gate_logits = gate_logits.expand(base.batch_shape)
        super().__init__(base.batch_shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        h = self.gate_logits
        nonzero = F.logsigmoid(-h) + self.base.log_prob(value)
        return torch.where(value == 0, torch.logaddexp(F.logsigmoid(h), nonzero), nonzero)

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        with torch.no_grad():
            x = self.base.sample(sample_shape)
            kept = torch.rand_like(x) >= torch.sigmoid(self.gate_logits)
            return x * kept

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(-self.gate_logits) * self.base.mean

    @property
    def variance(self) -> Tensor:
        m = self.base.mean
        return torch.sigmoid(-self.gate_logits) * (
            self.base.variance + torch.sigmoid(self.gate_logits) * m * m
        )
