"""
Semi-supervised learning: M2
============================

Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised learning with deep generative
models", model M2: a VAE whose generative model has a class label y beside z,
:math:`p(x, y, z) = p(y)\\, p(z)\\, p(x \\mid y, z)`, and whose inference model has a classifier
:math:`q(y \\mid x)`. Labelled points maximise :math:`\\mathcal{L}(x, y) + \\alpha \\log q(y \\mid x)`;
unlabelled points maximise

.. math::

   \\mathcal{U}(x) = \\sum_y q(y \\mid x)\\, \\mathcal{L}(x, y) + \\mathcal{H}(q(y \\mid x)) \\le \\log p(x),

so every unlabelled image trains the classifier too (paper, eqs. 6-9). Here: the made-up digits
of :doc:`plot_01_quickstart` with only 100 labels (10 per class).
"""

# %%
# Data: a few labels, many images
# -------------------------------
# :class:`lvm.data.SemiSupervisedDataModule` wraps any labelled data module, keeps a
# class-balanced subset of ``num_labels`` training labels and marks the rest unobserved (-1).
# Each training batch joins a labelled and an unlabelled mini-batch.
import lightning as L
import matplotlib.pyplot as plt
import torch
from _digits import digits

from lvm.data import SemiSupervisedDataModule, TensorDataModule
from lvm.semi_supervised import SemiSupervisedVAE

(x_train, y_train), (x_val, y_val), (x_test, y_test) = (
    digits(n, seed=s) for n, s in ((4000, 1), (500, 2), (1000, 3))
)
base = TensorDataModule(
    x_train, x_val, x_test, train_labels=y_train, val_labels=y_val, test_labels=y_test, batch_size=100, seed=0
)
data = SemiSupervisedDataModule(base, num_labels=100, num_classes=10, labelled_batch_size=50, label_seed=0)

# %%
# The model and its training
# --------------------------
# Encoder, classifier, decoder and likelihood are chosen by registry name, as in a VAE.
# ``alpha`` weighs log q(y | x) per labelled datapoint.
L.seed_everything(0, verbose=False)
m2 = SemiSupervisedVAE(
    data_shape=[256],
    num_classes=10,
    latent_dim=8,
    encoder={"name": "mlp", "hidden": [256], "activation": "softplus"},
    classifier={"name": "mlp", "hidden": [256], "activation": "softplus"},
    decoder={"name": "mlp", "hidden": [256], "activation": "softplus"},
    likelihood="bernoulli",
    alpha=20.0,
    lr=3e-3,
    bound_stages=["test"],
)
trainer = L.Trainer(
    max_epochs=8,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(m2, datamodule=data)
(metrics,) = trainer.test(m2, datamodule=data, verbose=False)

# %%
# Against a classifier that sees only the labels
# ----------------------------------------------
# The same classifier body trained on the 100 labelled images alone (full batch, Adam, 300 steps):
data.setup("fit")
idx = data.labelled_index
torch.manual_seed(0)
alone = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Softplus(), torch.nn.Linear(256, 10))
opt = torch.optim.Adam(alone.parameters(), lr=3e-3)
for _ in range(300):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(alone(x_train[idx]), y_train[idx]).backward()
    opt.step()
with torch.no_grad():
    alone_acc = (alone(x_test).argmax(-1) == y_test).float().mean().item()
print(f"test accuracy, 100 labels: M2 {metrics['test/accuracy']:.3f}, labels alone {alone_acc:.3f}")
print(f"M2's bound U(x) on the test set: {metrics['test/bound']:.2f} nats per image")

# %%
# Class-conditional samples
# -------------------------
# With y given, p(x | y, z) draws that digit; z carries the style. Each column keeps one z
# and changes y.
torch.manual_seed(0)
model = m2.model.eval()
z = torch.randn(8, 1, 8).expand(8, 10, 8)  # 8 styles x 10 classes
y = torch.arange(10).expand(8, 10)
with torch.no_grad():
    images = model.observation(z.reshape(80, 8), y.reshape(80)).mean.reshape(8, 10, 16, 16)
fig, axes = plt.subplots(10, 8, figsize=(4.6, 5.6))
for c in range(10):
    for s in range(8):
        axes[c, s].imshow(images[s, c], cmap="gray_r", vmin=0, vmax=1)
        axes[c, s].axis("off")
fig.suptitle(
    f"M2, 100 labels: rows y = 0..9, columns one z each\ntest accuracy {metrics['test/accuracy']:.3f}",
    fontsize=9,
)
fig.tight_layout()

# %%
# The committed MNIST experiment (3,000 labels, 120 epochs, seeds 0 1 2) reaches the paper's
# accuracy: :doc:`plot_08_reproduce`.
