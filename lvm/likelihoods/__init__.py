"""Observation models p(x | z): the registry and the built-in likelihoods."""

from lvm.likelihoods.base import LINKS, Likelihood, ParamSpec
from lvm.likelihoods.bernoulli import Bernoulli  # noqa: E402  (registers itself)
from lvm.likelihoods.beta import Beta
from lvm.likelihoods.categorical import Categorical
from lvm.likelihoods.composite import ColumnsDistribution, Composite
from lvm.likelihoods.continuous_bernoulli import ContinuousBernoulli
from lvm.likelihoods.counts import CountLikelihood
from lvm.likelihoods.discretized_logistic import DiscretizedLogistic
from lvm.likelihoods.gamma import Gamma
from lvm.likelihoods.gaussian import Gaussian
from lvm.likelihoods.negative_binomial import NegativeBinomial
from lvm.likelihoods.poisson import Poisson
from lvm.likelihoods.registry import (
    LIKELIHOODS,
    create_likelihood,
    list_likelihoods,
    register_likelihood,
)
from lvm.likelihoods.student_t import StudentT
from lvm.likelihoods.zinb import ZeroInflatedNegativeBinomial
from lvm.likelihoods.zip import ZeroInflatedPoisson

__all__ = [
    "LIKELIHOODS",
    "LINKS",
    "Bernoulli",
    "Beta",
    "Categorical",
    "ColumnsDistribution",
    "Composite",
    "ContinuousBernoulli",
    "CountLikelihood",
    "DiscretizedLogistic",
    "Gamma",
    "Gaussian",
    "Likelihood",
    "NegativeBinomial",
    "ParamSpec",
    "Poisson",
    "StudentT",
    "ZeroInflatedNegativeBinomial",
    "ZeroInflatedPoisson",
    "create_likelihood",
    "list_likelihoods",
    "register_likelihood",
]
