"""lvm: latent variable models on PyTorch Lightning, with pluggable likelihoods and honest log p(x)."""

from lvm._version import __version__ as __version__
from lvm.encoders import (
    create_decoder,
    create_encoder,
    list_decoders,
    list_encoders,
    register_decoder,
    register_encoder,
)
from lvm.estimators import create_estimator, list_estimators, register_estimator
from lvm.evaluate import ComparisonRow, compare_estimators
from lvm.likelihoods import (
    Likelihood,
    ParamSpec,
    create_likelihood,
    list_likelihoods,
    register_likelihood,
)
from lvm.model import LatentVariableModel
from lvm.objectives import Bound, elbo, iwae_bound, prior_mc_bound
from lvm.registry import PluginError, UnknownNameError


def __getattr__(name: str) -> object:
    """Import the Lightning parts lazily, so ``import lvm`` stays light (PEP 562)."""
    if name == "VAE":
        from lvm.vae import VAE

        return VAE
    raise AttributeError(f"module 'lvm' has no attribute {name!r}")


__all__ = [
    "VAE",
    "Bound",
    "ComparisonRow",
    "LatentVariableModel",
    "Likelihood",
    "ParamSpec",
    "PluginError",
    "UnknownNameError",
    "compare_estimators",
    "create_decoder",
    "create_encoder",
    "create_estimator",
    "create_likelihood",
    "elbo",
    "iwae_bound",
    "prior_mc_bound",
    "list_decoders",
    "list_encoders",
    "list_estimators",
    "list_likelihoods",
    "register_decoder",
    "register_encoder",
    "register_estimator",
    "register_likelihood",
]
