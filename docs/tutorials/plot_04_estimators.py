"""
Comparing log p(x) estimators
=============================

The marginal likelihood :math:`\\log p(x) = \\log \\int p(x \\mid z)\\, p(z)\\, dz` has no closed
form for a VAE. lvm's estimators approximate it per datapoint, each with its Monte Carlo error:

- ``elbo``: the evidence lower bound, averaged over K draws of z (a bound, not an estimate);
- ``importance``: :math:`\\log \\frac{1}{K} \\sum_k p(x, z_k) / q(z_k \\mid x)`, z_k ~ q(z | x)
  (Burda et al. 2016), a stochastically lower-bounded, consistent estimate;
- ``prior``: the same with the prior as proposal, hopeless in high dimensions;
- ``ais``: annealed importance sampling from q(z | x) to p(z | x) with HMC
  (Neal 2001; Wu et al. 2017);
- ``quadrature``: a grid over a latent space of at most 2 dimensions: exact up to the grid error.

With a 2-D latent space the quadrature gives the answer, so we can see how far each estimator
is from it. Then the BDMC sandwich (Grosse, Ghahramani & Adams 2015) brackets log p(x) from
both sides where no exact value exists.
"""

# %%
# A model with a 2-D latent space
# -------------------------------
# 16-bit binary patterns, each one of four prototypes with 5% of the bits flipped.
import math
import time

import lightning as L
import matplotlib.pyplot as plt
import torch

import lvm
from lvm.data import TensorDataModule
from lvm.estimators import bdmc, compare_to_sandwich

start = time.perf_counter()


def bits(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    x = prototypes[torch.randint(0, 4, (n,), generator=g)]
    return (x + (torch.rand(n, 16, generator=g) < 0.05).float()) % 2


data = TensorDataModule(bits(4000, 1), bits(500, 2), bits(500, 3), batch_size=100, seed=0)
L.seed_everything(0, verbose=False)
vae = lvm.VAE(
    data_shape=[16],
    latent_dim=2,
    likelihood="bernoulli",
    lr=3e-3,
    encoder={"name": "mlp", "hidden": [64]},
    decoder={"name": "mlp", "hidden": [64]},
)
L.Trainer(
    max_epochs=10,
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
).fit(vae, datamodule=data)

# %%
# Every estimator at every K
# --------------------------
# :func:`lvm.compare_estimators` runs each estimator at each K on the same datapoints (here the
# first 200 test points) and returns one :class:`lvm.ComparisonRow` per (estimator, K): the mean
# estimate, its standard error across datapoints (``stderr``), the mean Monte Carlo standard error
# of each datapoint's own estimate (``mean_mc_stderr``), and the largest Pareto k of the
# importance weights' tail. Each datapoint's noise is keyed by (seed, dataset index), so the
# rows do not depend on ``limit`` or the batch size.
x = data.split("test").x[:200]
Ks = [1, 10, 100, 1000]
rows = lvm.compare_estimators(vae, x, ["elbo", "importance", "prior"], Ks)
rows += lvm.compare_estimators(vae, x, [{"name": "ais", "steps": 50, "leapfrog_steps": 5}], [4])
(exact,) = lvm.compare_estimators(vae, x, [{"name": "quadrature", "points": 300}], [1])


def se(value: float | None) -> float:
    """An error bar: 0 where there is none (the ELBO) or one draw cannot give one (K = 1: NaN)."""
    return 0.0 if value is None or math.isnan(value) else value


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


print(f"quadrature (exact up to {exact.mean_mc_stderr:.1e}): {exact.mean_log_px:.4f}\n")
print(f"{'estimator':32s} {'K':>5s} {'mean log p(x)':>14s} {'- exact':>8s} {'MC SE':>6s} {'max k':>6s}")
for r in rows:
    print(
        f"{r.estimator:32s} {r.K:5d} {r.mean_log_px:14.4f} {r.mean_log_px - exact.mean_log_px:8.4f} "
        f"{fmt(r.mean_mc_stderr, 4):>6s} {fmt(r.max_pareto_k, 2):>6s}"
    )

# %%
# Reading the table: the ELBO stays below log p(x) at any K (averaging draws of z lowers its
# variance, not its bias); importance sampling closes the gap as K grows; the prior as proposal
# needs many more samples for the same accuracy. Where the Pareto k of a datapoint's weights
# exceeds 0.7, their variance is effectively infinite and its MC SE cannot be trusted
# (Vehtari et al., "Pareto smoothed importance sampling"); ``lvm compare`` prints a warning then.
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, color in (("elbo", "C0"), ("importance", "C1"), ("prior", "C2")):
    rs = [r for r in rows if r.estimator == name]
    ax.errorbar(
        [r.K for r in rs],
        [r.mean_log_px - exact.mean_log_px for r in rs],
        yerr=[se(r.mean_mc_stderr) for r in rs],
        marker="o",
        capsize=3,
        label=name,
        color=color,
    )
ais_row = rows[-1]
ax.errorbar(
    [ais_row.K],
    [ais_row.mean_log_px - exact.mean_log_px],
    yerr=[ais_row.mean_mc_stderr],
    marker="s",
    capsize=3,
    color="C3",
    label="ais, T = 50 (K = 4 chains)",
)
ax.axhline(0, color="k", lw=0.8)
ax.set_xscale("log")
ax.set_yscale("symlog", linthresh=0.1)  # linear within ±0.1 nats, logarithmic beyond
ax.set_xlabel("K, samples of z per datapoint")
ax.set_ylabel("estimate - exact log p(x), nats")
ax.set_title("200 test points, 2-D latent space (± mean MC SE)")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# The BDMC sandwich
# -----------------
# Without an exact value, bidirectional Monte Carlo brackets log p(x) on data *simulated from the
# model*: for (z, x) ~ p(z) p(x | z), z is an exact posterior sample, so reverse AIS started at
# z gives a stochastic upper bound while forward AIS gives a stochastic lower bound. Their gap
# bounds the error of either, and any estimator can be placed inside it.
# :func:`lvm.estimators.bdmc` returns a :class:`~lvm.estimators.Sandwich`;
# :func:`lvm.estimators.compare_to_sandwich` evaluates estimators on the same x.
model = vae.model.eval()
for steps in (10, 100):
    s = bdmc(model, num_datapoints=100, steps=steps, num_chains=4, leapfrog_steps=5)
    print(
        f"T = {steps:3d}: lower {s.lower.mean():.4f}, upper {s.upper.mean():.4f}, width {s.width.mean():.4f} nats"
    )
# %%
# Both bounds are stochastic: with few chains and a tight sandwich, the mean width can come out
# slightly negative, which says the sandwich is as tight as the chains' noise can show.
# Where do importance-sampling estimates fall in the last (T = 100) sandwich?
Ks = (10, 1000)
distances = compare_to_sandwich(model, s, [{"name": "importance", "num_samples": k} for k in Ks])
for k, d in zip(Ks, distances, strict=True):
    print(
        f"importance, K = {k:4d}: {d.mean_log_px:.4f}, {d.above_lower:+.4f} above the lower bound, "
        f"{d.below_upper:+.4f} below the upper, {100 * d.inside:.0f}% of datapoints inside"
    )
print(f"\ntutorial ran in {time.perf_counter() - start:.1f} s")

# %%
# On the command line, ``lvm compare --ckpt ...`` and ``lvm bdmc --ckpt ...`` do the same for a
# checkpoint and write JSON, CSV and a plot (:doc:`../cli`). The committed comparison on MNIST
# models is described in :doc:`plot_08_reproduce`.
