"""Estimators of log p(x), objects apart from the model, registered by name."""

from lvm.estimators.base import CHUNK_BYTES, Estimate, Estimator, normal_params
from lvm.estimators.elbo import ELBO
from lvm.estimators.importance import ImportanceSampling
from lvm.estimators.noise import NormalNoise, normal_noise
from lvm.estimators.prior import PriorMonteCarlo
from lvm.estimators.registry import ESTIMATORS, create_estimator, list_estimators, register_estimator
from lvm.estimators.sampling import LatentSampler, log_density
from lvm.estimators.streaming import LogMeanExp

__all__ = [
    "CHUNK_BYTES",
    "ELBO",
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "ImportanceSampling",
    "LatentSampler",
    "LogMeanExp",
    "NormalNoise",
    "PriorMonteCarlo",
    "create_estimator",
    "list_estimators",
    "log_density",
    "normal_noise",
    "normal_params",
    "register_estimator",
]
