"""lvm's ZINB VAE beside scVI (scvi-tools) on the same count rows: held-out log p(x) per row and seconds per epoch.

For each table (scvi-tools' ``synthetic_iid`` and the baseball count table, ``tables.py``) and each
training seed, one process at a time at one torch thread: lvm here, then scVI in the scvi-tools
environment (``scvi_fit.py fit`` in ``.venv-scvi``). Both models: latent 10, one hidden layer of
128 ReLU units in encoder and decoder (scVI's defaults), ZINB with one inverse dispersion per
column (scVI's ``dispersion="gene"``), the observed library size l = sum_j x_j as size factor,
batch 128, Adam 1e-3, no KL warm-up, the same number of epochs on the same train rows.

How each uses l: scVI's decoder ends in a softmax over the D columns, rho = softmax(f), and the
NB mean is mu_j = l rho_j, so the means of a row sum to l (Lopez et al. 2018). lvm's ``zinb``
with ``size_factor`` takes l as the row's last value and uses mu_j = l exp(f_j) with f_j free
(a log link, no softmax), so sum_j mu_j is not tied to l. Both condition on l: the number each
reports is log p(x | l) with l computed from x itself, not a density of x (it can exceed the
true log p(x)). Other differences: scVI's encoder and decoder have batch norm and its encoder
dropout 0.1, lvm's neither; lvm's encoder sees log(1 + x) and log(1 + l) (``symlog_encoder.py``),
scVI's log(1 + x); scVI's Adam has weight decay 1e-6 and eps 0.01. On ``synthetic_iid``
(counts drawn independently, NB(5, 0.3) times a Bernoulli(0.7) mask) the true log p(x) of each
row is known, and an lvm ZINB VAE without size factor, whose log p(x) is a density, is trained
too.

Held-out log p(x) per row by importance sampling, K = 1000, z_k ~ q(z | x): lvm's
``importance`` estimator (with the MC standard error and Pareto k of each row) and scVI's
``get_marginal_ll(n_mc_samples=1000)`` (see ``scvi_fit.py``).

    python experiments/counts/scvi_side_by_side.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCVI_PYTHON = ROOT / ".venv-scvi" / "bin" / "python"
#: Epochs of each table (both models): the budget.
EPOCHS = {"synthetic_iid": 100, "baseball": 40}
ARCH = {"latent": 10, "hidden": 128, "layers": 1, "batch_size": 128, "lr": 1e-3}


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), e.g. "AMD EPYC"."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def with_library(x: torch.Tensor) -> torch.Tensor:
    """x (N, D) -> (N, D + 1) with the library size sum_j x_j last, lvm's size factor column."""
    return torch.cat([x, x.sum(1, keepdim=True)], 1)


def synthetic_truth(test: np.ndarray) -> np.ndarray:
    """log p(x) per row under scvi-tools' generator: each count NB(5, 0.3) kept with probability 0.7, else 0."""
    nb = stats.nbinom.logpmf(test, 5, 0.3) + math.log(0.7)
    return np.where(test == 0, np.logaddexp(math.log(0.3), nb), nb).sum(1)


def fit_lvm(table: str, seed: int, epochs: int, size_factor: bool) -> dict:
    train, _, test = tables.load(table)
    if size_factor:
        train, test = with_library(train), with_library(test)
    L.seed_everything(seed, verbose=False)
    layer = {"hidden": [ARCH["hidden"]] * ARCH["layers"], "activation": "relu"}
    vae = lvm.VAE(data_shape=[train.shape[1]], latent_dim=ARCH["latent"], encoder={"name": "symlog_mlp", **layer},
                  decoder={"name": "mlp", **layer}, lr=ARCH["lr"],
                  likelihood={"name": "zinb", "dispersion": "feature", "size_factor": size_factor})  # fmt: skip
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(vae, datamodule=TensorDataModule(train, batch_size=ARCH["batch_size"], seed=seed))
    seconds = time.perf_counter() - start
    vae.eval()
    est = lvm.create_estimator({"name": "importance", "num_samples": 1000})
    start = time.perf_counter()
    out = est.estimate(vae.model, test, index=torch.arange(len(test)), seed=seed)
    eval_seconds = time.perf_counter() - start
    lp = out.log_px.double().numpy()
    return {
        "model": "lvm" if size_factor else "lvm_no_size_factor",
        "table": table,
        "seed": seed,
        "epochs": epochs,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "eval_seconds": eval_seconds,
        "test_rows": len(lp),
        "test_log_px_mean": float(lp.mean()),
        "test_log_px_se_over_rows": float(lp.std(ddof=1) / math.sqrt(len(lp))),
        "mean_mc_stderr": float(out.mc_stderr.mean()),
        "max_mc_stderr": float(out.mc_stderr.max()),
        "max_pareto_k": float(out.pareto_k.max()),
        "rows_pareto_k_above_0.7": int((out.pareto_k > 0.7).sum()),
        "test_log_px": lp.tolist(),
    }


def fit_scvi(table: str, seed: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scvi.json"
        cmd = [str(SCVI_PYTHON), str(HERE / "scvi_fit.py"), "fit", "--table", table, "--seed", str(seed),
               "--epochs", str(epochs), "--latent", str(ARCH["latent"]), "--hidden", str(ARCH["hidden"]),
               "--layers", str(ARCH["layers"]), "--batch-size", str(ARCH["batch_size"]), "--lr", str(ARCH["lr"]),
               "--out", str(out)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def summarise(runs: list[dict], truth: np.ndarray | None) -> dict:
    """Mean and sd over seeds of each model's held-out log p(x), its seconds per epoch, and lvm - scVI per seed."""
    out: dict = {}
    for model in sorted({r["model"] for r in runs}):
        mine = [r for r in runs if r["model"] == model]
        v = np.array([r["test_log_px_mean"] for r in mine])
        t = np.array([r["seconds_per_epoch"] for r in mine])
        out[model] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                      "seconds_per_epoch_mean": float(t.mean()), "seconds_per_epoch_min": float(t.min()),
                      "seconds_per_epoch_max": float(t.max()), "seeds": [r["seed"] for r in mine]}  # fmt: skip
    diffs = []
    for r in runs:
        if r["model"] == "lvm":
            s = next(q for q in runs if q["model"] == "scvi" and q["seed"] == r["seed"])
            d = np.array(r["test_log_px"]) - np.array(s["test_log_px"])
            diffs.append(
                {
                    "seed": r["seed"],
                    "mean": float(d.mean()),
                    "se_over_rows": float(d.std(ddof=1) / math.sqrt(len(d))),
                }
            )
    out["lvm_minus_scvi_per_seed"] = diffs
    if truth is not None:
        out["true_log_px_mean"] = float(truth.mean())
        out["true_log_px_se_over_rows"] = float(truth.std(ddof=1) / math.sqrt(len(truth)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tables", nargs="+", default=list(EPOCHS), choices=list(EPOCHS))
    p.add_argument("--out", type=Path, default=HERE / "results" / "scvi_side_by_side.json")
    args = p.parse_args(argv)
    if not SCVI_PYTHON.exists():
        print(f"error: {SCVI_PYTHON} is missing; set up the scvi-tools environment (README)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if "synthetic_iid" in args.tables and not tables.npz_path("synthetic_iid").exists():
        subprocess.run([str(SCVI_PYTHON), str(HERE / "scvi_fit.py"), "make-data"], check=True)
    if "baseball" in args.tables:
        train, _, test = tables.load("baseball")
        tables.write_npz("baseball", train.numpy(), test.numpy())
    result: dict = {
        "command": f"python experiments/counts/scvi_side_by_side.py --seeds {' '.join(map(str, args.seeds))} "
        f"--tables {' '.join(args.tables)}",
        "cpu": cpu_name(),
        "torch_threads": 1,
        "architecture": ARCH,
        "tables": {},
    }
    for table in args.tables:
        runs = []
        for seed in args.seeds:
            runs.append(fit_lvm(table, seed, EPOCHS[table], size_factor=True))
            runs.append(fit_scvi(table, seed, EPOCHS[table]))
            if table == "synthetic_iid":
                runs.append(fit_lvm(table, seed, EPOCHS[table], size_factor=False))
            for r in runs[-3:]:
                if r["seed"] == seed:
                    print(f"{table} seed {seed} {r['model']:20s} {r['test_log_px_mean']:9.3f} nats per row, "
                          f"{r['seconds_per_epoch']:.3f} s per epoch", flush=True)  # fmt: skip
        truth = synthetic_truth(tables.load(table)[2].numpy()) if table == "synthetic_iid" else None
        result["tables"][table] = {"epochs": EPOCHS[table], "summary": summarise(runs, truth),
                                   "runs": [{k: v for k, v in r.items() if k != "test_log_px"} for r in runs]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for table, t in result["tables"].items():
        for model, s in t["summary"].items():
            if isinstance(s, dict):
                print(
                    f"{table} {model:20s} {s['mean']:.3f} +- {s['sd']:.3f}, {s['seconds_per_epoch_mean']:.3f} s/epoch"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
