"""The prior_mc experiment's quadrature helper against closed forms, the tabular baselines and the experiments' budgets."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch.distributions import MultivariateNormal

from lvm import LatentVariableModel

ROOT = Path(__file__).resolve().parents[1]


def _load(rel: str, name: str) -> ModuleType:
    """Import an experiment module by path (experiments/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# run.py imports its neighbours by their plain names, as a script does
quadrature = _load("experiments/prior_mc/quadrature.py", "quadrature")
shared_prior = _load("experiments/prior_mc/shared_prior.py", "shared_prior")
_load("experiments/over_seeds.py", "over_seeds")
_load("experiments/prior_mc/seeds.py", "seeds")


def linear_gaussian(
    d: int = 6, sigma: float = 0.3, seed: int = 0, w_scale: float = 1.0
) -> tuple[LatentVariableModel, torch.Tensor]:
    """x = W z + b + sigma eps with z ~ N(0, I_2): p(x) = N(b, W W^T + sigma^2 I), in float64."""
    model = LatentVariableModel.build(
        (d,), 2, {"name": "mlp", "hidden": [8]}, {"name": "mlp", "hidden": []},
        {"name": "gaussian", "scale": "fixed", "init_scale": sigma},
    ).double()  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lin = model.decoder.output_layer
        lin.weight.copy_(w_scale * torch.randn(d, 2, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    return model, torch.randn(5, d, generator=g, dtype=torch.float64) * 2


@pytest.fixture(scope="module")
def fine() -> tuple[LatentVariableModel, torch.Tensor, torch.Tensor]:
    """The linear-Gaussian model, its data and log p(x) on a fine 250 x 250 grid over [-7, 7]^2."""
    model, x = linear_gaussian()
    return model, x, quadrature.grid_log_px(model, x, quadrature.Grid(lim=7.0, n=250))


def test_quadrature_matches_linear_gaussian_closed_form(fine) -> None:
    model, x, quad = fine
    exact = closed_form(model, x, 0.3)
    assert torch.allclose(quad, exact, atol=1e-4, rtol=0), f"quadrature {quad} vs closed form {exact}"


def test_truncation_shows_up_when_the_grid_is_too_small(fine) -> None:
    """A [-1, 1]^2 grid misses much of the prior: the helper must not hide that."""
    model, x, big = fine
    small = quadrature.grid_log_px(model, x, quadrature.Grid(lim=1.0, n=100))
    lost = big - small
    assert lost.min() > -1e-9 and lost.max() > 0.1, f"a truncated grid can only lose mass; got {lost}"


def test_bernoulli_fast_path_equals_log_prob() -> None:
    torch.manual_seed(0)
    model = LatentVariableModel.build((12,), 2, "mlp", {"name": "mlp", "hidden": [16]}, "bernoulli")
    x = (torch.rand(4, 12) < 0.3).float()
    z = torch.randn(7, 2)
    fast = quadrature.log_lik_matrix(model, x, z)
    slow = model.observation(z).log_prob(x[:, None]).double()
    assert fast.shape == (4, 7)
    assert torch.allclose(fast, slow, atol=1e-4), f"max diff {(fast - slow).abs().max():.3g}"


def test_grid_rejects_other_latent_sizes() -> None:
    model = LatentVariableModel.build((5,), 3, "mlp", "mlp", "bernoulli")
    with pytest.raises(ValueError, match="latent_dim=3"):
        quadrature.grid_log_px(model, torch.zeros(1, 5), quadrature.Grid(lim=3.0, n=10))


def closed_form(model: LatentVariableModel, x: torch.Tensor, sigma: float) -> torch.Tensor:
    lin = model.decoder.output_layer
    cov = lin.weight @ lin.weight.T + sigma**2 * torch.eye(x.shape[1], dtype=torch.float64)
    return MultivariateNormal(lin.bias, covariance_matrix=cov).log_prob(x)


def test_shared_prior_mc_converges_to_closed_form() -> None:
    """A broad posterior (weak decoder, sigma = 1): 20,000 shared prior draws are within 0.05 nats."""
    model, x = linear_gaussian(d=3, sigma=1.0, w_scale=0.5)
    x = x / 4
    est = shared_prior.shared_prior_mc(model, x, [10, 20000], seed=0, chunk=3000)
    exact = closed_form(model, x, 1.0)
    assert set(est) == {10, 20000}
    err = (est[20000]["log_px"] - exact).abs()
    assert err.max() < 0.05, f"errors {err}"
    for k, r in est.items():
        assert ((r["ess"] >= 1 - 1e-9) & (r["ess"] <= k + 1e-9)).all(), f"ESS {r['ess']} outside [1, {k}]"


def test_grid_weights_integrate_the_prior_to_one() -> None:
    g = quadrature.Grid(lim=6.0, n=300)
    z = g.points()
    log_prior = -0.5 * z.square().sum(-1) - math.log(2 * math.pi)
    total = torch.logsumexp(log_prior, 0) + 2 * math.log(g.h)
    assert abs(total.item()) < 1e-8


mnist_run = _load("experiments/mnist/run.py", "mnist_run")
prior_mc_run = _load("experiments/prior_mc/run.py", "prior_mc_run")


def test_stage_epochs_follow_the_iwae_schedule_and_the_config_uses_three_stages() -> None:
    # Burda et al. (2016), sec. 5: 3^i epochs for stage i, 3,280 in all for i = 0..7
    assert [mnist_run.stage_epochs(s) for s in (1, 2, 3, 8)] == [1, 4, 13, 3280]
    with pytest.raises(SystemExit, match="1..8"):
        mnist_run.stage_epochs(9)
    cfg = yaml.safe_load((ROOT / "experiments/mnist/iwae.yaml").read_text())
    assert cfg["trainer"]["max_epochs"] == mnist_run.stage_epochs(3)
    assert (
        cfg["data"]["init_args"]["batch_size"] == 20
        and cfg["lr_scheduler"]["class_path"] == "lvm.optim.IWAESchedule"
    )


def test_no_experiment_config_has_a_wall_clock_budget() -> None:
    for path in [*ROOT.glob("experiments/**/*.yaml"), *ROOT.glob("lvm/configs/*.yaml")]:
        text = path.read_text()
        assert "max_time" not in text and "max_minutes" not in text, path


def _run(variant: str, seed: int, nll: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "epochs": 13,
        "test_nll": nll,
        "test_elbo": -nll - 5,
        "train_seconds": 1.0,
    }


def test_iwae_ordering_must_hold_beyond_the_seeds_spread() -> None:
    runs = [_run("vae_k1", s, v) for s, v in enumerate((90.0, 90.2, 89.8))]
    runs += [_run("iwae_k5", s, v) for s, v in enumerate((89.0, 89.2, 88.8))]
    runs += [_run("iwae_k50", s, v) for s, v in enumerate((88.0, 88.2, 87.8))]
    s = mnist_run.summarise(runs, static=False)
    assert s["variants"]["vae_k1"]["test_nll"]["mean"] == pytest.approx(90.0)
    assert s["variants"]["vae_k1"]["test_nll"]["sd"] == pytest.approx(0.2)
    assert s["variants"]["iwae_k5"]["paper_fraction"] == pytest.approx(13 / 3280)
    # differences 1.0 > sqrt(0.2^2 + 0.2^2) = 0.283: holds
    assert s["ordering_holds_beyond_spread"]
    assert s["ordering"][0]["spread"] == pytest.approx(0.08**0.5)
    # k = 50 only 0.2 better than k = 5: within the spread
    runs[-3:] = [_run("iwae_k50", s, v) for s, v in enumerate((88.8, 89.0, 88.6))]
    assert not mnist_run.summarise(runs, static=False)["ordering_holds_beyond_spread"]


def test_prior_mc_curve_se_comes_from_the_repeats_when_there_are_some() -> None:
    row = {"repeat_means": [1.0, 2.0, 3.0, 4.0, 5.0], "error": {"se": 0.01}}
    assert prior_mc_run._se(row) == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / 5**0.5)
    assert prior_mc_run._se({"error": {"se": 0.3}}) == 0.3


def _prior_mc_result(train_seed: int, exact: float, prior_err: float, gap10: float) -> dict:
    """The parts of a prior_mc results.json that the seed summary reads."""
    point = {"K": 1000, "error": {"mean": prior_err}}
    sweep = [
        {
            "latent_dim": 10,
            "active_units": 10,
            "val_elbo": -110.0,
            "prior": {"1000": {"gap": {"mean": gap10}}},
            "importance": {"1000": {"gap": {"mean": -0.3}}},
        }
    ]
    return {
        "train_seed": train_seed,
        "epochs": 10,
        "images": 100,
        "exact_mean": exact,
        "curve": {"prior": [point], "importance": [{"K": 1000, "error": {"mean": -1.0}}]},
        "sweep": sweep,
    }


def test_prior_mc_summary_is_the_mean_and_sd_over_training_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for seed, (exact, err, gap) in enumerate(
        ((-166.0, -3.0, -57.0), (-167.0, -2.0, -55.0), (-168.0, -4.0, -59.0))
    ):
        files.append(tmp_path / f"s{seed}.json")
        files[-1].write_text(json.dumps(_prior_mc_result(seed, exact, err, gap)))
    assert prior_mc_run.main(["--summarize", *map(str, files), "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    f = s["figures"]
    assert s["train_seeds"] == [0, 1, 2]
    assert f["2-D exact mean log p(x)"]["mean"] == pytest.approx(-167.0)
    assert f["2-D exact mean log p(x)"]["sd"] == pytest.approx(1.0)
    assert f["2-D prior MC error, K=1000"]["values"] == [-3.0, -2.0, -4.0]
    assert f["latent 10: prior MC gap, K=1000"]["sd"] == pytest.approx(2.0)
    assert (
        "| latent 10: prior MC gap, K=1000 | -57.00 ± 2.00 | -57.00 | -55.00 | -59.00 |"
        in (tmp_path / "summary.md").read_text()
    )
    capsys.readouterr()
    other = _prior_mc_result(3, -166.0, -3.0, -57.0)
    other["sweep"][0]["latent_dim"] = 20  # another study: the seeds cannot be pooled
    (tmp_path / "other.json").write_text(json.dumps(other))
    (tmp_path / "bad.json").write_text("{not json")
    for extra, says in (("other.json", "latent 10"), ("bad.json", "bad.json"), ("none.json", "none.json")):
        with pytest.raises(SystemExit) as exit_:
            prior_mc_run.main(["--summarize", str(files[0]), str(tmp_path / extra), "--out", str(tmp_path)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0]


def test_m2_summary_gathers_the_seed_folders_of_one_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seeds run by separate processes into one folder end in one summary; other budgets stay out."""
    m2_run = _load("experiments/semi_supervised/run.py", "m2_run")
    m2 = "experiments/semi_supervised/m2.yaml"
    budget = yaml.safe_load((ROOT / m2).read_text())["budget"]["cpu"]  # the default budget
    epochs, decay = budget["max_epochs"], budget.get("lr_decay")
    rows = (
        (0, 0.95, epochs, decay, m2),
        (1, 0.96, epochs, decay, m2),
        (2, 0.97, epochs, decay, m2),
        (3, 0.5, 1, None, m2),  # a decay after the last epoch is no decay
        (4, 0.5, epochs, decay, "other.yaml"),
        (5, 0.5, epochs, {"epoch": 0, "factor": 0.5}, m2),
    )
    for seed, acc, epochs, decay, config in rows:
        (tmp_path / f"seed{seed}").mkdir()
        row = {"seed": seed, "test_accuracy": acc, "max_epochs": epochs, "lr_decay": decay, "config": config}
        (tmp_path / f"seed{seed}" / "results.json").write_text(json.dumps(row))
    s = m2_run.main(["--summarize", "--out", str(tmp_path)])
    assert s["seeds"] == [0, 1, 2]
    assert s["test_accuracy_mean"] == pytest.approx(0.96)
    assert s["test_accuracy_sd"] == pytest.approx(0.01)
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"] == [0, 1, 2]
    assert m2_run.main(["--summarize", "--max-epochs", "1", "--out", str(tmp_path)])["seeds"] == [3]
    with pytest.raises(SystemExit) as exit_:  # a usage error: one line on stderr, status 2
        m2_run.main(["--summarize", "--full", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "no results of 300 epochs with m2.yaml" in capsys.readouterr().err


def test_m2_step_decay_sets_the_learning_rate_from_the_epoch() -> None:
    """lr x factor from the decay epoch on, from the epoch alone, so a resumed run gets it too."""
    m2_run = _load("experiments/semi_supervised/run.py", "m2_run")
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.5)
    decay = m2_run.StepDecay(epoch=3, factor=0.1)
    module = SimpleNamespace(hparams=SimpleNamespace(lr=1e-3))
    lrs = []
    for epoch in (0, 2, 3, 7, 1):  # 1 last: a run resumed before the decay goes back up
        decay.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, optimizers=[opt]), module)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-3])


def test_tabular_summary_is_the_mean_and_sd_over_training_seeds(tmp_path: Path) -> None:
    tab_run = _load("experiments/tabular/run.py", "tab_run")

    def row(mean: float, gap: float) -> dict:
        return {"mean": mean, "se": 0.04, "gap_to_truth": {"mean": gap, "se": 0.004}}

    def result(vae: float, truth: float) -> dict:
        table = {
            "true density (ceiling)": row(truth, 0.0),
            "VAE, importance sampling K=5": row(vae, vae - truth),
        }
        return {"table": table, "epochs": 200, "n_train": 10, "n_test": 5, "time": {"total": {"wall_s": 1.0}}}

    s = tab_run.summarize(
        [result(-4.9, -4.85), result(-4.8, -4.85), result(-5.0, -4.85)], [0, 1, 2], tmp_path, "cmd"
    )
    vae = s["rows"]["VAE, importance sampling K=5"]
    assert vae["log_px"]["mean"] == pytest.approx(-4.9)
    assert vae["log_px"]["sd"] == pytest.approx(0.1)
    assert vae["gap_to_truth"]["values"] == pytest.approx([-0.05, 0.05, -0.15])
    assert (
        "| VAE, importance sampling K=5 | -4.900 ± 0.100 | -0.050 ± 0.100 |"
        in (tmp_path / "summary.md").read_text()
    )
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"] == [0, 1, 2]


def test_estimators_seed_summary_takes_the_largest_k_and_t_of_each_run() -> None:
    report = _load("experiments/estimators/report.py", "report")

    def run(gap: float, width: float, above: float, ais: float) -> dict:
        pts = [
            {"data": "test", "method": "ais", "T": 10, "mean_log_px": ais - 5},
            {"data": "test", "method": "ais", "T": 100, "mean_log_px": ais},
            {"data": "simulated", "method": "bdmc_lower", "T": 10, "width": 9.0},
            {"data": "simulated", "method": "bdmc_lower", "T": 100, "width": width},
            {"data": "simulated", "method": "importance", "K": 10, "above_lower": -9.0},
            {"data": "simulated", "method": "importance", "K": 50, "above_lower": above},
        ]
        paired = {"is_max_k_minus_ais_max_t": {"mean": gap, "stderr": 0.1}, "K": 50, "T": 100}
        model = {"checkpoint": "c.ckpt", "points": pts, "paired": paired}
        return {"command": "c", "labels": {"vae": "VAE"}, "models": {"vae": model}}

    s = report.summarize_seeds([run(-0.5, 0.02, -1.0, -100.0), run(-1.0, 0.04, -2.0, -101.0)])["figures"][
        "vae"
    ]
    assert s["is_minus_ais"]["mean"] == pytest.approx(-0.75)
    assert s["is_minus_ais"]["sd"] == pytest.approx(0.5 / 2**0.5)
    assert s["sandwich_width"]["values"] == [0.02, 0.04]
    assert s["is_below_lower"]["mean"] == pytest.approx(1.5)
    assert s["ais"]["mean"] == pytest.approx(-100.5)


def test_estimators_summarize_names_a_corrupt_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage error, not a traceback: one line on stderr naming the file, exit status 2."""
    sys.path.insert(0, str(ROOT / "experiments/estimators"))  # run.py imports report by its plain name
    try:
        est_run = _load("experiments/estimators/run.py", "est_run")
    finally:
        sys.path.pop(0)
    bad = tmp_path / "results.json"
    bad.write_text('{"models": {"vae": {}}}')
    with pytest.raises(SystemExit) as exit_:
        est_run.main(["--summarize", str(bad), "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
