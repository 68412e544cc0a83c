"""Goodness of fit of samples to a density known on cells: Pearson's chi-square test."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["chi_square"]

#: Least expected count of a chi-square bin (Cochran's rule).
MIN_EXPECTED = 5.0


def chi_square(coordinate: Tensor, edges: Tensor, cells: Tensor, bins: int) -> tuple[float, int, float]:
    """Pearson's chi-square test of n samples against cell probabilities, cells merged into bins.

    Consecutive cells are merged into about ``bins`` bins of equal probability, cells heavier
    than that keep a bin of their own, and a bin expected to hold fewer than 5 samples joins its
    neighbour; the statistic sum (O - E)^2 / E has (bins - 1) degrees of freedom under the null
    (Cochran 1952, sec. 7).

    Args:
        coordinate: The n samples in the cells' coordinate, (n,).
        edges: Cell boundaries, increasing, (G + 1,), outermost -inf and inf.
        cells: Probability of each cell, (G,), summing to 1.
        bins: Target number of bins.

    Returns:
        (statistic, degrees of freedom, p-value); a p-value of 1 with 0 degrees of freedom when
        the cells leave a single bin (a point mass).
    """
    n = coordinate.numel()
    p = cells.double().clamp(min=0).numpy()
    target = max(1.0 / bins, MIN_EXPECTED / n)
    cum = np.cumsum(p)
    group = np.floor((cum - p / 2) / target).astype(np.int64)  # by the cell's midpoint
    _, group = np.unique(group, return_inverse=True)
    expected = np.bincount(group, weights=p) * n
    # join light bins to the next one, and a light last bin to the one before
    merged, b, acc = np.empty(len(expected), dtype=np.int64), 0, 0.0
    for i, e in enumerate(expected):
        merged[i], acc = b, acc + e
        if acc >= MIN_EXPECTED:
            b, acc = b + 1, 0.0
    if 0 < acc < MIN_EXPECTED and b > 0:
        merged[merged == b] = b - 1
    final = merged[group]
    expected = np.bincount(final, weights=p) * n
    cell_of = np.searchsorted(edges.double().numpy(), coordinate.double().numpy(), side="right") - 1
    cell_of = np.clip(cell_of, 0, len(p) - 1)
    observed = np.bincount(final[cell_of], minlength=len(expected))
    dof = len(expected) - 1
    if dof < 1:
        return 0.0, 0, 1.0
    stat = float(((observed - expected) ** 2 / expected).sum())
    pvalue = float(
        torch.special.gammaincc(
            torch.tensor(dof / 2.0, dtype=torch.float64), torch.tensor(stat / 2.0, dtype=torch.float64)
        )
    )
    return stat, dof, pvalue if math.isfinite(pvalue) else 0.0
