"""``lvm.compare_estimators`` and ``run_bdmc`` (lvm.evaluate.runner), their rows and tables, against values computed here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from exact_models import Identity
from scipy import stats
from torch import Tensor, nn

import lvm
from lvm import LatentVariableModel, compare_estimators, create_estimator, register_estimator
from lvm.data import TensorDataModule
from lvm.estimators import ESTIMATORS, Estimate, Estimator
from lvm.estimators.importance import ImportanceSampling
from lvm.evaluate import load_vae, run_bdmc
from lvm.evaluate.report import format_table, tail_warning
from lvm.likelihoods import Gaussian
from lvm.likelihoods.base import inverse_softplus

torch.set_num_threads(2)


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


# -- BDMC ----------------------------------------------------------------------------------------------
def test_run_bdmc_checks_its_arguments_before_any_work(checkpoint: Path) -> None:
    model = load_vae(checkpoint)[0].model
    with pytest.raises(ValueError, match=r"got T=\[3\], K=\[0\], chains=2"):
        run_bdmc(model, 4, [3], 2, ["elbo"], [0])
    with pytest.raises(ValueError, match="unknown start 'data'; allowed: posterior, prior"):
        run_bdmc(model, 4, [3], 2, ["elbo"], [1], start="data")
