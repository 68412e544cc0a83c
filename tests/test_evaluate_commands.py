"""``lvm compare`` and ``lvm bdmc`` (lvm.evaluate.commands) on a small trained checkpoint: their output and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import fractions
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import lvm
from lvm import compare_estimators
from lvm.cli import main as lvm_main
from lvm.data import TabularDataModule
from lvm.errors import UsageError
from lvm.estimators import create_estimator
from lvm.estimators.bdmc import bdmc, compare_to_sandwich
from lvm.evaluate import load_vae
from lvm.evaluate.commands import compare_main as main
from lvm.evaluation import DATAMODULE_KEY

ROOT = Path(__file__).resolve().parents[1]
N, CHAINS, SEED = 20, 3, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def same(a: float | None, b: float | None) -> bool:
    """Exactly equal, NaN equal to NaN (the MC SE of a single sample is undefined)."""
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


# -- lvm bdmc ------------------------------------------------------------------------------------------
def test_the_sandwich_closes_with_t_and_estimator_rows_are_compare_to_sandwich(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bdmc", "--ckpt", str(checkpoint), "--num-datapoints", str(N), "--steps", "30,1",
            "--chains", str(CHAINS), "--leapfrog-steps", "2", "--estimators", "elbo,importance",
            "--num-samples", "1,30", "--seed", str(SEED), "--device", "cpu", "--no-progress",
            "--out", str(tmp_path)]  # fmt: skip
    assert lvm_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    saved = json.loads((tmp_path / "bdmc.json").read_text())
    low, high = saved["bounds"]
    assert [low["T"], high["T"]] == [1, 30]  # sorted by T
    for b in (low, high):
        assert b["lower"] <= b["upper"] and b["width"] == pytest.approx(b["upper"] - b["lower"])
        assert b["num_datapoints"] == N and b["chains"] == CHAINS
    assert high["width"] < 0.2 * low["width"], (low["width"], high["width"])  # a tighter sandwich
    assert printed[2].split()[:4] == ["1", f"{low['lower']:.3f}", "±", f"{low['lower_mc_stderr']:.3f}"]

    vae, _ = load_vae(checkpoint, "cpu")
    model = vae.model.eval()
    sandwich = bdmc(model, N, 30, CHAINS, seed=SEED, leapfrog_steps=2)
    assert sandwich.lower.double().mean().item() == high["lower"]
    rows = saved["estimators"]
    assert [(r["estimator"], r["K"], r["T"]) for r in rows] == [
        ("elbo", 1, 30), ("elbo", 30, 30), ("importance", 1, 30), ("importance", 30, 30)
    ]  # fmt: skip
    for row in rows:
        est = create_estimator(row["estimator"], num_samples=row["K"])
        (direct,) = compare_to_sandwich(model, sandwich, [est], seed=SEED + 1)
        for name in ("mean_log_px", "mc_stderr", "above_lower", "below_upper", "width", "inside"):
            assert same(row[name], getattr(direct, name)), (row, direct)
    assert rows[3]["mean_log_px"] - high["lower"] == pytest.approx(rows[3]["above_lower"], abs=1e-5)
    with (tmp_path / "bdmc_estimators.csv").open() as f:
        assert [(r["estimator"], r["K"]) for r in csv.DictReader(f)] == [
            ("elbo", "1"), ("elbo", "30"), ("importance", "1"), ("importance", "30")
        ]  # fmt: skip
    with (tmp_path / "bdmc_bounds.csv").open() as f:
        assert [float(r["upper"]) for r in csv.DictReader(f)] == [low["upper"], high["upper"]]
    assert (tmp_path / "bdmc.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps", "10,0"], "argument --steps: expected positive integers; got '10,0'"),
        (["--estimators", "elbo,importanse"], "Did you mean 'importance'"),
        (["--schedule", "cosine"], "argument --schedule: invalid choice: 'cosine'"),
        (["--chains", "0"], "chains=0"),
        (["--ckpt", "nowhere.ckpt"], "checkpoint nowhere.ckpt does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "model.ckpt"  # a mistake in the options is named before the checkpoint is read
    assert lvm_main(["bdmc", "--ckpt", str(missing), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("lvm bdmc: error: ") and err[1].startswith("hint: ")
    assert expected in err[0]
    if "--ckpt" not in args:
        assert "does not exist" not in err[0]


def test_lvm_help_lists_bdmc(capsys: pytest.CaptureFixture[str]) -> None:
    assert lvm_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lvm [-h] {fit,validate,test,compare,bdmc,configs} ...")
    assert "bdmc (a bidirectional Monte Carlo sandwich" in " ".join(out.split())


# -- lvm compare ---------------------------------------------------------------------------------------
def test_the_checkpoint_records_its_data_module_and_compare_rebuilds_it(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = torch.load(checkpoint, weights_only=True)[DATAMODULE_KEY]
    assert record["class_path"] == "lvm.data.tabular.TabularDataModule"
    assert {k: record["init_args"][k] for k in ("n_train", "n_test", "seed")} == {
        "n_train": 16,
        "n_test": 13,
        "seed": 4,
    }
    argv = ["--ckpt", str(checkpoint), "--estimators", "elbo,importance", "--num-samples", "1,5",
            "--no-progress", "--device", "cpu", "--seed", "2"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a"), "--per-datapoint"]) == 0
    out = capsys.readouterr()
    assert "unpickling" not in out.err and "warning" not in out.out
    header, _, *lines = out.out.splitlines()
    assert header.split()[-2:] == ["seconds", "datapoints/s"] and len(lines) == 4
    saved = json.loads((tmp_path / "a" / "compare.json").read_text())
    assert saved["data"] == record and saved["processes"] == 1
    vae = lvm.VAE.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    test_x = TabularDataModule(**record["init_args"])
    direct = compare_estimators(vae, test_x, ["elbo", "importance"], [1, 5], seed=2)
    for row, ref, line in zip(saved["rows"], direct, lines):
        assert row["num_datapoints"] == 13 and row["mean_log_px"] == pytest.approx(ref.mean_log_px, abs=1e-9)
        assert row["datapoints"]["index"] == list(range(13))
        assert sum(row["datapoints"]["log_px"]) / 13 == pytest.approx(row["mean_log_px"], abs=1e-5)
        assert line.split()[2] == f"{row['mean_log_px']:.3f}"
    with (tmp_path / "a" / "compare.csv").open() as f:
        reader = csv.DictReader(f)
        fields = [f.name for f in dataclasses.fields(lvm.ComparisonRow) if f.name != "datapoints"]
        assert reader.fieldnames == fields and len(fields) == 14  # every field, not only those printed
        assert [(r["estimator"], r["K"]) for r in reader] == [
            ("elbo", "1"), ("elbo", "5"), ("importance", "1"), ("importance", "5")
        ]  # fmt: skip
    with (tmp_path / "a" / "compare_datapoints.csv").open() as f:
        points = list(csv.DictReader(f))
    assert len(points) == 4 * 13 and points[13]["K"] == "5" and points[13]["index"] == "0"
    assert float(points[13]["log_px"]) == pytest.approx(saved["rows"][1]["datapoints"]["log_px"][0])
    assert (tmp_path / "a" / "compare.png").stat().st_size > 1000


def test_the_table_shows_mc_stderr_and_pareto_k_of_importance_rows(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--ckpt", str(checkpoint), "--estimators", "elbo,importance", "--num-samples", "30",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    elbo, imp = (line.split() for line in capsys.readouterr().out.splitlines()[2:4])
    elbo_row, imp_row = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert elbo[:2] == ["elbo", "30"] and elbo[4:8] == ["-", "-", "-", "-"]
    assert imp_row["max_pareto_k"] is not None and math.isfinite(imp_row["max_pareto_k"])  # K >= 25: fitted
    assert imp[:2] == ["importance", "30"]
    assert imp[4:8] == [
        f"{imp_row['mean_mc_stderr']:.3f}",
        f"{imp_row['mean_ess']:.3f}",
        f"{imp_row['max_pareto_k']:.3f}",
        f"{100 * imp_row['share_k_over_0_7']:.0f}%",
    ]
    assert imp_row["mean_mc_stderr"] > 0 and elbo_row["mean_mc_stderr"] is None


def test_checkpoints_without_the_record_need_the_data_named(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt[DATAMODULE_KEY]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    argv = [
        "--ckpt",
        str(old),
        "--estimators",
        "prior",
        "--num-samples",
        "3",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert lvm_main(["compare", *argv]) == 2  # the CLI entry: one line and a hint on stderr
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "pass --data-config PATH" in err and "'n_test': 13" in err
    assert main([*argv, "--data-class", "tabular", "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "compare.json").read_text())["rows"]
    assert [(r["estimator"], r["K"], r["num_datapoints"]) for r in rows] == [("prior", 3, 13)]
    cfg = tmp_path / "data.yaml"
    init = {"n_train": 16, "n_val": 0, "n_test": 5}
    cfg.write_text(yaml.safe_dump({"data": {"class_path": "lvm.data.TabularDataModule", "init_args": init}}))
    assert main([*argv, "--data-config", str(cfg), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["rows"][0]["num_datapoints"] == 5
    assert lvm_main(["compare", *argv, "--data-class", "lvm.vae.VAE"]) == 2
    err = capsys.readouterr().err  # not a registered data module: refused, not imported
    assert "--data-class: data module 'lvm.vae.VAE' is not registered in lvm.data.DATAMODULES" in err
    assert lvm_main(["compare", *argv[:2], "--estimators", "importanse"]) == 2
    assert "Did you mean 'importance'" in capsys.readouterr().err


def test_estimator_specs_from_the_command_line(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--ckpt", str(checkpoint), "--num-samples", "6", "--no-progress", "--device", "cpu"]
    specs = "[importance, {name: importance, chunk_size: 4}]"
    assert main([*argv, "--estimators", specs, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["importance", "importance(chunk_size=4)"]
    assert rows[1]["mean_log_px"] == pytest.approx(rows[0]["mean_log_px"], abs=1e-5)  # chunk-invariant
    with pytest.raises(UsageError, match=r"each estimator must be a name or a \{name: \.\.\.\} mapping"):
        main([*argv, "--estimators", "[importance, {chunk_size: 4}]"])


@pytest.mark.slow  # about 12 s: three processes start torch and Lightning
def test_torchrun_with_two_processes_prints_and_writes_what_one_process_does(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--ckpt", str(checkpoint), "--estimators", "elbo,importance", "--num-samples", "1,5",
            "--no-progress", "--device", "cpu", "--per-datapoint", "--batch-size", "4"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    table_one = capsys.readouterr().out
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "lvm.cli", "compare", *argv, "--out", str(tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / n / "compare.json").read_text()) for n in ("one", "two"))
    assert two["processes"] == 2
    timing = ("seconds", "datapoints_per_s")
    for a, b in zip(one["rows"], two["rows"], strict=True):
        assert b["datapoints"]["index"] == list(range(13))  # each datapoint exactly once
        assert {k: v for k, v in a.items() if k not in timing} == {
            k: v for k, v in b.items() if k not in timing
        }
    strip = [line.split()[:8] for line in table_one.splitlines()]
    assert [
        line.split()[:8] for line in proc.stdout.splitlines() if line.strip()
    ] == strip  # rank 0 prints once


# -- what both commands share: the checkpoint, the device, the output folder, torchrun ----------------
SMALL = {
    "compare": ["--estimators", "elbo", "--num-samples", "1"],
    "bdmc": [
        "--num-datapoints",
        "2",
        "--steps",
        "1",
        "--chains",
        "2",
        "--estimators",
        "elbo",
        "--num-samples",
        "1",
    ],
}


def one_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The error line of a command that failed with a hint (two lines on stderr in all)."""
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"lvm {command}: error: ") and err[1].startswith("hint: "), err
    return err[0]


@pytest.mark.parametrize("command", ["compare", "bdmc"])
def test_trust_checkpoint_is_the_opt_in_for_a_file_that_needs_more_than_tensors(
    command: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["note"] = fractions.Fraction(1, 3)  # a global that torch.load(weights_only=True) refuses
    path = tmp_path / "pickled.ckpt"
    torch.save(ckpt, path)
    argv = [command, "--ckpt", str(path), *SMALL[command], "--no-progress", "--device", "cpu"]
    assert lvm_main([*argv, "--out", str(tmp_path / "refused")]) == 2
    line = one_line(capsys, command)
    assert f"refused to load checkpoint {path}" in line and "fractions.Fraction" in line
    assert "--trust-checkpoint" in line and not (tmp_path / "refused").exists()
    assert lvm_main([*argv, "--out", str(tmp_path / "trusted"), "--trust-checkpoint"]) == 0
    assert (tmp_path / "trusted" / f"{command}.json").is_file()


@pytest.mark.parametrize("command", ["compare", "bdmc"])
@pytest.mark.parametrize(
    ("device", "expected"),
    [("cuda", "--device cuda: this machine has no CUDA device; use --device cpu"),
     ("cuda:1", "--device cuda:1: this machine has no CUDA device"),
     ("gpu", "--device 'gpu' is not a torch device")],
)  # fmt: skip
def test_a_device_this_machine_lacks_is_one_line(
    command: str,
    device: str,
    expected: str,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    argv = [
        command,
        "--ckpt",
        str(checkpoint),
        *SMALL[command],
        "--device",
        device,
        "--out",
        str(tmp_path / "o"),
    ]
    assert lvm_main(argv) == 2
    assert expected in one_line(capsys, command) and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["compare", "bdmc"])
def test_out_naming_a_file_is_one_line_before_the_checkpoint_is_read(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("mine\n")
    argv = [command, "--ckpt", str(tmp_path / "missing.ckpt"), *SMALL[command], "--device", "cpu"]
    assert lvm_main([*argv, "--out", str(taken)]) == 2
    assert f"output folder {taken} is a file; --out takes a folder" in one_line(capsys, command)
    assert lvm_main([*argv, "--out", str(taken / "inside")]) == 2
    assert f"output folder {taken / 'inside'} cannot be made: {taken} is a file" in one_line(capsys, command)
    assert taken.read_text() == "mine\n"


@pytest.mark.parametrize("command", ["compare", "bdmc"])
def test_a_process_of_torchrun_prints_one_line_naming_its_rank(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    missing = tmp_path / "missing.ckpt"
    assert lvm_main([command, "--ckpt", str(missing), *SMALL[command], "--device", "cpu"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lvm {command}: error (rank 1 of 2): checkpoint {missing} does not exist"
    ]


def test_more_torchrun_processes_than_gpus_is_one_line(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    argv = [
        "compare",
        "--ckpt",
        str(checkpoint),
        *SMALL["compare"],
        "--device",
        "cuda",
        "--out",
        str(tmp_path),
    ]
    assert lvm_main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "lvm compare: error (rank 1 of 2): torchrun process 1 of this node has no GPU of its own: the machine "
        "has 1 CUDA device(s); start at most 1 per node (--nproc-per-node) or use --device cpu"
    ]


@pytest.mark.slow  # about 30 s: three torchrun launches of two processes each
def test_errors_under_torchrun_are_at_most_one_line_per_rank(checkpoint: Path, tmp_path: Path) -> None:
    """Before the model is read, before the process group is joined, and inside it."""
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"class_path": "os.system", "init_args": {}}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cases = [
        (["--ckpt", str(tmp_path / "missing.ckpt")], "does not exist"),
        (["--ckpt", str(checkpoint), "--data-config", str(cfg)], "data module 'os.system' is not registered"),
        (["--ckpt", str(checkpoint), "--limit", "0"], "K, batch_size and limit must be positive"),
    ]
    for args, expected in cases:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "lvm.cli", "compare", *args, *SMALL["compare"], "--no-progress", "--device", "cpu"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        ours = [line for line in proc.stderr.splitlines() if line.startswith("lvm compare: error")]
        ranks = sorted(line.split("(rank ")[1][0] for line in ours)
        assert ranks in (["0"], ["1"], ["0", "1"]), proc.stderr  # torchrun may stop one rank before it prints
        assert all(expected in line for line in ours)
        assert "hint:" not in proc.stderr and "/lvm/" not in proc.stderr  # no traceback through lvm's code
        assert proc.returncode != 0 and "exitcode  : 2" in proc.stderr  # torchrun's summary of the ranks
