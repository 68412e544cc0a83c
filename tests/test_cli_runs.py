"""The lvm command end to end: bundled configs, limit_*_batches as counts, stale checkpoint temporaries, W&B resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from lvm.checkpoint import AtomicCheckpointIO, remove_stale_temporaries
from lvm.cli import _batch_counts, bundled_configs, ignore_misleading_warnings, resolve_config
from lvm.cli import main as lvm_main
from lvm.evaluation import DATAMODULE_KEY
from lvm.loggers import RUN_ID_KEY, WandbLogger

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_configs_are_the_experiment_configs() -> None:
    configs = bundled_configs()
    assert {"mnist_vae", "mnist_iwae", "tabular_vae"} <= set(configs)
    # one source of truth: experiments/mnist/vae.yaml is the bundled file
    assert (ROOT / "experiments" / "mnist" / "vae.yaml").resolve() == configs["mnist_vae"].resolve()
    assert resolve_config("mnist_vae") == str(configs["mnist_vae"])
    assert resolve_config("mnist_vae.yaml") == str(configs["mnist_vae"])
    with pytest.raises(FileNotFoundError, match="Did you mean 'tabular_vae'"):
        resolve_config("tabular")


def test_limit_batches_given_as_integers_are_counts(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"trainer": {"limit_val_batches": 2, "limit_test_batches": 0.5}}))
    counts = _batch_counts(["fit", "--config", str(cfg), "--trainer.limit_train_batches", "1",
                            "--trainer.limit_test_batches=3", "--trainer.limit_predict_batches", "1.0"])  # fmt: skip
    assert counts == {"limit_val_batches": 2, "limit_train_batches": 1, "limit_test_batches": 3}


def tiny_fit_config(tmp: Path, **trainer: object) -> Path:
    g = torch.Generator().manual_seed(0)
    torch.save({"x": (torch.rand(64, 4, generator=g) > 0.5).float()}, tmp / "bits.pt")
    cfg = {
        "seed_everything": 0,
        "model": {"latent_dim": 2, "encoder": {"name": "mlp", "hidden": [8]}, "decoder": {"name": "mlp", "hidden": [8]}},
        "data": {"class_path": "lvm.data.FileDataModule",
                 "init_args": {"train": str(tmp / "bits.pt"), "split": [0.75, 0.25, 0.0], "batch_size": 8}},
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp / "runs"), "logger": False, **trainer},
    }  # fmt: skip
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "c.yaml"


def test_limit_train_batches_1_runs_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tiny_fit_config(tmp_path, enable_checkpointing=True)
    assert lvm_main(["fit", "--config", str(cfg), "--trainer.limit_train_batches", "1"]) == 0
    (ckpt,) = (tmp_path / "runs").rglob("*.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 1  # 48 rows / 8 = 6 batches otherwise


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"last.ckpt.tmp-{int(dead.stdout)}"
    alive = tmp_path / f"last.ckpt.tmp-{os.getppid()}"  # a running process, written after the start
    old_alive = tmp_path / f"best.ckpt.tmp-{os.getppid()}"
    for f in (stale, alive, old_alive):
        f.write_bytes(b"torn")
    os.utime(old_alive, (time.time() - 3600, time.time() - 3600))
    assert sorted(remove_stale_temporaries(tmp_path, older_than=time.time() - 60)) == sorted(
        [stale, old_alive]
    )
    assert alive.exists() and not stale.exists()
    io = AtomicCheckpointIO()  # the next save into the folder cleans up too
    stale.write_bytes(b"torn")
    alive.write_bytes(b"being written")
    io.save_checkpoint({"a": 1}, tmp_path / "x.ckpt")
    assert not stale.exists() and alive.exists() and (tmp_path / "x.ckpt").is_file()


def test_wandb_logger_takes_the_run_id_and_project(tmp_path: Path) -> None:
    logger = WandbLogger(save_dir=str(tmp_path), online=False, id="abc123")
    assert (logger.version, logger.name, logger.mode) == ("abc123", "lvm", "offline")


@pytest.mark.parametrize("resume_from", ["file", "last"])
def test_resumed_fit_continues_the_same_wandb_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume_from: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for k in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{k}_DIR", str(tmp_path / "home" / k.lower()))
    logger = {
        "class_path": "lvm.loggers.WandbLogger",
        "init_args": {"save_dir": str(tmp_path / "runs"), "log_model": False},
    }
    checkpoints = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "runs" / "ckpts"), "save_last": True},
    }
    cfg = tiny_fit_config(tmp_path, logger=logger, callbacks=[checkpoints])
    import wandb

    try:
        assert lvm_main(["fit", "--config", str(cfg)]) == 0
        wandb.finish()
        ckpt = tmp_path / "runs" / "ckpts" / "last.ckpt"
        run_id = torch.load(ckpt, weights_only=True)[RUN_ID_KEY]
        path = str(ckpt) if resume_from == "file" else "last"
        assert lvm_main(["fit", "--config", str(cfg), "--trainer.max_epochs", "2", "--ckpt_path", path]) == 0
    finally:
        wandb.finish()
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    # the folder name may get a "-1" when both runs start in the same second; the run file names the id
    assert len(runs) == 2 and all((r / f"run-{run_id}.wandb").is_file() for r in runs), runs


def test_ddp_sync_dist_advice_is_filtered_and_other_warnings_are_not() -> None:
    from lightning.pytorch.utilities import rank_zero_warn

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ignore_misleading_warnings()
        # Lightning's text (trainer/connectors/logger_connector/result.py) for a DDP epoch-level log
        rank_zero_warn(
            "It is recommended to use `self.log('val/elbo', ..., sync_dist=True)` when logging on epoch level"
            " in distributed setting to accumulate the metric across devices."
        )
        rank_zero_warn("something else")
    assert [str(w.message) for w in seen] == ["something else"]


def test_compare_rebuilds_the_data_module_that_lvm_fit_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LightningCLI adds ``_class_path`` / ``_instantiator`` to the data module's hparams: not recorded."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_fit_config(tmp_path, enable_checkpointing=True)
    config = yaml.safe_load(cfg.read_text())
    config["data"]["init_args"]["split"] = [0.5, 0.25, 0.25]
    cfg.write_text(yaml.safe_dump(config))
    assert lvm_main(["fit", "--config", str(cfg)]) == 0
    (ckpt,) = (tmp_path / "runs").rglob("*.ckpt")
    record = torch.load(ckpt, weights_only=True)[DATAMODULE_KEY]
    assert record["class_path"] == "lvm.data.file_data.FileDataModule"
    assert record["init_args"]["split"] == [0.5, 0.25, 0.25]
    assert not [k for k in record["init_args"] if k.startswith("_")], record["init_args"]
    argv = ["compare", "--ckpt", str(ckpt), "--estimators", "elbo", "--num-samples", "1", "--no-progress"]
    assert lvm_main([*argv, "--out", str(tmp_path / "cmp")]) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [r["num_datapoints"] for r in rows] == [16]  # the recorded split: 16 test rows of 64


def test_help_formatter_keeps_the_line_breaks_of_the_description() -> None:
    from jsonargparse import ArgumentParser

    from lvm.lightning_cli import help_formatter

    text = "likelihoods: a, b\n             c\nconfigs: x"
    parser = ArgumentParser(prog="lvm", description=text, formatter_class=help_formatter)
    assert text in parser.format_help()
