"""Observation models p(x | z): the registry and the built-in likelihoods."""

from lvm.likelihoods.base import LINKS, Likelihood, ParamSpec
from lvm.likelihoods.bernoulli import Bernoulli  # noqa: E402  (registers itself)
from lvm.likelihoods.composite import ColumnsDistribution, Composite
from lvm.likelihoods.gamma import Gamma
from lvm.likelihoods.gaussian import Gaussian
from lvm.likelihoods.registry import (
    LIKELIHOODS,
    create_likelihood,
    list_likelihoods,
    register_likelihood,
)

__all__ = [
    "LIKELIHOODS",
    "LINKS",
    "Bernoulli",
    "ColumnsDistribution",
    "Composite",
    "Gamma",
    "Gaussian",
    "Likelihood",
    "ParamSpec",
    "create_likelihood",
    "list_likelihoods",
    "register_likelihood",
]
