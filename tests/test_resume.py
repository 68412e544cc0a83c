"""Checkpoints: same seed, same parameters; a stopped run resumes to the parameters of an uninterrupted one;
a crash while writing leaves the previous checkpoint intact; a missing plugin is named on load."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

import lvm
from lvm.checkpoint import AtomicCheckpointIO
from lvm.cli import main as lvm_main
from lvm.data import TensorDataModule, binarize_batch
from lvm.likelihoods import LIKELIHOODS, Likelihood, ParamSpec

N_TRAIN, BATCH = 200, 32  # 7 batches per epoch, the last one of 8


def datamodule() -> TensorDataModule:
    """Grey 4 x 4 images, dynamically binarised: the loader's shuffling and its transform both draw."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N_TRAIN + 60, 16, generator=g)
    return TensorDataModule(
        x[:N_TRAIN], x[N_TRAIN:], batch_size=BATCH, eval_batch_size=25, transform=binarize_batch
    )


def vae(**kw: object) -> lvm.VAE:
    args = dict(
        data_shape=[16],
        latent_dim=2,
        encoder={"name": "mlp", "hidden": [16]},
        decoder={"name": "mlp", "hidden": [16]},
        lr=1e-2,
        objective="iwae",
        num_samples=2,
    )
    return lvm.VAE(**{**args, **kw})  # type: ignore[arg-type]


def fit(
    tmp: Path, max_steps: int, seed: int = 0, ckpt_path: str | None = None, **model_kw: object
) -> lvm.VAE:
    """Fit from seed ``seed`` for ``max_steps`` steps, saving ``last.ckpt`` after every step."""
    L.seed_everything(seed, verbose=False)
    model = vae(**model_kw)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp),
        plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp, save_last=True, every_n_train_steps=1, save_top_k=0)],
    )
    trainer.fit(model, datamodule=datamodule(), ckpt_path=ckpt_path)
    assert trainer.global_step == max_steps
    return model


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), f"{name}: max |diff| = {(p - q).abs().max():.3g}"


def test_same_seed_and_config_give_the_same_parameters(tmp_path: Path) -> None:
    a = fit(tmp_path / "a", 9)
    b = fit(tmp_path / "b", 9)
    assert_same_parameters(a, b)
    c = fit(tmp_path / "c", 9, seed=1)
    assert not torch.equal(a.model.decoder.output_layer.weight, c.model.decoder.output_layer.weight)


@pytest.mark.parametrize("stop", [4, 7], ids=["mid-epoch", "epoch-end"])
def test_resumed_run_reaches_the_parameters_of_an_uninterrupted_run(tmp_path: Path, stop: int) -> None:
    whole = fit(tmp_path / "whole", 12)
    fit(tmp_path / "parts", stop)
    # another seed: only the checkpoint (weights, Adam, loader position, RNG) can make them equal
    resumed = fit(tmp_path / "parts", 12, seed=123, ckpt_path="last")
    assert_same_parameters(whole, resumed)


def test_lvm_fit_ckpt_path_last_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")  # lvm's main sets it when unset; keep it out of other tests
    config = {
        "seed_everything": 0,
        "model": {"latent_dim": 2, "encoder": {"name": "mlp", "hidden": [8]},
                  "decoder": {"name": "mlp", "hidden": [8]}, "likelihood": "gaussian"},
        "data": {
            "class_path": "lvm.data.TabularDataModule",
            "init_args": {"n_train": 200, "n_val": 50, "n_test": 0, "batch_size": 32, "eval_batch_size": 50},
        },
        "trainer": {
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": "checkpoints", "save_last": True}},
            ],
        },
    }  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))

    def lvm_fit(run: str, *args: str) -> dict:
        (tmp_path / run).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / run)
        lvm_main(["fit", "--config", str(tmp_path / "tiny.yaml"), *args])
        return torch.load("checkpoints/last.ckpt", weights_only=True)

    whole = lvm_fit("whole", "--trainer.max_steps=10")
    first = lvm_fit("parts", "--trainer.max_steps=4")
    assert first["global_step"] == 4 and first["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    resumed = lvm_fit("parts", "--trainer.max_steps=10", "--ckpt_path=last")
    assert resumed["global_step"] == whole["global_step"] == 10
    for name, p in whole["state_dict"].items():
        assert torch.equal(p, resumed["state_dict"][name]), name


# -- atomic writes ---------------------------------------------------------------------------------
class Crash(BaseException):
    """Stands in for a kill: an exception no ``except Exception`` catches."""


def test_crash_while_writing_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    old = {"global_step": 1, "w": torch.arange(1000.0)}
    io.save_checkpoint(old, path)
    real_save = torch.save

    def torn_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        """Write the first half of the real bytes to wherever torch.save was asked to write, then die."""
        buf = __import__("io").BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
            f.flush()
        else:
            Path(f).write_bytes(data[: len(data) // 2])
        raise Crash

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(Crash):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    loaded = io.load_checkpoint(path, weights_only=True)
    assert loaded["global_step"] == 1 and torch.equal(loaded["w"], old["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_process_killed_while_writing_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    """A real SIGKILL in the middle of writing the second checkpoint."""
    script = textwrap.dedent(
        """
        import os, signal, sys, torch
        from lvm.checkpoint import AtomicCheckpointIO

        io, path = AtomicCheckpointIO(), sys.argv[1]
        io.save_checkpoint({"global_step": 1, "w": torch.arange(100000.0)}, path)
        real_save = torch.save

        def killed_save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            f.flush()
            f.truncate(f.tell() // 2)  # half of the new checkpoint is on disk
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = killed_save
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(100000)}, path)
        """
    )
    path = tmp_path / "last.ckpt"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 1 and torch.equal(loaded["w"], torch.arange(100000.0))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert all(".tmp-" in name for name in leftovers), leftovers


# -- plugins ---------------------------------------------------------------------------------------
class Laplace(Likelihood):
    """A plugin likelihood: p(x | z) = prod_j exp(-|x_j - mu_j| / b_j) / (2 b_j)."""

    name: ClassVar[str] = "laplace"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("loc"), ParamSpec("scale", "softplus", 1e-3))

    def distribution(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.distributions.Distribution:  # type: ignore[override]
        return torch.distributions.Laplace(loc, scale, validate_args=False)


class _Dist(SimpleNamespace):
    """A stand-in ``importlib.metadata.Distribution``: only its name is read."""


def _install(monkeypatch: pytest.MonkeyPatch, builtins: dict, *eps: EntryPoint) -> None:
    """Make ``eps`` the installed likelihood plugins (none: uninstalled); undone after the test."""
    monkeypatch.setattr(LIKELIHOODS, "_entries", dict(builtins))
    monkeypatch.setattr(LIKELIHOODS, "_lazy", {})
    monkeypatch.setattr(LIKELIHOODS, "_scanned", False)
    monkeypatch.setattr(LIKELIHOODS, "_entry_points", lambda: list(eps))


def test_checkpoint_rebuilds_a_plugin_model_and_names_a_missing_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = EntryPoint("laplace", f"{__name__}:Laplace", "lvm.likelihoods")._for(_Dist(name="lvm-laplace"))
    builtins = dict(LIKELIHOODS._entries)
    _install(monkeypatch, builtins, ep)
    model = vae(likelihood="laplace", objective="elbo", num_samples=1)
    assert model.hparams.plugins == {"laplace": "lvm-laplace"}
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", default_root_dir=str(tmp_path), enable_checkpointing=False)  # fmt: skip
    trainer.fit(model, datamodule=datamodule())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)

    loaded = lvm.VAE.load_from_checkpoint(
        path, weights_only=True
    )  # installed: rebuilt from the checkpoint alone
    assert type(loaded.model.likelihood).__name__ == "Laplace"
    assert_same_parameters(model, loaded)

    _install(monkeypatch, builtins)  # uninstalled
    with pytest.raises(
        lvm.UnknownNameError, match=r"'laplace' from distribution 'lvm-laplace'.*pip install lvm-laplace"
    ):
        lvm.VAE.load_from_checkpoint(path, weights_only=True)


def test_checkpoint_carries_loader_position_and_rng_state(tmp_path: Path) -> None:
    fit(tmp_path, 3)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 3}]
    assert ckpt["lvm_rng_state"]["cpu"].dtype == torch.uint8
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left
