"""``check_likelihood``: the likelihood contract run as properties over random decoder outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from lvm.likelihoods.base import Likelihood
from lvm.likelihoods.registry import create_likelihood
from lvm.testing import contract, density
from lvm.testing.case import Case

__all__ = ["PROPERTIES", "check_likelihood"]

#: The properties, in the order they run; each can be left out with ``skip``.
PROPERTIES = (
    "registry",
    "shapes",
    "support",
    "lattice",
    "finite",
    "sensitivity",
    "normalisation",
    "moments",
    "sampler",
    "composite",
)


_RUN: dict[str, Callable[[Case], None]] = {
    "registry": contract.registry,
    "shapes": contract.shapes,
    "support": contract.support,
    "lattice": contract.lattice,
    "finite": contract.finite,
    "sensitivity": contract.sensitivity,
    "normalisation": density.normalisation,
    "moments": density.moments,
    "sampler": density.sampler,
    "composite": contract.composite,
}


def check_likelihood(
    likelihood: Likelihood | str,
    event_shape: Sequence[int] | int | None = None,
    *,
    seed: int = 0,
    false_alarm: float = 1e-3,
    tolerance: float = 1e-6,
    num_samples: int = 4000,
    skip: Iterable[str] = (),
    **options: Any,
) -> None:
    """Check a likelihood against lvm's contract; return None, or raise naming what failed.

    Runs each property of :data:`PROPERTIES` on random raw decoder outputs (standard normal,
    clipped to [-3, 3], from ``seed``), as distribution test suites run each property over a
    table of distributions (numpyro's ``test/test_distributions.py``, Pyro's
    ``tests/distributions``):

    - ``registry``: ``create_likelihood(name, event_shape, **options)`` builds this class (a
      plugin's entry point, or ``register_likelihood``);
    - ``shapes``: event dims folded (``Independent``), raw (S, B, raw_size) gives batch (S, B),
      log_prob the sum of the elements', the same for slices, and a raw output of the wrong size
      is refused;
    - ``support``: samples pass ``check``; values outside the support fail it with a message that
      names them; ``lattice``: so do values between the points of a discrete support;
    - ``finite``: log_prob and its gradient in the raw outputs (and in the module's parameters)
      are finite for raw values from -20 to 20, in float32 and float64, for data across the support;
    - ``sensitivity``: each raw output and parameter changes log_prob somewhere;
    - ``normalisation``: p sums to 1 over a discrete support (the tail past the last count
      extrapolated geometrically and reported) or integrates to 1 over a continuous one
      (sinh-sinh quadrature, Takahasi & Mori 1974, in u with x = u, lower + e^u or
      lower + (upper - lower) sigma(u) for half-lines and intervals), within ``tolerance``;
    - ``moments``: the distribution's mean and variance equal those of its log_prob;
    - ``sampler``: draws agree with log_prob: z-tests of their mean and variance and Pearson's
      chi-square over about 30 bins of equal probability, each at ``false_alarm`` divided by the
      number of tests (Bonferroni), so a correct likelihood fails with probability at most
      ``false_alarm`` over seeds; a fixed seed makes the outcome reproducible;
    - ``composite``: it works as a part of ``composite`` beside a Gaussian column.

    Args:
        likelihood: A :class:`~lvm.likelihoods.Likelihood`, or a registered name.
        event_shape: Shape of one datapoint when ``likelihood`` is a name (default ``(3,)``).
        seed: Seed of the raw outputs and the draws; the caller's RNG state is left as it was.
        false_alarm: Probability that the ``sampler`` property fails a correct likelihood.
        tolerance: Allowed |total mass - 1| per element.
        num_samples: Draws per element for the ``sampler`` property.
        skip: Properties not to run, e.g. ``("lattice",)`` for Bernoulli, which accepts grey values.
        **options: The likelihood's keyword arguments: to build it from a name, and to build it
            again for ``registry`` and ``composite``.

    Raises:
        AssertionError: whose first line starts with the property, then the parameter values and
            the observed against the expected value.
        ValueError: for an unknown property in ``skip`` or an event_shape that contradicts the instance.
    """
    skip = set(skip)
    if skip - set(PROPERTIES):
        raise ValueError(
            f"check_likelihood: unknown properties {sorted(skip - set(PROPERTIES))}; known: {', '.join(PROPERTIES)}"
        )
    if isinstance(likelihood, str):
        likelihood = create_likelihood(likelihood, event_shape or (3,), **options)
    elif (
        event_shape is not None
        and torch.Size([event_shape] if isinstance(event_shape, int) else event_shape)
        != likelihood.event_shape
    ):
        raise ValueError(
            f"check_likelihood: event_shape {event_shape} differs from the likelihood's {tuple(likelihood.event_shape)}"
        )
    case = Case(likelihood, options, seed, false_alarm, tolerance, num_samples)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for prop in PROPERTIES:
            if prop not in skip:
                _RUN[prop](case)
