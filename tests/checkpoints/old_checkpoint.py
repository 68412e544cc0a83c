"""Write a checkpoint with ``lvm fit`` and pin what loading, evaluating and resuming it give.

This file does both jobs with public APIs only, so that the same code runs under the lvm that
wrote a committed checkpoint and under every later one:

- run as a script, with the lvm version to record (see ``tests/checkpoints/README.md``), it
  trains a tiny VAE with ``lvm fit`` and writes ``lvm-<version>.ckpt`` and ``lvm-<version>.json``
  (the evaluation and the resumed fit it gives);
- ``tests/test_old_checkpoints.py`` imports :func:`evaluate` and :func:`resume` and checks the
  committed JSON against the installed lvm.

The data is integer arithmetic (no random draw), so it is the same under any torch version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

N_TRAIN, N_VAL, DIM, BATCH = 48, 16, 16, 16  # 3 training steps per epoch
FIT_EPOCHS, RESUME_EPOCHS = 2, 5

#: The ``lvm fit`` config (the data files are added on the command line). IWAE with Burda et al.'s
#: learning-rate schedule, so the checkpoint holds an optimizer and a scheduler state.
CONFIG: dict[str, Any] = {
    "seed_everything": 0,
    "model": {
        "latent_dim": 2,
        "encoder": {"name": "mlp", "hidden": [8]},
        "decoder": {"name": "mlp", "hidden": [8]},
        "likelihood": "bernoulli",
        "objective": "iwae",
        "num_samples": 2,
        "lr": 1.0e-2,
        "lr_schedule": "iwae",
        "estimators": [{"name": "importance", "num_samples": 16}],
    },
    "data": {"class_path": "lvm.data.FileDataModule", "init_args": {"batch_size": BATCH, "seed": 0}},
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": FIT_EPOCHS,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}
        ],
    },
}


def bits(n: int, offset: int = 0) -> torch.Tensor:
    """Binary datapoints (n, 16) from integer arithmetic: two overlapping stripe patterns."""
    i = torch.arange(offset, offset + n)[:, None]
    d = torch.arange(DIM)[None, :]
    return (((i * 7 + d * 3 + (i * d) % 5) % 4) < 2).float()


def datamodule() -> Any:
    from lvm.data import TensorDataModule

    x_train, x_val = bits(N_TRAIN), bits(N_VAL, offset=N_TRAIN)
    return TensorDataModule(x_train, x_val, x_val, batch_size=BATCH, seed=0)


def _trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def evaluate(ckpt: str | Path) -> dict[str, float]:
    """Load ``ckpt`` as a library user does and test it on the validation data: the logged means."""
    import lvm

    model = lvm.VAE.load_from_checkpoint(ckpt, weights_only=True)
    (metrics,) = _trainer(enable_checkpointing=False).test(model, datamodule=datamodule(), verbose=False)
    keys = ("test/elbo", "test/bound", "test/log_px/importance", "test/count")
    return {k: float(metrics[k]) for k in keys}


def resume(ckpt: str | Path, folder: str | Path) -> dict[str, Any]:
    """Resume the fit of ``ckpt`` to epoch ``RESUME_EPOCHS`` in ``folder``; what the resumed run ends with."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    import lvm

    model = lvm.VAE.load_from_checkpoint(ckpt, weights_only=True)
    trainer = _trainer(
        max_epochs=RESUME_EPOCHS,
        default_root_dir=str(folder),
        callbacks=[ModelCheckpoint(dirpath=str(folder), save_last=True)],
    )
    trainer.fit(model, datamodule=datamodule(), ckpt_path=str(ckpt))
    last = torch.load(Path(folder) / "last.ckpt", map_location="cpu", weights_only=True)
    (opt,) = last["optimizer_states"]
    steps = {float(s["step"]) for s in opt["state"].values()}
    return {
        "global_step": int(last["global_step"]),
        "epoch": int(last["epoch"]),
        "lr": float(opt["param_groups"][0]["lr"]),
        "adam_steps": sorted(steps),
        "parameter_abs_sum": float(sum(p.abs().sum() for p in last["state_dict"].values())),
        "evaluation": evaluate(Path(folder) / "last.ckpt"),
    }


def _write(out: Path, version: str) -> None:
    import lvm
    from lvm.cli import main as lvm_main

    if lvm.__version__ != version:
        sys.exit(f"lvm {lvm.__version__} is importable; run this with lvm {version} ({lvm.__file__})")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save({"x": bits(N_TRAIN)}, work / "train.pt")
        torch.save({"x": bits(N_VAL, offset=N_TRAIN)}, work / "val.pt")
        config = json.loads(json.dumps(CONFIG))
        config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(work / "ckpt")
        (work / "fit.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        args = ["fit", "--config", str(work / "fit.yaml"), f"--data.init_args.train={work / 'train.pt'}",
                f"--data.init_args.val={work / 'val.pt'}", f"--trainer.default_root_dir={work}"]  # fmt: skip
        if lvm_main(args) != 0:
            sys.exit("lvm fit failed")
        ckpt = out / f"lvm-{version}.ckpt"
        shutil.copyfile(work / "ckpt" / "last.ckpt", ckpt)
        pinned = {
            "lvm": version,
            "torch": torch.__version__,
            "lightning": L.__version__,
            "command": "python tests/checkpoints/old_checkpoint.py --version " + version,
            "evaluation": evaluate(ckpt),
            "resumed": resume(ckpt, work / "resumed"),
        }
    (out / f"lvm-{version}.json").write_text(json.dumps(pinned, indent=2) + "\n")
    print(json.dumps(pinned, indent=2))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", required=True, help="the version of the importable lvm, checked")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    a = p.parse_args()
    _write(a.out, a.version)
