"""``lvm bdmc`` on a small trained checkpoint: its sandwich, its estimator rows and its one-line errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from lvm.cli import main as lvm_main
from lvm.estimators import create_estimator
from lvm.estimators.bdmc import bdmc, compare_to_sandwich
from lvm.evaluate import load_vae, run_bdmc

N, CHAINS, SEED = 20, 3, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def same(a: float | None, b: float | None) -> bool:
    """Exactly equal, NaN equal to NaN (the MC SE of a single sample is undefined)."""
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


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


def test_run_bdmc_checks_its_arguments_before_any_work(checkpoint: Path) -> None:
    model = load_vae(checkpoint)[0].model
    with pytest.raises(ValueError, match=r"got T=\[3\], K=\[0\], chains=2"):
        run_bdmc(model, 4, [3], 2, ["elbo"], [0])
    with pytest.raises(ValueError, match="unknown start 'data'; allowed: posterior, prior"):
        run_bdmc(model, 4, [3], 2, ["elbo"], [1], start="data")


def test_lvm_help_lists_bdmc(capsys: pytest.CaptureFixture[str]) -> None:
    assert lvm_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lvm [-h] {fit,validate,test,compare,bdmc,configs} ...")
    assert "bdmc (a bidirectional Monte Carlo sandwich" in " ".join(out.split())
