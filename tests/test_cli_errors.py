"""Every user mistake on the command line: one line (plus at most a hint) on stderr, exit status 2."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import lvm
from lvm.checkpoint import read_checkpoint
from lvm.cli import main as lvm_main
from lvm.data import TensorDataModule
from lvm.data.files import missing_files_error
from lvm.data.idx import read_idx
from lvm.errors import CorruptFileError, one_line

ROOT = Path(__file__).resolve().parents[1]


def config(tmp: Path, **data_args: object) -> Path:
    """A tiny fit config on a 40 x 3 CSV (Gaussian likelihood); ``data_args`` override the data's."""
    csv = tmp / "rows.csv"
    if not csv.exists():
        g = torch.Generator().manual_seed(0)
        rows = torch.randn(40, 3, generator=g).tolist()
        csv.write_text("a,b,c\n" + "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rows))
    cfg = {
        "seed_everything": 0,
        "model": {"latent_dim": 2, "likelihood": "gaussian", "encoder": {"name": "mlp", "hidden": [8]},
                  "decoder": {"name": "mlp", "hidden": [8]}},
        "data": {"class_path": "lvm.data.FileDataModule",
                 "init_args": {"train": str(csv), "split": [0.5, 0.25, 0.25], "batch_size": 10, **data_args}},
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_checkpointing": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp)},
    }  # fmt: skip
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real lvm checkpoint of the model in :func:`config`, written once for the module."""
    tmp = tmp_path_factory.mktemp("ckpt")
    model = lvm.VAE(data_shape=[3], latent_dim=2, likelihood="gaussian",
                    encoder={"name": "mlp", "hidden": [8]}, decoder={"name": "mlp", "hidden": [8]})  # fmt: skip
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp))  # fmt: skip
    trainer.fit(model, datamodule=TensorDataModule(torch.randn(20, 3), torch.randn(10, 3), batch_size=10))
    trainer.save_checkpoint(tmp / "good.ckpt")
    return tmp / "good.ckpt"


@pytest.fixture(params=["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
def run_cli(request: pytest.FixtureRequest, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run ``lvm ARGS`` in a subprocess (the real command; slow) or through ``main`` in this process."""

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        if request.param == "subprocess":
            return run_subprocess(args, cwd)
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("LVM_DEBUG", raising=False)
        capfd.readouterr()
        rc = lvm_main(args)
        out = capfd.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


def run_subprocess(
    args: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled", "LVM_DEBUG": ""}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "lvm.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def assert_one_line(proc: subprocess.CompletedProcess, *expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert 1 <= len(lines) <= 2, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def bad_checkpoints(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not usable checkpoints, and the words the error must say."""
    data = good.read_bytes()
    (tmp / "empty.ckpt").write_bytes(b"")
    (tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])
    (tmp / "text.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp / "foreign.ckpt")
    (tmp / "folder.ckpt").mkdir(exist_ok=True)
    return {
        "missing": (tmp / "missing.ckpt", "does not exist"),
        "empty": (tmp / "empty.ckpt", "is empty"),
        "truncated": (tmp / "cut.ckpt", "corrupt checkpoint"),
        "garbage": (tmp / "text.ckpt", "corrupt checkpoint"),
        "foreign": (tmp / "foreign.ckpt", "not a Lightning checkpoint of an lvm model"),
        "folder": (tmp / "folder.ckpt", "is a folder"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "garbage", "foreign", "folder"])
def test_read_checkpoint_names_the_file_and_the_problem(tmp_path: Path, ckpt: Path, case: str) -> None:
    path, words = bad_checkpoints(tmp_path, ckpt)[case]
    with pytest.raises((CorruptFileError, FileNotFoundError, IsADirectoryError)) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert read_checkpoint(ckpt)["hyper_parameters"]["latent_dim"] == 2


@pytest.mark.parametrize("command", ["test", "compare"])
@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "foreign", "folder"])
def test_bad_checkpoint_is_one_line_in_every_command(
    run_cli, tmp_path: Path, ckpt: Path, case: str, command: str
) -> None:
    path, words = bad_checkpoints(tmp_path, ckpt)[case]
    if command == "test":
        args = ["test", "--config", str(config(tmp_path)), "--ckpt_path", str(path)]
    else:
        args = ["compare", "--ckpt", str(path), "--data-config", str(config(tmp_path)), "--num-samples", "1"]
    assert_one_line(run_cli(args, tmp_path), str(path), words)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model.likelihood", "gausian"], "unknown likelihood 'gausian'. Did you mean 'gaussian'?"),
        (["--model.encoder", "mpl"], "unknown encoder 'mpl'"),
        (["--data.init_args.missing", "skip"], "skip"),
        (["--data.init_args.train", "nowhere.csv"], "data file nowhere.csv does not exist"),
        (["--data.init_args.columns", "[a, zz]"], "no column 'zz'"),
        (["--data.init_args.batch_size", "0"], "batch_size must be a positive integer; got 0"),
        (["--trainer.max_epochz", "1"], "max_epochz"),
        (["--model.latent_dim", "two"], "model.latent_dim: Expected a <class 'int'>. Got value: two"),
        (["--data.init_args.dataset", "x"], "dataset"),
    ],
)
def test_bad_config_value_is_one_line(run_cli, tmp_path: Path, override: list[str], expected: str) -> None:
    proc = run_cli(["fit", "--config", str(config(tmp_path)), *override], tmp_path)
    assert_one_line(proc, expected)
    assert "Does not validate" not in proc.stderr and "Traceback" not in proc.stderr


def test_compare_usage_errors_are_one_line(run_cli, tmp_path: Path) -> None:
    assert_one_line(
        run_cli(["compare"], tmp_path), "lvm compare: error: the following arguments are required: --ckpt"
    )
    assert_one_line(
        run_cli(["compare", "--ckpt", "x", "--num-samples", "0"], tmp_path), "expected positive integers"
    )


def test_unknown_bundled_config_and_subcommand(run_cli, tmp_path: Path) -> None:
    assert_one_line(run_cli(["fit", "--config", "mnist_vea"], tmp_path), "Did you mean 'mnist_vae'?")
    assert_one_line(run_cli(["predict"], tmp_path), "invalid choice: 'predict'")


def test_bad_cell_and_support_are_named(run_cli, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "rows.csv").write_text("a,b,c\n1,2,3\n4,x5,6\n" + "1,2,3\n" * 8)
    assert_one_line(run_cli(["fit", "--config", str(cfg)], tmp_path), "rows.csv, line 3, column 'b'", "'x5'")
    (tmp_path / "rows.csv").write_text("a,b,c\n" + "0.5,0.5,0.5\n" * 9 + "0.5,0.5,3\n")
    proc = run_cli(["fit", "--config", str(cfg), "--model.likelihood", "bernoulli"], tmp_path)
    assert_one_line(proc, "column 'c' (index 2)", "[0, 1]")


@pytest.mark.slow
def test_missing_mnist_folder_is_the_file_not_found_message_only(tmp_path: Path) -> None:
    env = {
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }  # no download, network or not
    proc = run_subprocess(["fit", "--config", "mnist_vae", "--data.init_args.data_dir", str(tmp_path / "none"),
                           "--trainer.logger", "false", "--trainer.callbacks", "[]"], tmp_path, env)  # fmt: skip
    assert_one_line(
        proc, "file(s) missing from", "MNIST/raw", "The download failed: [Errno 111] Connection refused"
    )
    assert "urlopen" not in proc.stderr and "Tried" not in proc.stderr


def test_missing_files_error_keeps_one_download_reason(tmp_path: Path) -> None:
    cause = RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>\nTried http://b/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>"
    )
    msg = str(missing_files_error("mnist", tmp_path, "MNIST/raw", ["a.gz"], "hint.", cause))
    assert msg.endswith("hint. The download failed: [Errno -2] Name or service not known")
    assert "\n" not in msg


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_subprocess(
        ["fit", "--config", str(config(tmp_path)), "--model.likelihood", "gausian", "--debug"], tmp_path
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "gausian" in proc.stderr


def test_debug_lets_the_exception_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lvm.UnknownNameError, match="gausian"):
        lvm_main(["fit", "--config", str(config(tmp_path)), "--model.likelihood", "gausian", "--debug"])


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_corrupt_mnist_gz_names_the_file(tmp_path: Path, damage: str) -> None:
    blob = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(
        blob[: len(blob) // 2] if damage == "truncated" else blob[:12] + b"\xff" * 20 + blob[32:]
    )
    with pytest.raises(CorruptFileError, match=f"corrupt file {path}"):
        read_idx(path)
    assert read_idx(_write(tmp_path / "ok.gz", blob)).shape == (200,)


def _write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def test_one_line_takes_the_innermost_user_error() -> None:
    try:
        try:
            raise ValueError("unknown dataset 'mnsit'; known: mnist")
        except ValueError as inner:
            raise ValueError(
                "Does not validate against any of the Union subtypes\nSubtypes: [...]"
            ) from inner
    except ValueError as outer:
        assert one_line(outer) == "unknown dataset 'mnsit'; known: mnist"


def test_in_process_main_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert lvm_main(["fit", "--config", str(config(tmp_path)), "--model.likelihood", "gausian"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("lvm: error: unknown likelihood 'gausian'")
