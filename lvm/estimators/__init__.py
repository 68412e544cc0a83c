"""Estimators of log p(x), objects apart from the model, registered by name."""

from lvm.distributions import normal_params
from lvm.estimators.ais import AnnealedImportanceSampling
from lvm.estimators.base import CHUNK_BYTES, Estimate, Estimator
from lvm.estimators.bdmc import Sandwich, SandwichDistance, bdmc, compare_to_sandwich
from lvm.estimators.diagnostics import LogWeights, mc_stderr, pareto_k
from lvm.estimators.elbo import ELBO
from lvm.estimators.importance import ImportanceSampling
from lvm.estimators.noise import NormalNoise, normal_noise
from lvm.estimators.prior import PriorMonteCarlo
from lvm.estimators.proposals import PROPOSALS
from lvm.estimators.quadrature import Grid, Quadrature, grid_log_px
from lvm.estimators.registry import ESTIMATORS, create_estimator, list_estimators, register_estimator
from lvm.estimators.sampling import LatentSampler, log_density
from lvm.estimators.streaming import LogMeanExp

__all__ = [
    "AnnealedImportanceSampling",
    "CHUNK_BYTES",
    "ELBO",
    "ESTIMATORS",
    "PROPOSALS",
    "Estimate",
    "Estimator",
    "Grid",
    "ImportanceSampling",
    "LatentSampler",
    "LogMeanExp",
    "LogWeights",
    "NormalNoise",
    "PriorMonteCarlo",
    "Sandwich",
    "SandwichDistance",
    "Quadrature",
    "bdmc",
    "compare_to_sandwich",
    "create_estimator",
    "grid_log_px",
    "list_estimators",
    "log_density",
    "mc_stderr",
    "normal_noise",
    "normal_params",
    "pareto_k",
    "register_estimator",
]
