"""A conformance kit for likelihoods: ``check_likelihood`` proves a built-in or plugin likelihood keeps the contract.

Needs nothing beyond lvm's own dependencies (no scipy): the quadrature, the chi-square p-values
and the normal quantiles are written with torch and numpy.
"""

from lvm.testing.kit import PROPERTIES, check_likelihood

__all__ = ["PROPERTIES", "check_likelihood"]
