"""``lvm.compare_estimators``, its report and the ``lvm compare`` command, against values computed here."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from exact_models import Identity
from scipy import stats
from torch import Tensor, nn

import lvm
from lvm import LatentVariableModel, compare_estimators, create_estimator, register_estimator
from lvm.cli import main as lvm_main
from lvm.data import TabularDataModule, TensorDataModule
from lvm.errors import UsageError
from lvm.estimators import ESTIMATORS, Estimate, Estimator
from lvm.estimators.importance import ImportanceSampling
from lvm.evaluate.commands import compare_main as main
from lvm.evaluate.report import format_table, tail_warning
from lvm.evaluation import DATAMODULE_KEY
from lvm.likelihoods import Gaussian
from lvm.likelihoods.base import inverse_softplus

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


def binary_model(d: int = 8, seed: int = 0) -> LatentVariableModel:
    torch.manual_seed(seed)
    return LatentVariableModel.build(
        (d,), 2, {"name": "mlp", "hidden": [16]}, {"name": "mlp", "hidden": [16]}
    )


def binary_data(n: int, d: int = 8, seed: int = 1) -> Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def linear_gaussian(width: float, n: int = 40) -> tuple[LatentVariableModel, Tensor]:
    """x = w z + s eps, z ~ N(0, 1), with q(z | x) = the exact posterior with its sd times ``width``.

    The posterior is N(v w.x / s^2, v) with v = 1 / (1 + |w|^2 / s^2) (Bishop 2006, eq. 2.116).
    """
    w, s = torch.tensor([1.5, -0.5]), 0.5
    decoder = nn.Linear(1, 2)
    with torch.no_grad():
        decoder.weight.copy_(w[:, None])
        decoder.bias.zero_()
    model = LatentVariableModel(Identity(2), decoder, Gaussian((2,), scale="fixed", init_scale=s), 1).eval()
    v = 1 / (1 + (w * w).sum() / s**2)
    head = model.posterior_head.linear
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = v * w / s**2
        head.bias.zero_()
        head.bias[1] = inverse_softplus(width * v.sqrt() - model.posterior_head.min_scale)
    torch.manual_seed(0)
    with torch.no_grad():
        x = model.observation(torch.randn(n, 1)).sample()
    return model, x


# -- the function --------------------------------------------------------------------------------------
def test_rows_are_the_statistics_of_the_per_datapoint_estimates() -> None:
    model, x = binary_model(), binary_data(10)
    index = torch.arange(100, 110)
    rows = compare_estimators(
        model, x, ["elbo", "importance"], [1, 20], seed=3, index=index, limit=8, batch_size=3
    )
    assert [(r.estimator, r.K, r.num_datapoints) for r in rows] == [
        ("elbo", 1, 8), ("elbo", 20, 8), ("importance", 1, 8), ("importance", 20, 8)
    ]  # fmt: skip
    for r in rows:
        direct = create_estimator(r.estimator, num_samples=r.K).estimate(
            model, x[:8], index=index[:8], seed=3
        )
        values = direct.log_px.double().numpy()
        assert r.datapoints.index.tolist() == list(range(100, 108))
        torch.testing.assert_close(r.datapoints.log_px, direct.log_px, atol=1e-5, rtol=0)  # batch-invariant
        assert r.mean_log_px == pytest.approx(values.mean(), abs=1e-5)
        assert r.stderr == pytest.approx(stats.sem(values), rel=1e-4)
        assert r.mean_nll == -r.mean_log_px
        assert r.bits_per_dim == pytest.approx(-r.mean_log_px / (8 * math.log(2)))
        assert r.datapoints_per_s == pytest.approx(8 / r.seconds)
        if r.estimator == "elbo":
            assert r.mean_ess is None and r.datapoints.ess is None and r.max_pareto_k is None
        else:
            assert r.mean_ess == pytest.approx(direct.ess.double().mean().item(), rel=1e-5)
        mc = direct.mc_stderr
        assert (r.mean_mc_stderr is None) == (mc is None) == (r.estimator == "elbo")
        if mc is not None:
            assert r.mean_mc_stderr == pytest.approx(mc.double().mean().item(), rel=1e-5, nan_ok=True)
    table = format_table(rows).splitlines()
    assert table[0].split()[:5] == ["estimator", "K", "mean", "log", "p(x)"]
    for line, r in zip(table[2:], rows):
        cells = line.split()
        assert cells[:3] == [r.estimator, str(r.K), f"{r.mean_log_px:.3f}"]
        assert cells[3] == f"{r.stderr:.3f}"
    assert table[2].split()[4:8] == ["-", "-", "-", "-"]  # the ELBO has no weights: no MC SE, ESS, k


def test_a_data_module_gives_its_test_split_and_a_vae_its_model() -> None:
    model, x = binary_model(), binary_data(9)
    vae = lvm.VAE(data_shape=[8], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]})  # fmt: skip
    vae.model.load_state_dict(model.state_dict())
    dm = TensorDataModule(binary_data(5, seed=2), test=x, eval_batch_size=4)
    from_dm = compare_estimators(vae, dm, ["importance"], [7], batch_size=2)
    from_tensor = compare_estimators(model, x, ["importance"], [7])
    assert from_dm[0].datapoints.index.tolist() == list(range(9))
    torch.testing.assert_close(
        from_dm[0].datapoints.log_px, from_tensor[0].datapoints.log_px, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="TensorDataModule has no test split"):
        compare_estimators(model, TensorDataModule(x), ["elbo"], [1])
    with pytest.raises(TypeError, match="LatentVariableModel or a VAE; got Linear"):
        compare_estimators(nn.Linear(2, 2), x, ["elbo"], [1])


@pytest.mark.parametrize(
    ("row", "value", "message"),
    [
        (
            7,
            float("nan"),
            r"bernoulli likelihood: data contains 1 non-finite value\(s\) \(first: nan at index \[3\]\)",
        ),
        (5, 3.0, r"bernoulli likelihood expects x in \[0, 1\]; got min=1, max=3"),
        (0, -0.5, r"bernoulli likelihood expects x in \[0, 1\]; got min=-0.5, max=1"),
    ],
)
def test_bad_test_data_is_named_before_any_estimation(
    row: int, value: float, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = binary_data(12)
    x[row] = 1.0
    x[row, 3] = value
    model = binary_model()

    def never(*args: object) -> None:
        raise AssertionError("estimated before the data were checked")

    monkeypatch.setattr(ImportanceSampling, "_estimate", never)
    dm = TensorDataModule(binary_data(4), test=x)
    with pytest.raises(ValueError, match=rf"^TensorDataModule test split, datapoint {row}: {message}"):
        compare_estimators(model, dm, ["importance"], [5])
    with pytest.raises(ValueError, match=rf"^data, datapoint {row + 50}: {message}"):
        compare_estimators(model, x, ["importance"], [5], index=torch.arange(50, 62))
    with pytest.raises(ValueError, match=r"datapoints have shape \(4,\); the model expects \(8,\)"):
        compare_estimators(model, x[:, :4], ["importance"], [5])


def test_bad_arguments_fail_before_any_work() -> None:
    model, x = binary_model(), binary_data(4)
    with pytest.raises(lvm.UnknownNameError, match="Did you mean 'importance'"):
        compare_estimators(model, x, ["importanse"], [1])
    with pytest.raises(ValueError, match="must be positive; got K=\\[0\\]"):
        compare_estimators(model, x, ["elbo"], [0])


class PlantedTail(Estimator):
    """log p-hat = -index, MC SE = K^-1/2; Pareto k = index / 10 for K >= 10, 0.1 for K >= 4, else NaN."""

    name: ClassVar[str] = "planted"

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        assert index is not None
        k = index.float() / 10 if self.num_samples >= 10 else torch.full_like(index, 0.1, dtype=torch.float32)
        if self.num_samples < 4:
            k = torch.full_like(k, math.nan)  # too few weights to fit a tail
        mc = torch.full_like(k, self.num_samples**-0.5)
        return Estimate(-index.float(), self.num_samples, mc_stderr=mc, pareto_k=k)


@pytest.fixture
def planted() -> None:
    register_estimator("planted")(PlantedTail)
    yield
    ESTIMATORS.remove("planted")


def test_mc_stderr_pareto_k_and_the_warning_line(planted: None) -> None:
    ks = (2, 4, 10, 100)
    rows = compare_estimators(binary_model(), binary_data(10), ["elbo", "planted"], ks, batch_size=4)[4:]
    assert [r.max_pareto_k for r in rows] == [
        None,
        pytest.approx(0.1),
        pytest.approx(0.9),
        pytest.approx(0.9),
    ]
    assert [r.share_k_over_0_7 for r in rows] == [None, 0.0, 0.2, 0.2]  # index 8 and 9 of 0..9
    assert [r.mean_mc_stderr for r in rows] == [pytest.approx(k**-0.5) for k in ks]
    assert rows[2].mean_log_px == pytest.approx(-4.5)
    assert rows[2].datapoints.pareto_k.tolist() == pytest.approx([i / 10 for i in range(10)])
    warning = tail_warning(rows)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: Pareto k > 0.7 for some datapoints in planted K=10, planted K=100:")
    assert tail_warning(rows[:2]) is None
    table = [line.split() for line in format_table(rows).splitlines()[2:]]
    assert table[0][:2] == ["planted", "2"] and table[0][4:8] == ["0.707", "-", "-", "-"]  # no ESS, no k
    assert table[2][:2] == ["planted", "10"] and table[2][4:8] == ["0.316", "-", "0.900", "20%"]


@pytest.mark.parametrize(("width", "warned"), [(0.5, True), (1.3, False)])
def test_a_q_narrower_than_the_posterior_is_warned_about(width: float, warned: bool) -> None:
    model, x = linear_gaussian(width)
    rows = compare_estimators(model, x, ["importance"], [1000])
    assert (tail_warning(rows) is not None) == warned
    if warned:
        assert "importance K=1000" in tail_warning(rows)


# -- the command ---------------------------------------------------------------------------------------
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
        assert [(r["estimator"], r["K"]) for r in csv.DictReader(f)] == [
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
