"""
Your own data: CSV and ``.npy`` files
=====================================

:class:`lvm.data.FileDataModule` (registered as ``files``) reads ``.csv`` (a header row of
column names; ``categorical`` columns of category names are read as codes), ``.npy``, ``.npz``,
``.pt`` (tensors and plain values only) and ``.h5ad`` (AnnData, with the optional ``anndata``
package): one file per split, or one file split at random by ``split=[train, val, test]``
fractions. Here we write both kinds of file to a temporary folder,
fit a model to each, and see what a broken file does.
"""

# %%
# A CSV with a header
# -------------------
# Three columns of different types: ``income`` is positive, ``age_z`` and ``spend_z`` are
# real. :func:`lvm.data.sample_tabular` draws them (x1 ~ Gamma(2, 1), x2 ~ N(0, 1),
# x3 ~ N(x2, x1)); two cells are left empty, as real files have them.
import csv
import tempfile
from pathlib import Path

import lightning as L
import numpy as np

import lvm
from lvm.data import FileDataModule, sample_tabular

folder = Path(tempfile.mkdtemp(prefix="lvm-own-data-"))
rows = sample_tabular(2000, 2.0, 1.0, 0.0, 1.0, seed=0).tolist()
with open(folder / "rows.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "income", "age_z", "spend_z"])
    for i, r in enumerate(rows):
        cells = [f"{v:.5g}" for v in r]
        if i in (5, 17):
            cells[2] = ""  # a missing cell
        w.writerow([i, *cells])
print((folder / "rows.csv").read_text().splitlines()[:4])

# %%
# ``columns`` picks the data columns (by name or index), ``missing="drop"`` drops a row with an
# empty, ``NA``, ``NaN`` or ``null`` cell (``"fill"`` replaces it by ``fill_value``; the default,
# ``"error"``, stops with the file, line and column). One file, split 80/10/10 with ``seed``.
table = FileDataModule(
    str(folder / "rows.csv"),
    split=[0.8, 0.1, 0.1],
    columns=["income", "age_z", "spend_z"],
    missing="drop",
    batch_size=200,
    seed=0,
)
table.setup()
print({name: tuple(table.split(name).x.shape) for name in ("train", "val", "test")})

# %%
# A positive column and two real ones ask for a likelihood per column group: the
# ``composite`` likelihood (see :doc:`plot_05_tabular`), a Gamma for ``income`` and Gaussians
# with a learned scale per output for the others.
tab_vae = lvm.VAE(
    data_shape=table.data_shape,
    latent_dim=2,
    encoder={"name": "mlp", "hidden": [64, 64], "activation": "elu"},
    decoder={"name": "mlp", "hidden": [64, 64], "activation": "elu"},
    likelihood={
        "name": "composite",
        "parts": [
            {"name": "gamma", "columns": [0]},
            {"name": "gaussian", "columns": [1, 2], "scale": "per_output"},
        ],
    },
    lr=3e-3,
)


def fit(model: lvm.VAE, data: L.LightningDataModule, epochs: int) -> dict[str, float]:
    """Train on the CPU without loggers or checkpoints, then test; the test metrics."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return trainer.test(model, datamodule=data, verbose=False)[0]


tab_metrics = fit(tab_vae, table, epochs=20)

# %%
# A ``.npy`` array
# ----------------
# An ``.npy`` file holds one datapoint per row, any shape after the first axis. Here: 3,000
# binary 4 x 4 patterns, each one of four prototypes with 5% of its bits flipped.
g = np.random.default_rng(0)
prototypes = g.random((4, 16)) > 0.5
bits = prototypes[g.integers(0, 4, 3000)] ^ (g.random((3000, 16)) < 0.05)
np.save(folder / "bits.npy", bits.astype(np.float32))

patterns = FileDataModule(str(folder / "bits.npy"), split=[0.8, 0.1, 0.1], batch_size=100, seed=0)
bits_vae = lvm.VAE(
    data_shape=patterns.data_shape,
    latent_dim=2,
    likelihood="bernoulli",
    lr=3e-3,
    encoder={"name": "mlp", "hidden": [64]},
    decoder={"name": "mlp", "hidden": [64]},
)
bits_metrics = fit(bits_vae, patterns, epochs=10)

# %%
# What a broken file does
# -----------------------
# Data are checked before any training: a cell that is not a number names its file, line and
# column; a value outside the likelihood's support names the column. (On the command line,
# ``lvm fit`` prints the same message as one line and exits with status 2.)
text = (folder / "rows.csv").read_text().replace("\n3,", "\n3,x5", 1)
(folder / "typo.csv").write_text(text)
try:
    FileDataModule(
        str(folder / "typo.csv"), split=[0.8, 0.1, 0.1], columns=["income", "age_z", "spend_z"]
    ).setup()
except ValueError as err:
    print("ValueError:", str(err).replace(str(folder), "<folder>"))

negative = (folder / "rows.csv").read_text().splitlines()
negative[4] = "3,-1,0.5,0.5"  # a negative income, outside the Gamma's support (0, inf)
(folder / "negative.csv").write_text("\n".join(negative) + "\n")
bad = FileDataModule(
    str(folder / "negative.csv"),
    split=[0.8, 0.1, 0.1],
    columns=["income", "age_z", "spend_z"],
    missing="drop",
)
try:
    fit(tab_vae, bad, epochs=1)
except ValueError as err:
    print("ValueError:", str(err).replace(str(folder), "<folder>"))

# %%
# The two models
# --------------
# The test metrics, nats per datapoint (ELBO = reconstruction - KL):
import matplotlib.pyplot as plt  # noqa: E402

names = ["rows.csv (composite)", "bits.npy (bernoulli)"]
cells = [
    [
        f"{m['test/count']:.0f}",
        f"{m['test/elbo']:.3f} ± {m['test/elbo_stderr']:.3f}",
        f"{m['test/reconstruction']:.3f}",
        f"{m['test/kl']:.3f}",
    ]
    for m in (tab_metrics, bits_metrics)
]
fig, ax = plt.subplots(figsize=(7, 1.3))
ax.axis("off")
ax.table(
    cellText=cells,
    rowLabels=names,
    colLabels=["test rows", "ELBO ± s.e.", "reconstruction", "KL"],
    loc="center",
)
fig.tight_layout()
for name, row in zip(names, cells, strict=True):
    print(f"{name:22s} " + "  ".join(row))
