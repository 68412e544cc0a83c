"""Categorical observation model: each element an integer code in {0, ..., K - 1}, K logits from the decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Categorical as _Categorical
from torch.distributions import Distribution

from lvm.likelihoods.base import Likelihood
from lvm.likelihoods.registry import register_likelihood
from lvm.likelihoods.violations import first_violation

__all__ = ["Categorical", "Codes"]

_NO_SAMPLES = torch.Size()


class Codes(_Categorical):
    """``torch.distributions.Categorical`` over codes held as floats, as data tensors hold them.

    ``sample`` returns the codes in the logits' dtype, so they sit beside real columns in a
    ``composite``; ``mean`` and ``variance`` are those of the code as a number, sum_k k p_k and
    sum_k k^2 p_k - mean^2 (torch's are NaN), what ``Likelihood.mean`` shows.
    """

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        return super().sample(sample_shape).to(self.logits.dtype)

    def _codes(self) -> Tensor:
        return torch.arange(self._num_events, dtype=self.probs.dtype, device=self.probs.device)

    @property
    def mean(self) -> Tensor:
        return self.probs @ self._codes()

    @property
    def variance(self) -> Tensor:
        return self.probs @ self._codes().square() - self.mean.square()


@register_likelihood("categorical")
class Categorical(Likelihood):
    r"""Factorised categorical over integer codes, p(x | z) = prod_j softmax(f_j)_{x_j}, x_j in {0, ..., K - 1}.

    log p = f_{j, x_j} - logsumexp_k f_{j, k}, per element: the decoder predicts K logits for
    each element (raw layout (K, *event): the k-th block holds category k's logits), as for the
    categorical columns of HI-VAE (Nazabal et al. 2020, sec. 3.1). Columns with different numbers
    of categories are separate ``composite`` parts.

    Args:
        event_shape: Shape of one datapoint (the number of categorical columns).
        num_categories: K, an integer >= 2.
    """

    name: ClassVar[str] = "categorical"

    def __init__(self, event_shape: Sequence[int] | int, num_categories: int = 2) -> None:
        if isinstance(num_categories, bool) or not isinstance(num_categories, int) or num_categories < 2:
            raise ValueError(
                f"categorical likelihood: num_categories must be an integer >= 2; got {num_categories!r}"
            )
        super().__init__(event_shape)
        self.num_categories = num_categories

    @property
    def support(self) -> str:
        return f"{{0, 1, ..., {self.num_categories - 1}}}"

    @property
    def num_params(self) -> int:
        return self.num_categories

    def split(self, raw: Tensor) -> dict[str, Tensor]:
        """The logits, (*batch, *event, K), from raw (*batch, K * prod(event))."""
        if raw.shape[-1] != self.raw_size:
            raise ValueError(
                f"{self.name} likelihood expects {self.raw_size} decoder outputs per datapoint "
                f"({self.num_categories} categories x {self.event_numel} elements); got raw shape {tuple(raw.shape)}"
            )
        batch = raw.shape[:-1]
        return {"logits": raw.reshape(*batch, self.num_categories, *self.event_shape).movedim(len(batch), -1)}

    def distribution(self, logits: Tensor) -> Distribution:
        return Codes(logits=logits, validate_args=False)

    def support_violation(self, x: Tensor) -> str | None:
        bad = (x < 0) | (x > self.num_categories - 1) | (x != torch.round(x))
        return first_violation(x, bad, f"that are not integer codes 0..{self.num_categories - 1}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_categories={self.num_categories}"
