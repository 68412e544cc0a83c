"""Optimiser and scheduler from the config: ``lvm fit`` with SGD (momentum) and StepLR in the YAML moves the
parameters exactly as torch's own SGD and StepLR do in a hand-written loop over the same batches."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import lvm
from lvm.cli import main as lvm_main
from lvm.data import FileDataModule

MLP = {"name": "mlp", "hidden": [8]}
SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}}
STEP = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}}
EPOCHS = 3


def _bits(path: Path) -> Path:
    i, d = torch.arange(48)[:, None], torch.arange(4)[None, :]
    torch.save({"x": (((i * 5 + d * 3 + i * d) % 3) == 0).float()}, path)  # integer arithmetic, no RNG
    return path


def _fit_from_yaml(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    config = {
        "seed_everything": 0,
        "model": {"latent_dim": 2, "encoder": MLP, "decoder": MLP},
        "data": {"class_path": "lvm.data.FileDataModule",
                 "init_args": {"train": str(_bits(tmp / "bits.pt")), "batch_size": 16}},
        "optimizer": SGD,
        "lr_scheduler": STEP,
        "trainer": {"accelerator": "cpu", "max_epochs": EPOCHS, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp / "runs"),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp / "ckpt"), "save_last": True}}]},
    }  # fmt: skip
    (tmp / "sgd.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert lvm_main(["fit", "--config", str(tmp / "sgd.yaml")]) == 0
    return torch.load(tmp / "ckpt" / "last.ckpt", weights_only=True)


def _torch_loop(tmp: Path) -> tuple[lvm.VAE, torch.optim.SGD]:
    """The same model, batches and loss, stepped by torch's SGD and StepLR directly."""
    L.seed_everything(0, verbose=False)
    vae = lvm.VAE(data_shape=[4], latent_dim=2, encoder=MLP, decoder=MLP)
    dm = FileDataModule(train=str(tmp / "bits.pt"), batch_size=16)
    dm.setup("fit")
    opt = torch.optim.SGD(vae.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loader = dm.train_dataloader()
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = -vae(batch["x"]).objective.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return vae, opt


def test_sgd_with_momentum_and_step_lr_from_yaml_update_as_torchs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = _fit_from_yaml(tmp_path, monkeypatch)
    vae, opt = _torch_loop(tmp_path)
    (group,) = ckpt["optimizer_states"][0]["param_groups"]
    assert ckpt["global_step"] == 3 * EPOCHS
    assert group["momentum"] == 0.9 and group["lr"] == pytest.approx(0.1 * 0.5**EPOCHS)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == EPOCHS
    assert (
        ckpt["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.SGD"
    )  # saved: a resume rebuilds it
    state = vae.state_dict()
    for name, p in ckpt["state_dict"].items():
        torch.testing.assert_close(p, state[name], rtol=1e-6, atol=1e-7, msg=name)
    L.seed_everything(0, verbose=False)
    first = lvm.VAE(data_shape=[4], latent_dim=2, encoder=MLP, decoder=MLP).state_dict()
    assert min(float((first[n] - p).abs().max()) for n, p in state.items()) > 1e-3  # every tensor moved
    buffers = [s["momentum_buffer"] for s in ckpt["optimizer_states"][0]["state"].values()]
    for ours, theirs in zip(
        buffers, (opt.state[p]["momentum_buffer"] for p in vae.parameters()), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
