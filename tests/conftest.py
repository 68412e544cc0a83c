"""Fixtures shared by several test modules: one torch thread, and a small checkpoint written by a real Trainer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch

import lvm
from lvm.data import TabularDataModule


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: AIS and BDMC run thousands of small ops, where thread wake-ups dominate."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tabular_vae() -> lvm.VAE:
    """A VAE on 3 Gaussian columns with 2 latents and 8 hidden units each way."""
    return lvm.VAE(data_shape=[3], latent_dim=2, encoder={"name": "mlp", "hidden": [8]},
                   decoder={"name": "mlp", "hidden": [8]}, likelihood="gaussian")  # fmt: skip


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written by a Trainer after one step on a 13-point tabular test split."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)  # fmt: skip
    trainer.fit(
        tabular_vae(), datamodule=TabularDataModule(n_train=16, n_val=0, n_test=13, batch_size=8, seed=4)
    )
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder / "model.ckpt"
