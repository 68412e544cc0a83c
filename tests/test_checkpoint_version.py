"""A checkpoint records the lvm version and checkpoint format that wrote it; one from a newer lvm is named."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

import lvm
import lvm.checkpoint as ck
from lvm.checkpoint import CHECKPOINT_FORMAT, FORMAT_KEY, VERSION_KEY, NewerCheckpointError, read_checkpoint
from lvm.cli import main as lvm_main


def _rewritten(checkpoint: Path, tmp: Path, **keys: object) -> Path:
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt.update(keys)
    torch.save(ckpt, tmp / "other.ckpt")
    return tmp / "other.ckpt"


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "_warned_versions", set())  # the newer-version warning is once per process


def test_a_checkpoint_records_the_lvm_version_and_format(checkpoint: Path) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    assert (ckpt[VERSION_KEY], ckpt[FORMAT_KEY]) == (lvm.__version__, CHECKPOINT_FORMAT)
    assert lvm.__version__ == ck.__version__  # one place: lvm._version


def test_a_newer_format_is_refused_naming_both_versions(checkpoint: Path, tmp_path: Path) -> None:
    newer = _rewritten(checkpoint, tmp_path, **{VERSION_KEY: "9.0.0", FORMAT_KEY: CHECKPOINT_FORMAT + 1})
    match = (
        rf"checkpoint .*other\.ckpt was written by lvm 9\.0\.0 .*the installed lvm {lvm.__version__} reads"
    )
    with pytest.raises(NewerCheckpointError, match=match):
        read_checkpoint(newer)
    with pytest.raises(NewerCheckpointError, match=r"written by lvm 9\.0\.0.*installed lvm"):
        lvm.VAE.load_from_checkpoint(newer, weights_only=True)  # Lightning reads the file; the module checks


def test_lvm_fit_from_a_newer_checkpoint_is_one_line_naming_both_versions(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = _rewritten(checkpoint, tmp_path, **{VERSION_KEY: "9.0.0", FORMAT_KEY: CHECKPOINT_FORMAT + 1})
    config = {"model": {"latent_dim": 2}, "data": {"class_path": "lvm.data.TabularDataModule", "init_args": {"n_train": 16}},
              "trainer": {"logger": False, "max_steps": 1, "default_root_dir": str(tmp_path)}}  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert lvm_main(["fit", "--config", str(tmp_path / "c.yaml"), "--ckpt_path", str(newer)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("lvm: error: checkpoint ") and "lvm 9.0.0" in err[0]
    assert f"installed lvm {lvm.__version__}" in err[0] and len(err) == 2 and err[1].startswith("hint:")


def test_a_newer_version_of_the_same_format_loads_with_one_warning(checkpoint: Path, tmp_path: Path) -> None:
    newer = _rewritten(checkpoint, tmp_path, **{VERSION_KEY: "9.0.0"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_checkpoint(newer)
        vae = lvm.VAE.load_from_checkpoint(newer, weights_only=True)
    ours = [str(w.message) for w in caught if "newer than the installed" in str(w.message)]
    assert (
        len(ours) == 1 and f"written by lvm 9.0.0, newer than the installed lvm {lvm.__version__}" in ours[0]
    )
    assert vae.hparams.latent_dim == 2


def test_an_older_checkpoint_loads_silently(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt[VERSION_KEY], ckpt[FORMAT_KEY]  # as lvm 0.1.0 wrote them: format 0
    torch.save(ckpt, tmp_path / "old.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_checkpoint(tmp_path / "old.ckpt")["hyper_parameters"]["latent_dim"] == 2
