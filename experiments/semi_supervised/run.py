"""Train M2 (Kingma et al. 2014) on MNIST with few labels, once per seed, at a fixed epoch budget.

Each seed writes ``<out>/seed<S>/results.json`` (test accuracy, its standard error over images,
the validation curve, epochs and wall time), ``class_conditional.png`` and CSV logs; ``<out>/summary.json``
holds the mean and standard deviation of the test accuracy over seeds. The data are the same
for every seed (labelled subset ``label_seed``, validation split and test binarisation ``seed``
of the config); the training seed sets the initialisation, the training binarisation draws and
the batch order.

    python experiments/semi_supervised/run.py                   # seeds 0 1 2, budget.cpu
    python experiments/semi_supervised/run.py --seeds 3 --full  # budget.full for one more seed
    python experiments/semi_supervised/run.py --summarize       # summary.json of the seeds in --out
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torchvision.utils import make_grid

from lvm.data import MNISTDataModule, SemiSupervisedDataModule
from lvm.semi_supervised import SemiSupervisedVAE

HERE = Path(__file__).resolve().parent


class Curve(L.Callback):
    """Record (epoch, step, minutes, val/accuracy) at every validation; kept in checkpoints.

    After a resume, ``minutes`` and ``cpu_minutes`` go on from the last row of the checkpoint.
    """

    def __init__(self) -> None:
        self.start, self.cpu, self.rows = time.time(), time.process_time(), []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
        if self.rows:
            self.start -= 60 * self.rows[-1]["minutes"]
            self.cpu -= 60 * self.rows[-1]["cpu_minutes"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/accuracy" not in trainer.callback_metrics:
            return
        row = {
            "epoch": round(trainer.global_step / max(trainer.num_training_batches, 1), 3),
            "step": trainer.global_step,
            "minutes": round((time.time() - self.start) / 60, 2),
            "cpu_minutes": round((time.process_time() - self.cpu) / 60, 2),
            "val_accuracy": round(float(trainer.callback_metrics["val/accuracy"]), 4),
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)


class StepDecay(L.Callback):
    """Multiply the learning rate by ``factor`` from epoch ``epoch`` on (0-based, as Lightning counts).

    The rate is set from the epoch at the start of every epoch, so a resumed run gets it right.
    """

    def __init__(self, epoch: int, factor: float) -> None:
        self.epoch, self.factor = epoch, factor

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scale = self.factor if trainer.current_epoch >= self.epoch else 1.0
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = pl_module.hparams.lr * scale


def class_conditional(model: SemiSupervisedVAE, num_classes: int, per_class: int = 10) -> torch.Tensor:
    """Grid of E[x | y, z], z ~ p(z): row c shows ``per_class`` draws of class c."""
    y = torch.arange(num_classes).repeat_interleave(per_class)
    model.eval()
    x = model.model.sample(y).reshape(len(y), 1, 28, 28).clamp(0, 1).cpu()
    return make_grid(x, nrow=per_class, pad_value=1.0)


def run_seed(cfg: dict[str, Any], budget: dict[str, Any], seed: int, out: Path, args: Any) -> dict[str, Any]:
    """Train and test M2 with ``seed``; write its results.json and picture into ``out``."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, verbose=False)
    data = dict(cfg["data"])
    base = MNISTDataModule(data_dir=args.data_dir, seed=cfg.get("seed", 0), **data.pop("base"))
    dm = SemiSupervisedDataModule(base, **data)
    model = SemiSupervisedVAE(data_shape=dm.data_shape, **cfg["model"])
    curve = Curve()
    # last.ckpt at the end of every epoch: a stopped run loses at most one epoch (--resume)
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", save_top_k=0, save_last=True, save_on_train_epoch_end=True
    )
    callbacks: list[L.Callback] = [curve, ckpt]
    if budget.get("lr_decay"):
        callbacks.append(StepDecay(**budget["lr_decay"]))
    last = out / "checkpoints" / "last.ckpt"
    resume = args.resume and last.exists()
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, max_epochs=budget["max_epochs"],
        val_check_interval=budget["val_check_interval"], num_sanity_val_steps=0,
        logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=50, callbacks=callbacks,
        limit_train_batches=args.limit_train_batches,
    )  # fmt: skip
    # a resumed run shuffles differently from an unbroken one: Lightning does not restore the RNGs
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if resume else None)
    fit_minutes = curve.rows[-1]["minutes"] if curve.rows else (time.time() - t0) / 60
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    grid = class_conditional(model, cfg["model"]["num_classes"])
    grey = grid[0].mul(255).round().to(torch.uint8).numpy()  # one channel keeps the PNG small
    Image.fromarray(grey).resize((4 * grey.shape[1], 4 * grey.shape[0]), Image.NEAREST).save(
        out / "class_conditional.png", optimize=True
    )
    results = {
        "config": os.path.relpath(args.config),
        "budget": "full" if args.full else "cpu",
        "seed": seed,
        "num_labels": dm.num_labels,
        "test_accuracy": test["test/accuracy"],
        "test_accuracy_stderr": test["test/accuracy_stderr"],
        "test_error_percent": 100 * (1 - test["test/accuracy"]),
        "test_bound_nats": test.get("test/bound"),
        "test_count": int(test["test/count"]),
        "best_val_accuracy": max((r["val_accuracy"] for r in curve.rows), default=None),
        "max_epochs": budget["max_epochs"],
        "lr_decay": budget.get("lr_decay"),
        "resumed": bool(resume),
        "epochs": round(curve.rows[-1]["epoch"], 2) if curve.rows else trainer.current_epoch,
        "steps": trainer.global_step,
        "fit_minutes": round(fit_minutes, 2),
        "total_minutes": round((time.time() - t0) / 60, 2),
        "threads": args.threads,
        "device": str(model.device),
        "torch": torch.__version__,
        "curve": curve.rows,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "curve"}, indent=2), flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(HERE / "m2.yaml"), help="YAML config (default: m2.yaml)")
    parser.add_argument("--full", action="store_true", help="use the config's full budget, not the CPU one")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the epoch budget")
    parser.add_argument(
        "--limit-train-batches", type=float, default=None, help="batches per epoch (smoke runs only)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="go on from <out>/seed<S>/checkpoints/last.ckpt where it exists"
    )
    parser.add_argument("--out", default="runs/semi_supervised", help="folder for results, PNGs, logs")
    parser.add_argument("--data-dir", default=None, help="data root (default $LVM_DATA_DIR or ./data)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: fastest on a busy shared CPU)"
    )
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="do not flush subnormal floats to zero (slower on x86 CPUs as training goes on; see README)",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="train nothing: rewrite <out>/summary.json from the seed folders already in <out>",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    # As M2 trains, some values fall below float32's normal range (1.2e-38: exp(f) for logits
    # f < -87, squared gradients of saturated outputs in Adam), and x86 CPUs compute on such
    # subnormal numbers many times slower (torch.exp on values near -95: 68 ms against 0.5 ms
    # near -10, one thread). Without this, two seeds slowed from 0.4 to 1.2 CPU-minutes an epoch
    # by epoch 20; with it, three seeds took 0.39-0.44 CPU-minutes an epoch from epoch 5 to 50
    # (``cpu_minutes`` in results_seeds/). A flushed value differs by less than 1.2e-38.
    if not args.keep_denormals:
        torch.set_flush_denormal(True)
    cfg = yaml.safe_load(Path(args.config).read_text())
    budget = dict(cfg["budget"]["full" if args.full else "cpu"])
    if args.max_epochs is not None:
        budget["max_epochs"] = args.max_epochs
    if budget.get("lr_decay") and budget["lr_decay"]["epoch"] >= budget["max_epochs"]:
        budget["lr_decay"] = None  # a decay the run never reaches: the run is the plain budget's
    out = Path(args.out)
    if not args.summarize:
        for s in args.seeds:
            run_seed(cfg, budget, s, out / f"seed{s}", args)
    # every seed run into ``out`` at this budget, also by other processes (seeds run in parallel)
    runs = [json.loads(p.read_text()) for p in out.glob("seed*/results.json")]
    same = (budget["max_epochs"], budget.get("lr_decay"), Path(args.config).name)  # budget and config file
    runs = sorted(
        (
            r
            for r in runs
            if (r["max_epochs"], r.get("lr_decay"), Path(r.get("config", same[2])).name) == same
        ),
        key=lambda r: r["seed"],
    )
    if not runs:
        where = f"{out}/seed*/results.json"
        decay = f" (lr decay {same[1]})" if same[1] else ""
        print(
            f"run.py: no results of {budget['max_epochs']} epochs{decay} with {same[2]} in {where}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    acc = [r["test_accuracy"] for r in runs]
    summary = {
        "command": "python experiments/semi_supervised/run.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "max_epochs": budget["max_epochs"],
        "lr_decay": budget.get("lr_decay"),
        "seeds": [r["seed"] for r in runs],
        "test_accuracy_mean": statistics.mean(acc),
        "test_accuracy_sd": statistics.stdev(acc) if len(acc) > 1 else None,
        "anchor": {
            "test_accuracy": 0.9608,
            "source": "Kingma et al. (2014), Table 1, M2, 3,000 labels: 3.92% error",
        },
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    sd = f" ± {summary['test_accuracy_sd']:.4f} sd" if summary["test_accuracy_sd"] is not None else ""
    print(
        f"test accuracy over {len(acc)} seed(s): {summary['test_accuracy_mean']:.4f}{sd}; {out / 'summary.json'}"
    )
    return summary


if __name__ == "__main__":
    sys.exit(main() and 0)
