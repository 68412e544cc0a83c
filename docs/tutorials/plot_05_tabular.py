"""
Tabular data: a likelihood per column
=====================================

Real tables mix types: a positive amount, a real-valued score, a count. lvm's ``composite``
likelihood gives each group of columns its own observation model, all predicted by one
decoder (as HI-VAE does, Nazabal et al. 2020):

.. math::

   p(x \\mid z) = \\prod_g p_g(x_{C_g} \\mid z),

where the column groups :math:`C_g` partition the columns. The data here have a known density,
so the fit can be checked against the truth:
:math:`x_1 \\sim \\mathrm{Gamma}(2, 1)`, :math:`x_2 \\sim \\mathcal{N}(0, 1)` and
:math:`x_3 \\sim \\mathcal{N}(x_2, x_1)` (:class:`lvm.data.TabularDataModule`).
"""

# %%
# Data and model
# --------------
# The bundled config ``tabular_vae`` (``lvm fit --config tabular_vae``) is this model with 10,000
# training rows and 200 epochs; here 3,000 rows and 30 epochs keep the page fast.
import lightning as L
import matplotlib.pyplot as plt
import torch

import lvm
from lvm.data import TabularDataModule

data = TabularDataModule(n_train=3000, n_val=500, n_test=1000, seed=0, batch_size=128, eval_batch_size=1000)
vae = lvm.VAE(
    data_shape=[3],
    latent_dim=2,
    encoder={"name": "mlp", "hidden": [64, 64], "activation": "elu"},
    decoder={"name": "mlp", "hidden": [64, 64], "activation": "elu"},
    likelihood={
        "name": "composite",
        "parts": [
            {"name": "gamma", "columns": [0]},  # x1 > 0: concentration and rate from the decoder
            {"name": "gaussian", "columns": [1, 2], "scale": "per_output"},  # mean and scale
        ],
    },
    lr=3e-3,
)
print(vae.model.likelihood)
L.seed_everything(0, verbose=False)
trainer = L.Trainer(
    max_epochs=30,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(vae, datamodule=data)

# %%
# How close to the truth?
# -----------------------
# The true log-density of the generating process is a ceiling for any model's log p(x). The
# model's log p(x) is estimated by importance sampling with K = 1000 on the 1,000 test rows.
x = data.split("test").x
truth = data.log_density(x)
(row,) = lvm.compare_estimators(vae, x, ["importance"], [1000])
(elbo,) = lvm.compare_estimators(vae, x, ["elbo"], [1])
print(f"true density      {truth.mean():8.4f} nats per row (± {truth.std() / len(truth) ** 0.5:.4f} s.e.)")
print(
    f"IS, K = 1000      {row.mean_log_px:8.4f} (± {row.stderr:.4f} s.e., mean MC SE {row.mean_mc_stderr:.4f})"
)
print(f"ELBO              {elbo.mean_log_px:8.4f}")
gap = row.datapoints.log_px - truth
print(f"gap to the truth  {gap.mean():8.4f} ± {gap.std() / len(gap) ** 0.5:.4f} (paired s.e.)")

# %%
# Samples from the model against the data: x3 spreads around x2 by x1, the Gamma column stays
# positive.
torch.manual_seed(0)
fake = vae.model.sample(1000, mean=False)
fig, axes = plt.subplots(1, 3, figsize=(9, 2.8))
for ax, (i, j) in zip(axes, [(0, 1), (1, 2), (0, 2)], strict=True):
    ax.scatter(x[:, i], x[:, j], s=2, alpha=0.4, label="test data")
    ax.scatter(fake[:, i], fake[:, j], s=2, alpha=0.4, label="model samples")
    ax.set_xlabel(f"x{i + 1}")
    ax.set_ylabel(f"x{j + 1}")
axes[0].legend(markerscale=4, fontsize=8)
fig.suptitle("composite likelihood: Gamma for x1, Gaussians for x2 and x3")
fig.tight_layout()

# %%
# The committed experiment (``experiments/tabular``, 10,000 rows, 200 epochs, seeds 0 1 2) and
# its numbers are in :doc:`plot_08_reproduce`. Reading the same kind of table from a CSV file
# with named columns is in :doc:`plot_02_own_data`.
