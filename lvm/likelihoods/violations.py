"""One message for data outside a likelihood's support: how many values, and the first with its index."""

from __future__ import annotations

from torch import Tensor

__all__ = ["first_violation"]


def first_violation(x: Tensor, bad: Tensor, what: str) -> str | None:
    """``"got N value(s) <what> (first: V at index I)"`` for the True entries of ``bad``, or None if there are none."""
    if not bad.any():
        return None
    idx = bad.nonzero()[0].tolist()
    return f"got {int(bad.sum())} value(s) {what} (first: {x[tuple(idx)].item():g} at index {idx})"
