"""Train and test a small VAE on 1 or N CPU processes (DDP, gloo) and write what rank 0 saw; run by test_ddp.py.

Lightning's DDP launcher runs this script again for ranks 1..N-1 with the same arguments, so it
is a script, not a test. Rank 0 writes ``--out`` (JSON: the logged test metrics, the estimator
table, the world size); every rank writes ``rank<r>.json`` (the test indices it evaluated and a
checksum of its parameters), which the test uses to check sharding and that only rank 0 wrote
figures and W&B files.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import lightning as L
import torch

import lvm
from lvm.callbacks import SeedFigures
from lvm.data import TensorDataModule
from lvm.loggers import EstimatorTable, WandbLogger

N_TRAIN, N_VAL, N_TEST = 512, 301, 1001  # val and test sizes are not multiples of 2 (or 4)
#: Every registered estimator (a new one is covered without editing this file); cheap settings for the costly.
CHEAP = {"ais": {"steps": 3, "leapfrog_steps": 2}, "quadrature": {"points": 20}}
ESTIMATORS = [{"name": name, "num_samples": 16, **CHEAP.get(name, {})} for name in lvm.list_estimators()]


def bits(n: int, seed: int, d: int = 16) -> torch.Tensor:
    """Binary 4 x 4 images from 4 prototypes with 5% of the bits flipped."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, d, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    x = protos[torch.randint(0, 4, (n,), generator=g)]
    return (x + (torch.rand(n, d, generator=g) < 0.05).float()) % 2


class Record(L.Callback):
    """Instrumentation: each rank writes the test indices it evaluated and its parameter checksum."""

    def __init__(self, path: Path) -> None:
        self.path, self.indices = path, []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.indices += batch["index"].tolist()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = sum(float(p.double().sum()) for p in pl_module.parameters())
        record = {"rank": trainer.global_rank, "indices": self.indices, "param_sum": params}
        self.path.write_text(json.dumps(record))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--train_steps", type=int, default=0, help="fit this many steps first (0: no fit)")
    parser.add_argument("--weights", type=Path, required=True, help="written after fit, else read")
    parser.add_argument("--wandb", action="store_true", help="log to an offline W&B run")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("LOCAL_RANK", 0))  # set by Lightning's launcher for ranks >= 1

    if args.devices > 1:
        torch.set_num_threads(1)  # one core per rank
    L.seed_everything(0, verbose=False)
    dm = TensorDataModule(
        bits(N_TRAIN, 1), bits(N_VAL, 2), bits(N_TEST, 3), batch_size=32, eval_batch_size=100
    )
    vae = lvm.VAE(
        data_shape=[16],
        latent_dim=2,
        encoder={"name": "mlp", "hidden": [32]},
        decoder={"name": "mlp", "hidden": [32]},
        lr=1e-2,
        estimators=ESTIMATORS,
    )
    if not args.train_steps:
        vae.load_state_dict(torch.load(args.weights, weights_only=True))
    out = args.workdir / f"devices{args.devices}"
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [
        SeedFigures(out_dir=str(out / f"figures-rank{rank}"), every_n_epochs=1),
        EstimatorTable(),
        Record(out / f"rank{rank}.json"),
    ]
    logger = WandbLogger(save_dir=str(out / "wandb"), log_model=False) if args.wandb else False
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.train_steps or -1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(out),
    )
    if args.train_steps:
        trainer.fit(vae, datamodule=dm)
        if trainer.is_global_zero:
            torch.save(vae.state_dict(), args.weights)
    metrics = trainer.test(vae, datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        result = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "metrics": metrics,
            "table": callbacks[1].rows,
        }
        (out / "result.json").write_text(json.dumps(result, indent=1))
    if args.wandb and trainer.is_global_zero:
        import wandb

        wandb.finish()


if __name__ == "__main__":
    main()
