"""
Quickstart: train, sample, reconstruct, interpolate
===================================================

Train a VAE (Kingma & Welling 2014) with Lightning, then use the trained model: draw new
images from the prior, reconstruct test images, and walk the latent space between two images.

The data are made here, offline: the digits 0-9 drawn by matplotlib's font, placed with small
random rotations, shifts and thicknesses, on a 16 x 16 grid, grey values in [0, 1]. For MNIST,
swap the data module for :class:`lvm.data.MNISTDataModule` (its README section shows the
``lvm fit --config mnist_vae`` job); nothing else changes.
"""

# %%
# The data
# --------
# ``digits(n, seed)`` draws each digit once with matplotlib at 64 x 64, then one batch of random
# affine maps turns the ten glyphs into n images in a single ``grid_sample`` call. It lives
# beside the tutorials, in ``docs/tutorials/_digits.py``:
#
# .. literalinclude:: /tutorials/_digits.py
#    :pyobject: digits
import time

import lightning as L
import matplotlib.pyplot as plt
import torch
from _digits import digits

import lvm
from lvm.data import TensorDataModule

torch.manual_seed(0)
start = time.perf_counter()
x_train, _ = digits(4000, seed=1)
x_val, _ = digits(500, seed=2)
x_test, y_test = digits(1000, seed=3)
print(f"train {tuple(x_train.shape)}, values in [{x_train.min():.0f}, {x_train.max():.0f}]")

# %%
# The model
# ---------
# A VAE is composed by registry name: an ``mlp`` encoder body f_e, an ``mlp`` decoder body f_d,
# a ``bernoulli`` observation model p(x | z) (grey values in [0, 1] score as the negative
# cross-entropy) and a standard-normal prior. Training maximises the ELBO
#
# .. math::
#
#    \mathcal{L}(x) = \mathbb{E}_{q(z \mid x)}[\log p(x \mid z)]
#    - \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big) \le \log p(x).
#
# :class:`lvm.data.TensorDataModule` serves tensors that are already in memory.
data = TensorDataModule(x_train, x_val, x_test, batch_size=100, seed=0)
vae = lvm.VAE(
    data_shape=[256],
    latent_dim=8,
    encoder={"name": "mlp", "hidden": [256], "activation": "elu"},
    decoder={"name": "mlp", "hidden": [256], "activation": "elu"},
    likelihood="bernoulli",
    lr=3e-3,
)
L.seed_everything(0, verbose=False)
trainer = L.Trainer(
    max_epochs=10,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(vae, datamodule=data)
(metrics,) = trainer.test(vae, datamodule=data, verbose=False)
print(f"test ELBO: {metrics['test/elbo']:.2f} nats per image (+/- {metrics['test/elbo_stderr']:.2f} s.e.)")

# %%
# Sample, reconstruct, interpolate
# --------------------------------
# The trained pure-torch model is ``vae.model``
# (:class:`~lvm.LatentVariableModel`). Its methods return the mean E[x | z] of
# p(x | z), here the pixels' activation probabilities:
#
# - ``sample(n)``: z ~ p(z), then E[x | z];
# - ``reconstruct(x)``: z ~ q(z | x), then E[x | z];
# - ``interpolate(a, b, steps)``: E[x | z_s] along z_s = s z_a + (1 - s) z_b, from the posterior
#   means of a and b.
model = vae.model.eval()
samples = model.sample(10)
recon = model.reconstruct(x_test[:10])
firsts = [int((y_test == d).nonzero()[0]) for d in range(10)]  # one test image of each digit
walk = model.interpolate(x_test[firsts[:5]], x_test[firsts[5:]], steps=10)  # (5, 10, 256)

fig, axes = plt.subplots(8, 10, figsize=(7.5, 6.4))
rows = [("samples", samples), ("test images", x_test[:10]), ("reconstructions", recon)]
rows += [(f"{a} to {b}" if i == 0 else "", walk[i]) for i, (a, b) in enumerate(zip(range(5), range(5, 10)))]
for r, (label, images) in enumerate(rows):
    for c in range(10):
        ax = axes[r, c]
        ax.imshow(images[c].reshape(16, 16), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
axes[3, 0].set_ylabel("interpolations", rotation=0, ha="right", va="center", fontsize=8)
fig.suptitle("a VAE on made-up 16 x 16 digits (10 epochs)")
fig.tight_layout()
print(f"tutorial ran in {time.perf_counter() - start:.1f} s")

# %%
# Next: :doc:`plot_02_own_data` reads your data from CSV and ``.npy`` files, and
# :doc:`plot_04_estimators` estimates log p(x) for this kind of model with error bars.
