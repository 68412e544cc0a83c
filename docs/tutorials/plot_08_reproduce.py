"""
Reproducing the experiments
===========================

Each folder of ``experiments/`` holds a config, a script, a README with the exact commands and
budget (a fixed number of epochs, never wall-clock), and the committed results files that every
number comes from. This page reads those files, so the numbers below are the committed ones,
each with its file; the experiments themselves take CPU-hours and are not run here.

From the repository root, after ``pip install -e ".[dev]"`` and copying MNIST's IDX files to
``data/MNIST/raw`` (``$LVM_DATA_DIR`` elsewhere):

.. code-block:: bash

   python experiments/mnist/seeds.py                    # the main VAE job, seeds 0 1 2
   python experiments/mnist/run.py --stages 2           # VAE, IWAE k=5, IWAE k=50 (Burda et al. 2016)
   python experiments/estimators/run.py --help          # log p(x) estimators against cost
   python experiments/tabular/run.py --seeds 0 1 2      # composite likelihood vs the true density
   python experiments/semi_supervised/run.py            # M2 with 3,000 labels (Kingma et al. 2014)

Each README (``experiments/<name>/README.md``) says what its script writes and how the summary
over seeds is made (``--summarize``).
"""

# %%
# The committed numbers
# ---------------------
# mean ± sd over training seeds, read from the files named in the last column.
import json
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt

# the repository: the first folder up from here that holds experiments/ (run from a clone)
root = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "experiments").is_dir())
experiments = root / "experiments"


def read(path: str) -> dict:
    return json.loads((experiments / path).read_text())


rows = []
mnist = read("mnist/results_main/results.json")
rows.append(
    (
        "mnist main job: test ELBO (nats)",
        mnist["test_elbo_mean"],
        mnist["test_elbo_sd"],
        "seeds " + " ".join(map(str, mnist["seeds"])),
        "mnist/results_main/results.json",
    )
)
iwae = read("mnist/results_s2/summary.json")
for name in ("vae_k1", "iwae_k5", "iwae_k50"):
    v = iwae["variants"][name]
    rows.append(
        (
            f"mnist {name}, {v['epochs']} epochs: test NLL (nats)",
            v["test_nll"]["mean"],
            v["test_nll"]["sd"],
            "seeds " + " ".join(map(str, v["seeds"])),
            "mnist/results_s2/summary.json",
        )
    )
est = read("estimators/summary.json")
runs = f"{len(est['files'])} runs"  # seeds 0 1 2 (its README); the summary lists their files
for model in ("vae", "iwae"):
    f = est["figures"][model]
    rows.append(
        (
            f"estimators, {model}: IS (K=5000) - AIS (T=1000)",
            f["is_minus_ais"]["mean"],
            f["is_minus_ais"]["sd"],
            runs,
            "estimators/summary.json",
        )
    )
    rows.append(
        (
            f"estimators, {model}: BDMC sandwich width",
            f["sandwich_width"]["mean"],
            f["sandwich_width"]["sd"],
            runs,
            "estimators/summary.json",
        )
    )
tab = read("tabular/results_seeds/summary.json")
gap = tab["rows"]["VAE, importance sampling K=5000"]["gap_to_truth"]
rows.append(
    (
        "tabular: IS log p(x) - true density (nats/row)",
        gap["mean"],
        gap["sd"],
        "seeds " + " ".join(map(str, tab["seeds"])),
        "tabular/results_seeds/summary.json",
    )
)
m2 = read("semi_supervised/results_e120/summary.json")
rows.append(
    (
        f"M2, 3,000 labels, {m2['max_epochs']} epochs: test accuracy",
        m2["test_accuracy_mean"],
        m2["test_accuracy_sd"],
        "seeds " + " ".join(map(str, m2["seeds"])),
        "semi_supervised/results_e120/summary.json",
    )
)

for what, mean, sd, seeds, path in rows:
    print(f"{what:52s} {mean:10.4f} ± {sd:.4f}  {seeds:12s} experiments/{path}")
print(f"\nM2's anchor: {m2['anchor']['test_accuracy']} ({m2['anchor']['source']})")

# %%
# The tables with their anchors in the papers, the budgets as fractions of the papers', and
# the numbers not yet measured over seeds are in ``experiments/README.md``.
#
# The main job's figures
# ----------------------
# ``lvm fit --config mnist_vae`` writes prior samples, reconstructions and latent
# interpolations (pixel = activation probability); these are the committed ones from
# ``experiments/mnist/figures/``.
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, name in zip(axes, ("samples", "reconstructions", "interpolations"), strict=True):
    ax.imshow(mpimg.imread(experiments / "mnist" / "figures" / f"{name}.png"), cmap="gray")
    ax.set_title(name)
    ax.axis("off")
fig.tight_layout()
