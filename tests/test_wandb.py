"""W&B in the default config: offline without an account or a key, and the run folder holds everything logged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from offline_wandb import read_run

from lvm.cli import main as lvm_main
from lvm.data import TensorDataModule
from lvm.loggers import WandbLogger, wandb_mode

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "mnist" / "vae.yaml"
N_TEST = 60


class BitImages(TensorDataModule):
    """4 x 4 binary images from 4 prototypes with 5% of the bits flipped (a stand-in for MNIST)."""

    def __init__(self, batch_size: int = 50) -> None:
        g = torch.Generator().manual_seed(0)
        protos = (torch.rand(4, 16, generator=g) > 0.5).float()
        x = protos[torch.randint(0, 4, (300 + 2 * N_TEST,), generator=g)]
        x = (x + (torch.rand(x.shape, generator=g) < 0.05).float()) % 2
        super().__init__(x[:300], x[300 : 300 + N_TEST], x[300 + N_TEST :], batch_size=batch_size)


def test_mode_is_offline_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    assert wandb_mode(online=True) == "online"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_mode() == "online" and wandb_mode(online=False) == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert WandbLogger(save_dir=".").mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "onlne")
    with pytest.raises(ValueError, match="WANDB_MODE must be one of .*got 'onlne'"):
        wandb_mode()


def tiny_default_config(tmp: Path) -> dict:
    """experiments/mnist/vae.yaml with its logger and callbacks, on tiny data, writing under ``tmp``."""
    config = yaml.safe_load(CONFIG.read_text())
    trainer = config["trainer"]
    assert trainer["logger"]["class_path"] == "lvm.loggers.WandbLogger"  # the default logger is W&B ...
    assert "online" not in trainer["logger"]["init_args"]  # ... and offline
    config["model"].update(
        latent_dim=2,
        encoder={"name": "mlp", "hidden": [16]},
        decoder={"name": "mlp", "hidden": [16]},
        estimators=[{"name": "importance", "num_samples": 8}],
    )
    config["data"] = {"class_path": "test_wandb.BitImages"}
    trainer.update(accelerator="cpu", max_epochs=2, log_every_n_steps=1, enable_progress_bar=False)
    trainer["default_root_dir"] = str(tmp / "runs")
    trainer["logger"]["init_args"]["save_dir"] = str(tmp / "runs")
    for cb in trainer["callbacks"]:
        args = cb.setdefault("init_args", {})
        if "dirpath" in args:
            args["dirpath"] = str(tmp / "runs" / "checkpoints")
        if "out_dir" in args:
            args.update(out_dir=str(tmp / "runs" / "figures"), every_n_epochs=1)
    return config


def test_offline_run_has_config_curves_table_images_and_best_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc or settings from the real home
    for k in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{k}_DIR", str(tmp_path / "home" / k.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae.yaml").write_text(yaml.safe_dump(tiny_default_config(tmp_path)))
    import wandb

    try:
        lvm_main(["fit", "--config", str(tmp_path / "vae.yaml")])
    finally:
        wandb.finish()

    (folder,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")  # offline, one run
    run = read_run(folder)
    # the config: the whole of it, and the model's hyperparameters
    assert run.config["model"]["latent_dim"] == 2 and run.config["trainer"]["max_epochs"] == 2
    assert run.config["data"]["class_path"] == "test_wandb.BitImages"
    assert run.config["objective"] == "elbo" and run.config["lr"] == 1e-3
    # train and validation curves, and the learning rate
    for key in ("train/elbo", "train/reconstruction", "train/kl", "train/loss"):
        assert len(run.rows_with(key)) == 2 * 6, key  # 6 steps per epoch, logged every step
    for key in ("val/elbo", "val/reconstruction", "val/kl", "val/log_px/importance", "lr-Adam"):
        assert len(run.rows_with(key)) == 2, key  # once per epoch
    assert {row["lr-Adam"] for row in run.rows_with("lr-Adam")} == {1e-3}
    # the estimator table, from the test run after fit
    (table,) = [row["test/estimators"] for row in run.rows_with("test/estimators")]
    assert table["_type"] == "table-file"
    data = json.loads((folder / "files" / table["path"]).read_text())
    assert data["columns"] == ["estimator", "num_samples", "log_px", "stderr", "count"]
    assert [(r[0], r[1], r[4]) for r in data["data"]] == [
        ("elbo", 1, N_TEST),
        ("importance", 8, N_TEST),
    ]
    (test_row,) = run.rows_with("test/log_px/importance")
    assert data["data"][1][2] == pytest.approx(test_row["test/log_px/importance"])
    # the three grids as images, every epoch (every_n_epochs=1) and at the end of fit
    for name in ("samples", "reconstructions", "interpolations"):
        images = [row[f"figures/{name}"] for row in run.rows_with(f"figures/{name}")]
        assert len(images) == 3, name
        assert all((folder / "files" / f).is_file() for img in images for f in img["filenames"])
    # the best checkpoint as a model artifact
    best = [a for a in run.artifacts if a["type"] == "model" and "best" in a["aliases"]]
    assert len(best) == 1, run.artifacts
    staged = Path(best[0]["files"]["model.ckpt"])
    (best_ckpt,) = (tmp_path / "runs" / "checkpoints").glob("best-*.ckpt")
    assert hashlib.sha256(staged.read_bytes()).digest() == hashlib.sha256(best_ckpt.read_bytes()).digest()
    # no account, no key: nothing written anywhere mentions one
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix not in (".ckpt", ".png") and "staging" not in path.parts:
            assert b"api_key" not in path.read_bytes().lower(), path
    assert not (tmp_path / "home" / ".netrc").exists()
