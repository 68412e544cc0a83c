"""Files and settings a hostile or careless user gives lvm: nothing runs from a file, one run per folder,
a resumed run is the run its config describes, and every mistake is one line with exit status 2."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from test_cli_errors import assert_one_line, config, run_subprocess

from lvm.checkpoint import AtomicCheckpointIO, read_checkpoint
from lvm.cli import main as lvm_main
from lvm.errors import NoSpaceError, UnsafeFileError, one_line, run_command
from lvm.evaluate.restore import load_vae
from lvm.run_folder import LOCK_NAME, RunFolderBusyError, RunFolderLock


class WritesAFile:
    """A pickle payload: unpickling it calls ``exec``, which writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.path)!r}, 'w').write('ran')",))


def evil_copy(good: Path, tmp: Path) -> tuple[Path, Path]:
    """``good`` with a payload added under a key no one reads, and the file the payload would write."""
    marker = tmp / "payload_ran"
    ckpt = torch.load(good, weights_only=True)
    ckpt["extra"] = WritesAFile(marker)
    path = tmp / "evil.ckpt"
    torch.save(ckpt, path)
    return path, marker


@pytest.fixture
def cli(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("LVM_DEBUG", raising=False)
        capfd.readouterr()
        rc = lvm_main(args)
        out = capfd.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


# -- nothing runs from a file ----------------------------------------------------------------
def test_library_loaders_refuse_a_payload_and_name_the_global(tmp_path: Path, checkpoint: Path) -> None:
    evil, marker = evil_copy(checkpoint, tmp_path)
    for load in (read_checkpoint, load_vae, lambda p: AtomicCheckpointIO().load_checkpoint(p)):
        with pytest.raises(
            UnsafeFileError, match=r"refused to load checkpoint .*evil\.ckpt: it asks to unpickle exec"
        ):
            load(evil)
    assert not marker.exists()
    assert read_checkpoint(evil, trust=True)["hyper_parameters"]["latent_dim"] == 2  # the explicit opt-in
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_lightning_commands_refuse_a_payload(tmp_path: Path, checkpoint: Path, cli, command: str) -> None:
    evil, marker = evil_copy(checkpoint, tmp_path)
    cfg = config(tmp_path)
    proc = cli([command, "--config", str(cfg), "--ckpt_path", str(evil)], tmp_path)
    assert_one_line(proc, "refused to load checkpoint", "evil.ckpt", "exec", "--trust-checkpoint")
    assert not marker.exists()


def test_trust_checkpoint_is_the_explicit_opt_in(tmp_path: Path, checkpoint: Path, cli) -> None:
    evil, marker = evil_copy(checkpoint, tmp_path)
    cfg = config(tmp_path)
    proc = cli(["test", "--config", str(cfg), "--ckpt_path", str(evil), "--trust-checkpoint"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


# -- one run per folder ----------------------------------------------------------------------
def test_a_second_fit_into_a_locked_folder_stops_naming_the_pid(tmp_path: Path, cli) -> None:
    cfg = config(tmp_path)
    with RunFolderLock(tmp_path):  # this process plays the running fit
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        proc = run_subprocess(["fit", "--config", str(cfg)], tmp_path)
        with pytest.raises(RunFolderBusyError):
            RunFolderLock(tmp_path).acquire()
    assert_one_line(proc, f"run folder {tmp_path} is in use by another lvm fit (PID {os.getpid()})")
    assert cli(["fit", "--config", str(cfg)], tmp_path).returncode == 0  # released: the next fit runs
    RunFolderLock(tmp_path).acquire().release()  # and the fit released it in turn


def test_a_new_fit_does_not_write_over_an_earlier_runs_checkpoints(tmp_path: Path, cli) -> None:
    cfg = yaml.safe_load(config(tmp_path).read_text())
    cfg["trainer"].update(enable_checkpointing=True, callbacks=[{
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "ck"), "save_last": True, "filename": "final-{epoch}"}}])  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert cli(["fit", "--config", "cfg.yaml"], tmp_path).returncode == 0
    first = (tmp_path / "ck" / "final-epoch=0.ckpt").read_bytes()
    proc = cli(["fit", "--config", "cfg.yaml"], tmp_path)
    assert_one_line(
        proc, "already holds checkpoints of an earlier run", "final-epoch=0.ckpt", "--ckpt_path last"
    )
    assert (tmp_path / "ck" / "final-epoch=0.ckpt").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["final-epoch=0.ckpt", "last.ckpt"]
    resumed = cli(
        ["fit", "--config", "cfg.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last"], tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "exists and is not empty" not in resumed.stdout + resumed.stderr


# -- a resumed or tested run is the one its config describes -------------------------------
def test_config_that_disagrees_with_the_checkpoint_names_the_key_and_both_values(
    tmp_path: Path, checkpoint: Path, cli
) -> None:
    cfg = config(tmp_path)
    proc = cli(
        ["fit", "--config", str(cfg), "--ckpt_path", str(checkpoint), "--model.latent_dim", "5"], tmp_path
    )
    assert_one_line(proc, "model.latent_dim = 5", "trained with latent_dim = 2")
    proc = cli(
        ["test", "--config", str(cfg), "--ckpt_path", str(checkpoint), "--model.likelihood", "gamma"],
        tmp_path,
    )
    assert_one_line(proc, "model.likelihood = 'gamma'", "likelihood = 'gaussian'")


def test_a_checkpoint_of_other_data_names_both_shapes(tmp_path: Path, checkpoint: Path, cli) -> None:
    other = torch.load(checkpoint, weights_only=True)
    other["hyper_parameters"]["data_shape"] = [784]
    torch.save(other, tmp_path / "mnist.ckpt")
    proc = cli(["test", "--config", str(config(tmp_path)), "--ckpt_path", "mnist.ckpt"], tmp_path)
    assert_one_line(
        proc, "mnist.ckpt is of a model of datapoints of shape [784]", "gives datapoints of shape [3]"
    )


# -- settings that used to end in a traceback --------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model.latent_dim", "-3"], "latent_dim must be a positive integer; got -3"),
        (["--model.latent_dim", "0"], "latent_dim must be a positive integer; got 0"),
        (["--trainer.max_epochs", "-5"], "`max_epochs` must be a non-negative integer or -1"),
        (["--trainer.limit_train_batches", "1.5"], "invalid value 1.5 for limit_train_batches"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(tmp_path: Path, cli, args: list[str], words: str) -> None:
    proc = cli(["fit", "--config", str(config(tmp_path)), *args], tmp_path)
    assert_one_line(proc, words)
    assert "Warning" not in proc.stderr  # latent_dim 0 used to print torch's zero-element warning first


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path, cli) -> None:
    (tmp_path / "bad.yaml").write_text("model:\n  latent_dim: [1\n")
    proc = cli(["fit", "--config", "bad.yaml"], tmp_path)
    assert_one_line(proc, "bad.yaml, line 3, column 1: not valid YAML")


def test_a_full_disk_names_the_file_and_the_intact_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, tmp_path / "last.ckpt")

    def full(obj: object, f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(NoSpaceError) as err:
        io.save_checkpoint({"step": torch.tensor(2)}, tmp_path / "last.ckpt")
    assert one_line(err.value) == (
        f"no space left writing {tmp_path / 'last.ckpt'}; the last checkpoint {tmp_path / 'last.ckpt'} "
        f"is intact. Free some space and resume with --ckpt_path last"
    )
    monkeypatch.undo()
    assert int(torch.load(tmp_path / "last.ckpt", weights_only=True)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind

    def fails(args: list[str]) -> int:
        raise err.value

    assert run_command("lvm", fails, []) == 2


def test_a_normal_fit_prints_nothing_on_stderr(tmp_path: Path) -> None:
    proc = run_subprocess(["fit", "--config", str(config(tmp_path))], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "Tip:" not in proc.stdout


def test_a_data_file_changed_since_training_is_refused_by_test_and_resume(tmp_path: Path, cli) -> None:
    cfg = yaml.safe_load(config(tmp_path).read_text())
    cfg["trainer"].update(enable_checkpointing=True, callbacks=[{
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "ck"), "save_last": True}}])  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert cli(["fit", "--config", "cfg.yaml"], tmp_path).returncode == 0
    test = ["test", "--config", "cfg.yaml", "--ckpt_path", "ck/last.ckpt"]
    assert cli(test, tmp_path).returncode == 0  # the same file: no complaint
    rows = tmp_path / "rows.csv"
    rows.write_text(rows.read_text() + "0.1,0.2,0.3\n" * 5)  # appended rows would change the split
    for args in (test, ["fit", "--config", "cfg.yaml", "--ckpt_path", "last", "--trainer.max_epochs", "2"]):
        proc = cli(args, tmp_path)
        assert_one_line(
            proc, f"data file {rows} has changed since checkpoint", "sha256", "copy it under another name"
        )
