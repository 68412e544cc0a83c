"""scVI (scvi-tools) on one count table: training, held-out log p(x) per row by ``get_marginal_ll``, seconds per epoch.

Runs in the scvi-tools environment (``.venv-scvi``, see the README); ``scvi_side_by_side.py``
calls it once per (table, seed), one process at a time. Two commands:

    .venv-scvi/bin/python experiments/counts/scvi_fit.py make-data
    .venv-scvi/bin/python experiments/counts/scvi_fit.py fit --table baseball --seed 0 --epochs 40 --out f.json

``make-data`` writes ``data/counts/synthetic_iid.npz``: ``scvi.data.synthetic_iid(batch_size=1000)``
(2 batches of 1,000 cells, 100 genes; scvi-tools draws each count as NB(5, 0.3) times a
Bernoulli(0.7) mask, independently) made with ``scvi.settings.seed = 0`` and split by a seed-0
permutation into 1,500 train and 500 test rows.

``fit`` trains ``scvi.model.SCVI`` (ZINB, ``dispersion="gene"``, observed library size, its own
encoder on log1p(x); batch norm in encoder and decoder, dropout 0.1 in the encoder; ReLU) with
the latent size, hidden width, layers, batch size, learning rate and epochs given, on all train
rows (``train_size=1.0``), and without KL warm-up (scvi-tools' default warms up over 400 epochs,
longer than these budgets, so the trained objective would not be the ELBO). Then, in eval mode, log p(x) of every test row
by ``get_marginal_ll(adata_test, n_mc_samples=1000, return_mean=False)``: scvi-tools 1.5.1's
``VAE.marginal_ll`` returns log (1/K) sum_k p(x | z_k, l) p(z_k) / q(z_k | x), z_k ~ q(z | x),
per cell, with l the observed log library size (no prior term for l), a log-likelihood (higher
is better), not its negative. ``return_mean=True`` would average the per-minibatch means, which
weights the cells of a short last batch more; the per-row values are averaged here instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import npz_path, write_npz  # noqa: E402


def make_data() -> Path:
    import scvi

    scvi.settings.seed = 0
    x = np.asarray(scvi.data.synthetic_iid(batch_size=1000).X)
    perm = np.random.default_rng(0).permutation(len(x))
    return write_npz("synthetic_iid", x[perm[:1500]], x[perm[1500:]])


def fit(table: str, seed: int, epochs: int, latent: int, hidden: int, layers: int, batch_size: int, lr: float,
        n_mc: int) -> dict:  # fmt: skip
    import anndata
    import scvi
    import torch

    torch.set_num_threads(1)
    scvi.settings.seed = seed
    scvi.settings.num_threads = 1
    with np.load(npz_path(table)) as f:
        train, test = f["train"], f["test"]
    adata = anndata.AnnData(X=train)
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata, n_hidden=hidden, n_latent=latent, n_layers=layers, gene_likelihood="zinb",
                            dispersion="gene")  # fmt: skip
    plan = {"lr": lr, "n_epochs_kl_warmup": None, "n_steps_kl_warmup": None}
    start = time.perf_counter()
    model.train(max_epochs=epochs, train_size=1.0, batch_size=batch_size, accelerator="cpu", devices=1,
                plan_kwargs=plan, enable_progress_bar=False, enable_model_summary=False, logger=False,
                enable_checkpointing=False)  # fmt: skip
    seconds = time.perf_counter() - start
    model.module.eval()
    adata_test = anndata.AnnData(X=test)
    start = time.perf_counter()
    lp = (
        model.get_marginal_ll(adata_test, n_mc_samples=n_mc, return_mean=False, batch_size=256)
        .double()
        .numpy()
    )
    eval_seconds = time.perf_counter() - start
    return {
        "model": "scvi",
        "scvi_tools_version": scvi.__version__,
        "torch_version": torch.__version__,
        "table": table,
        "seed": seed,
        "epochs": epochs,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "eval_seconds": eval_seconds,
        "test_rows": len(lp),
        "test_log_px_mean": float(lp.mean()),
        "test_log_px_se_over_rows": float(lp.std(ddof=1) / np.sqrt(len(lp))),
        "test_log_px": lp.tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("make-data")
    f = sub.add_parser("fit")
    f.add_argument("--table", required=True)
    f.add_argument("--seed", type=int, required=True)
    f.add_argument("--epochs", type=int, required=True)
    f.add_argument("--latent", type=int, default=10)
    f.add_argument("--hidden", type=int, default=128)
    f.add_argument("--layers", type=int, default=1)
    f.add_argument("--batch-size", type=int, default=128)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--n-mc", type=int, default=1000)
    f.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "make-data":
        print(make_data())
        return 0
    result = fit(args.table, args.seed, args.epochs, args.latent, args.hidden, args.layers, args.batch_size,
                 args.lr, args.n_mc)  # fmt: skip
    args.out.write_text(json.dumps(result) + "\n")
    print(f"scvi {args.table} seed {args.seed}: {result['test_log_px_mean']:.3f} nats per row, "
          f"{result['seconds_per_epoch']:.3f} s per epoch")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
