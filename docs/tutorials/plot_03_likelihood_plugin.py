"""
Writing and testing a likelihood plugin
=======================================

A likelihood is the observation model p(x | z): it maps the decoder's unconstrained outputs to
a :class:`torch.distributions.Distribution` with the event dimensions folded, so that
``log_prob(x)`` has one value per datapoint. It declares its parameters with their inverse
links (:class:`lvm.likelihoods.ParamSpec`) and its support. Here we write a Laplace likelihood,

.. math::

   p(x \\mid z) = \\prod_j \\frac{1}{2 b_j} \\exp\\Big(-\\frac{|x_j - \\mu_j(z)|}{b_j}\\Big),
   \\qquad b_j = \\operatorname{softplus}(f_j(z)) + 10^{-3},

register it, test it with lvm's conformance kit and against the closed form, and fit data with
heavy tails, where it beats the Gaussian. The
:doc:`../plugins` guide shows how a package ships it through an entry point, so that
``likelihood: my_laplace`` works in any config without changing lvm.
"""

# %%
# The likelihood
# --------------
# Three class attributes and one method. ``params`` lists what the decoder predicts per data
# element, each with its inverse link (``identity``, ``softplus``, ``exp``, ``sigmoid``) and a
# floor added after it; ``distribution`` receives them by name, each of shape ``(..., *event)``.
import math

import lightning as L
import matplotlib.pyplot as plt
import torch
from torch.distributions import Distribution
from torch.distributions import Laplace as TorchLaplace

import lvm
from lvm.data import TensorDataModule
from lvm.likelihoods import Likelihood, ParamSpec


@lvm.register_likelihood("my_laplace")
class MyLaplace(Likelihood):
    """Factorised Laplace: location from the decoder, scale softplus(f) + 1e-3 per element."""

    name = "my_laplace"
    params = (ParamSpec("loc"), ParamSpec("scale", "softplus", 1e-3))
    support = "(-inf, inf)"

    def distribution(self, loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return TorchLaplace(loc, scale)


print(lvm.list_likelihoods())

# %%
# Testing it
# ----------
# :func:`lvm.testing.check_likelihood` runs the whole contract on a likelihood, one property
# after another over random decoder outputs: the registry builds it by name; under S samples of
# z, ``log_prob`` has shape (S, B), the event dims folded, and a raw output of the wrong size is
# refused; its own samples pass ``check``, and values outside the support fail it with a message
# that names them; ``log_prob`` and its gradients are finite for raw outputs from -20 to 20, in
# float32 and float64; every parameter changes ``log_prob``; the density integrates to 1; its
# mean and variance are those of the density; its samples follow it (tests at a false-alarm
# rate of 1e-3, from a fixed seed); and it works as a column of ``composite``. It returns None,
# or raises an ``AssertionError`` whose first line names the property that failed.
from lvm.testing import PROPERTIES, check_likelihood  # noqa: E402

check_likelihood(MyLaplace((5,)))
print("my_laplace keeps the contract:", ", ".join(PROPERTIES))

# %%
# In a plugin's test suite that is the whole test; ``skip`` leaves properties out and
# ``seed``, ``tolerance`` and ``false_alarm`` set how it checks:
#
# .. code-block:: python
#
#    from lvm.testing import check_likelihood
#
#
#    def test_my_laplace():
#        check_likelihood(MyLaplace((5,)))
#
# A common mistake, a log density without its normalising constant ``-log(2 b)``, is caught
# by the property that integrates the density, which names the element and its parameters:


class Unnormalised(TorchLaplace):
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -(value - self.loc).abs() / self.scale  # -log(2 * scale) forgotten


class SloppyLaplace(MyLaplace):
    def distribution(self, loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return Unnormalised(loc, scale)


try:
    check_likelihood(SloppyLaplace((5,)), skip=("registry",))  # not registered under its own name
except AssertionError as err:
    print(str(err).splitlines()[0])
else:
    raise RuntimeError("check_likelihood missed the forgotten constant")

# %%
# What the kit cannot know is which density you meant. Under S = 3 samples of z and B = 4
# datapoints, ``log_prob`` is the closed form ``-|x - mu| / b - log(2 b)`` summed over the
# elements:
lik = lvm.create_likelihood("my_laplace", event_shape=(5,))
raw = torch.randn(3, 4, lik.raw_size)
x = torch.randn(4, 5)
loc, scale = raw[..., :5], torch.nn.functional.softplus(raw[..., 5:]) + 1e-3
by_hand = (-(x - loc).abs() / scale - torch.log(2 * scale)).sum(-1)
torch.testing.assert_close(lik(raw).log_prob(x), by_hand)
print("log_prob equals the closed form")

# %%
# A typo in the name is an error that lists the known likelihoods and suggests the closest:
try:
    lvm.create_likelihood("my_laplce", event_shape=(5,))
except lvm.UnknownNameError as err:
    print(err)

# %%
# Fitting heavy-tailed data
# -------------------------
# Five-dimensional data from a 1-D latent line plus Laplace noise of scale 0.3, with 2% of the
# values replaced by outliers. The same VAE is trained with the Gaussian (learned scale per
# output) and with the new likelihood; the test ELBO is a lower bound on log p(x) per datapoint.
torch.manual_seed(0)  # the Laplace noise below draws from the global generator
g = torch.Generator().manual_seed(0)


def heavy(n: int) -> torch.Tensor:
    t = torch.randn(n, 1, generator=g)
    x = torch.cat([t, t.sin(), 0.5 * t, t.cos(), -t], 1)
    noise = TorchLaplace(0.0, 0.3).sample((n, 5))
    outlier = torch.rand(n, 5, generator=g) < 0.02
    return x + noise + outlier * 6 * torch.randn(n, 5, generator=g)


data = TensorDataModule(heavy(3000), heavy(300), heavy(1000), batch_size=100, seed=0)
results = {}
for likelihood in ({"name": "gaussian", "scale": "per_output"}, "my_laplace"):
    L.seed_everything(0, verbose=False)
    vae = lvm.VAE(
        data_shape=[5],
        latent_dim=2,
        likelihood=likelihood,
        lr=3e-3,
        encoder={"name": "mlp", "hidden": [64]},
        decoder={"name": "mlp", "hidden": [64]},
    )
    trainer = L.Trainer(
        max_epochs=15,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(vae, datamodule=data)
    metrics = trainer.test(vae, datamodule=data, verbose=False)[0]
    results[lvm.registry.spec_name(likelihood)] = (metrics["test/elbo"], metrics["test/elbo_stderr"])

for name, (value, se) in results.items():
    print(f"{name:10s} test ELBO {value:8.3f} ± {se:.3f} nats per datapoint")

fig, ax = plt.subplots(figsize=(5, 2.2))
names = list(results)
ax.barh(names, [results[n][0] for n in names], xerr=[results[n][1] for n in names], color=["C0", "C1"])
ax.set_xlabel("test ELBO, nats per datapoint (± s.e.)")
ax.set_title("heavy-tailed data: Gaussian vs the Laplace plugin")
fig.tight_layout()

# %%
# From a file to a plugin
# -----------------------
# In a package, the class lives in a module and ``pyproject.toml`` declares it:
#
# .. code-block:: toml
#
#    [project.entry-points."lvm.likelihoods"]
#    my_laplace = "my_package:MyLaplace"
#
# After ``pip install`` of the package, ``lvm.list_likelihoods()`` and ``lvm --help`` list
# ``my_laplace``, and configs can name it. lvm imports the plugin only when it is first used,
# so a broken plugin cannot break ``import lvm``. ``examples/lvm-laplace`` in the repository is
# a complete, installable example; :doc:`../plugins` explains the rest (encoders, decoders,
# estimators, data modules).
print(
    f"heavy tails cost the Gaussian {results['my_laplace'][0] - results['gaussian'][0]:.2f} nats per datapoint"
)
assert math.isfinite(results["my_laplace"][0])
