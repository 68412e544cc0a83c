"""Composite observation model: each group of columns of tabular data has its own likelihood."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from lvm.likelihoods.base import Likelihood
from lvm.likelihoods.registry import create_likelihood, register_likelihood

__all__ = ["ColumnsDistribution", "Composite"]

_NO_SAMPLES = torch.Size()


class ColumnsDistribution(Distribution):
    """Product of independent distributions over disjoint column groups of a (..., D) vector.

    ``log_prob(x) = sum_g parts[g].log_prob(x[..., columns[g]])``; each part has event
    shape ``(len(columns[g]),)`` and the same batch shape.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, parts: Sequence[Distribution], columns: Sequence[Tensor], size: int) -> None:
        self.parts = list(parts)
        self.columns = list(columns)
        super().__init__(parts[0].batch_shape, torch.Size([size]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return sum(p.log_prob(value[..., c]) for p, c in zip(self.parts, self.columns))  # type: ignore[return-value]

    def _assemble(self, pieces: Sequence[Tensor]) -> Tensor:
        out = pieces[0].new_empty(*pieces[0].shape[:-1], self.event_shape[0])
        for piece, c in zip(pieces, self.columns):
            out[..., c] = piece
        return out

    def sample(self, sample_shape: torch.Size = _NO_SAMPLES) -> Tensor:
        return self._assemble([p.sample(sample_shape) for p in self.parts])

    @property
    def mean(self) -> Tensor:
        return self._assemble([p.mean for p in self.parts])


@register_likelihood("composite")
class Composite(Likelihood):
    """Different likelihoods for different column groups of tabular data (Nazabal et al. 2020, HI-VAE).

    p(x | z) = prod_g p_g(x[columns_g] | z), e.g. x1 ~ Gamma, x2 ~ Normal, x3 ~ Normal with
    ``parts=[{"name": "gamma", "columns": [0]}, {"name": "gaussian", "columns": [1, 2]}]``.
    The decoder predicts every part's raw parameters; the column groups must partition
    ``range(D)``.

    Args:
        event_shape: ``(D,)``, the number of columns.
        parts: One dict per group: ``name`` (a registered likelihood), ``columns`` (indices)
            and that likelihood's keyword arguments.
    """

    name: ClassVar[str] = "composite"
    support: ClassVar[str] = "each part's support"

    def __init__(self, event_shape: Sequence[int] | int, parts: Sequence[dict[str, Any]]) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 1:
            raise ValueError(
                f"composite likelihood needs flat data (D,); got event_shape {tuple(self.event_shape)}"
            )
        size = self.event_shape[0]
        if not parts:
            raise ValueError("composite likelihood needs at least one part")
        seen: list[int] = []
        children, cols = [], []
        for spec in parts:
            spec = dict(spec)
            if "columns" not in spec or "name" not in spec:
                raise ValueError(f"each composite part needs 'name' and 'columns'; got {spec!r}")
            columns = [int(c) for c in spec.pop("columns")]
            bad = [c for c in columns if not 0 <= c < size]
            if bad:
                raise ValueError(f"composite part {spec['name']!r}: columns {bad} out of range for D={size}")
            seen += columns
            children.append(create_likelihood(spec, event_shape=(len(columns),)))
            cols.append(columns)
        if sorted(seen) != list(range(size)):
            raise ValueError(
                f"composite parts must cover each of the {size} columns exactly once; got columns {seen}"
            )
        self.parts = nn.ModuleList(children)
        for i, c in enumerate(cols):
            self.register_buffer(f"_cols{i}", torch.tensor(c, dtype=torch.long), persistent=False)

    @property
    def _columns(self) -> list[Tensor]:
        return [getattr(self, f"_cols{i}") for i in range(len(self.parts))]

    @property
    def raw_size(self) -> int:
        return sum(p.raw_size for p in self.parts)

    def forward(self, raw: Tensor) -> Distribution:
        if raw.shape[-1] != self.raw_size:
            raise ValueError(
                f"composite likelihood expects {self.raw_size} decoder outputs per datapoint; "
                f"got raw shape {tuple(raw.shape)}"
            )
        pieces = raw.split([p.raw_size for p in self.parts], dim=-1)
        dists = [p(r) for p, r in zip(self.parts, pieces)]
        return ColumnsDistribution(dists, self._columns, self.event_shape[0])

    def support_violation(self, x: Tensor) -> str | None:
        for part, c in zip(self.parts, self._columns):
            msg = part.support_violation(x[..., c])
            if msg is not None:
                return f"columns {c.tolist()} ({part.name}, support {part.support}): {msg}"
        return None

    def raw_from_mean(self, mean: Tensor) -> Tensor | None:
        raws = [p.raw_from_mean(mean[..., c]) for p, c in zip(self.parts, self._columns)]
        return None if any(r is None for r in raws) else torch.cat(raws)  # type: ignore[arg-type]
