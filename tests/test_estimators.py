"""log p(x) estimators against exact values: PPCA in closed form, 2-D latent models by dense quadrature."""

from __future__ import annotations

import copy
import math
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from exact_models import MIN_SCALE, Identity, linear_gaussian, set_head
from scipy import stats
from torch import Tensor, nn

from lvm import (
    LatentVariableModel,
    UnknownNameError,
    compare_estimators,
    create_estimator,
    list_estimators,
    register_estimator,
)
from lvm.encoders.mlp import MLPDecoder
from lvm.estimators import ESTIMATORS, Estimate, Estimator, LogMeanExp, normal_noise
from lvm.estimators.noise import _GAMMA, _mix64_int
from lvm.likelihoods import Bernoulli, Gamma
from lvm.likelihoods.base import inverse_softplus
from lvm.metrics import MeanWithStdErr

torch.set_num_threads(2)


# -- models built from lvm's own parts ----------------------------------------------------------
class Lookup(nn.Module):
    """Encoder body that returns stored features for stored datapoints (a posterior set by hand)."""

    def __init__(self, data: Tensor, features: Tensor) -> None:
        super().__init__()
        self.out_features = features.shape[1]
        self.register_buffer("data", data)
        self.register_buffer("features", features)

    def forward(self, x: Tensor) -> Tensor:
        rows = (x[:, None, :] == self.data[None]).all(-1).float().argmax(1)
        return self.features[rows]


def ppca(d: int = 6, latent: int = 2, s: float = 0.5, n: int = 200, seed: int = 0):
    """x = W z + b + s noise with orthogonal columns of W, so the exact posterior is diagonal.

    Returns the model (q = exact posterior), data (n, d), exact log p(x) (n,) and the posterior (A, c, sd).
    """
    lg = linear_gaussian(d, latent, s, n, seed)
    return lg.model, lg.x, lg.exact, (lg.a, lg.b, lg.sd)


def two_d_model(likelihood: str, d: int, seed: int = 0) -> LatentVariableModel:
    """A 2-128-128 ELU MLP decoder with random weights, over a 2-D latent."""
    torch.manual_seed(seed)
    lik = Bernoulli((d,)) if likelihood == "bernoulli" else Gamma((d,))
    decoder = MLPDecoder(2, lik.raw_size, hidden=(128, 128), activation="elu")
    with torch.no_grad():
        decoder.output_layer.weight.mul_(4.0)  # sharper p(x | z), so the posterior is narrower than the prior
    return LatentVariableModel(Identity(d), decoder, lik, 2).eval()


def exact_by_quadrature(model: LatentVariableModel, x: Tensor, grid: int = 201, radius: float = 6.0):
    """log p(x) = log sum_grid p(x | z) p(z) h^2 on [-r, r]^2, with the densities written out here in float64.

    Returns log p(x) (N,) and the posterior mean and standard deviation, each (N, 2).
    """
    g = torch.linspace(-radius, radius, grid, dtype=torch.float64)
    z = torch.cartesian_prod(g, g)  # (G, 2)
    with torch.no_grad():
        raw = copy.deepcopy(model.decoder).double()(z)  # (G, raw)
    x = x.double()
    if isinstance(model.likelihood, Bernoulli):
        log_lik = x @ raw.T - F.softplus(raw).sum(-1)  # sum_j x_j f_j - softplus(f_j), (N, G)
    else:
        k, r = (F.softplus(t) + 1e-4 for t in raw.chunk(2, dim=-1))
        log_lik = (k * r.log() - torch.lgamma(k)).sum(-1) + x.log() @ (k - 1).T - x @ r.T
    log_joint = log_lik - 0.5 * (z * z).sum(-1) - math.log(2 * math.pi)
    log_px = torch.logsumexp(log_joint, -1) + 2 * math.log(g[1] - g[0])
    w = torch.softmax(log_joint, -1)
    mean = w @ z
    return log_px, mean, (w @ z**2 - mean**2).sqrt()


def sample_data(model: LatentVariableModel, n: int, seed: int = 1) -> Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.observation(torch.randn(n, 2)).sample()


def with_posterior(model: LatentVariableModel, x: Tensor, mean: Tensor, sd: Tensor) -> LatentVariableModel:
    """A copy of ``model`` whose q(z | x) is N(mean, diag(sd^2)) for each stored datapoint."""
    model = copy.deepcopy(model)
    model.encoder = Lookup(x, torch.cat([mean, sd], 1).float())
    model.posterior_head.linear = nn.Linear(4, 4)
    set_head(model, torch.eye(2, 4), torch.zeros(2), torch.ones(2))
    with torch.no_grad():  # scale = softplus(raw) + floor with raw = inverse_softplus(feature - floor)
        model.posterior_head.linear.bias[2:] = 0.0
        model.posterior_head.linear.weight[2:, 2:] = torch.eye(2)
    model.encoder.features[:, 2:] = inverse_softplus(model.encoder.features[:, 2:] - MIN_SCALE)
    return model


def mean_and_stderr(values: Tensor) -> tuple[float, float]:
    metric = MeanWithStdErr()
    metric.update(values)
    mean, stderr, _ = metric.compute()
    return float(mean), float(stderr)


def assert_within_stderr(est: Estimate, exact: Tensor, k: float = 4.0) -> None:
    """The mean error over datapoints is within ``k`` reported standard errors of zero."""
    mean, stderr = mean_and_stderr(est.log_px.double() - exact)
    assert stderr > 0
    assert abs(mean) < k * stderr, f"mean error {mean:.5f} vs stderr {stderr:.5f} (K={est.num_samples})"


# -- (a) probabilistic PCA --------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 50])
def test_importance_with_exact_posterior_is_exact_for_any_k(k: int) -> None:
    model, x, exact, _ = ppca()
    est = create_estimator("importance", num_samples=k).estimate(model, x, index=torch.arange(len(x)), seed=0)
    torch.testing.assert_close(est.log_px.double(), exact, atol=2e-4, rtol=0)
    torch.testing.assert_close(est.ess, torch.full_like(est.ess, float(k)), rtol=1e-3, atol=0)
    assert est.log_weight_var.max() < 1e-7


def test_importance_with_approximate_posterior_converges_and_beats_elbo() -> None:
    model, x, exact, (a, b, sd) = ppca()
    set_head(model, a.float(), (-a @ b).float() + 0.4, (sd * 1.6).float())  # shifted and too wide
    index = torch.arange(len(x))
    errors = {}
    for k in (10, 1000):
        est = create_estimator("importance", num_samples=k).estimate(model, x, index=index, seed=0)
        errors[k] = (est.log_px.double() - exact).abs().mean().item()
    assert errors[1000] < 0.25 * errors[10], errors
    assert_within_stderr(est, exact)
    elbo = create_estimator("elbo", num_samples=100).estimate(model, x, index=index, seed=1)
    iwae = create_estimator("importance", num_samples=5).estimate(model, x, index=index, seed=2)
    gap, stderr = mean_and_stderr(iwae.log_px.double() - elbo.log_px.double())
    assert gap > 3 * stderr, f"IS(K=5) - ELBO = {gap:.4f} +/- {stderr:.4f}"
    below, stderr = mean_and_stderr(exact - elbo.log_px.double())
    assert below > 3 * stderr, f"log p(x) - ELBO = {below:.4f} +/- {stderr:.4f}"


def test_elbo_equals_closed_form_and_monte_carlo_kl() -> None:
    model, x, _, _ = ppca(n=50)
    index = torch.arange(len(x))
    analytic = create_estimator("elbo", num_samples=4000).estimate(model, x, index=index)
    q = model.posterior(x)
    with torch.no_grad():  # E_q log N(x | W z + b, s^2 I) in closed form
        w, s = model.decoder.weight.double(), 0.5
        mu, var = q.mean.double(), q.variance.double()
        resid = x.double() - mu @ w.T - model.decoder.bias.double()
        rec = -0.5 * ((resid**2).sum(-1) + (var @ (w * w).sum(0)[:, None]).squeeze(-1)) / s**2
        rec -= x.shape[1] * (math.log(s) + 0.5 * math.log(2 * math.pi))
        exact_elbo = rec - model.kl(q).double()
    torch.testing.assert_close(analytic.log_px.double(), exact_elbo, atol=0.05, rtol=0)
    model.kl = lambda q: (_ for _ in ()).throw(NotImplementedError)  # no closed form: Monte Carlo KL
    mc = create_estimator("elbo", num_samples=4000).estimate(model, x, index=index)
    torch.testing.assert_close(mc.log_px.double(), exact_elbo, atol=0.05, rtol=0)
    assert mc.ess is None and analytic.nll.equal(-analytic.log_px)


# -- (b) 2-D latent, Bernoulli decoder; (c) Gamma decoder ---------------------------------
@pytest.fixture(scope="module", params=[("bernoulli", 24), ("gamma", 8)], ids=["bernoulli", "gamma"])
def quadrature_case(request: pytest.FixtureRequest) -> dict[str, Any]:
    name, d = request.param
    model = two_d_model(name, d)
    x = sample_data(model, 64)
    exact, mean, sd = exact_by_quadrature(model, x)
    return {"model": model, "x": x, "exact": exact, "proposal": with_posterior(model, x, mean, 1.3 * sd)}


def test_quadrature_is_converged(quadrature_case: dict[str, Any]) -> None:
    finer, _, _ = exact_by_quadrature(quadrature_case["model"], quadrature_case["x"], grid=301, radius=7.0)
    torch.testing.assert_close(finer, quadrature_case["exact"], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "k"), [("prior", 2000), ("importance", 500)])
def test_converges_to_quadrature(quadrature_case: dict[str, Any], name: str, k: int) -> None:
    model = quadrature_case["proposal"] if name == "importance" else quadrature_case["model"]
    x, exact = quadrature_case["x"], quadrature_case["exact"]
    est = create_estimator(name, num_samples=k).estimate(model, x, index=torch.arange(len(x)), seed=0)
    assert_within_stderr(est, exact)
    # each datapoint within 5 of its own Monte Carlo standard error, sqrt(1/ESS - 1/K) (delta method)
    se = (1 / est.ess.double() - 1 / k).clamp_min(1e-12).sqrt()
    z = (est.log_px.double() - exact).abs() / se
    assert z.max() < 5, f"worst datapoint is {z.max():.2f} standard errors off"


def test_importance_beats_elbo_on_quadrature_model(quadrature_case: dict[str, Any]) -> None:
    model, x, exact = quadrature_case["proposal"], quadrature_case["x"], quadrature_case["exact"]
    index = torch.arange(len(x))
    elbo = create_estimator("elbo", num_samples=200).estimate(model, x, index=index).log_px.double()
    iwae = create_estimator("importance", num_samples=200).estimate(model, x, index=index).log_px.double()
    below, stderr = mean_and_stderr(exact - elbo)
    assert below > 3 * stderr, f"log p(x) - ELBO = {below:.4f} +/- {stderr:.4f}"
    gap, stderr = mean_and_stderr(iwae - elbo)
    assert gap > 3 * stderr, f"IS - ELBO = {gap:.4f} +/- {stderr:.4f}"


# -- mechanics: exact K, chunking, batch composition ----------------------------------------------
class SpyDecoder(nn.Module):
    """Counts the z rows decoded and records the chunk sizes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows, self.chunks = inner, 0, []

    def forward(self, z: Tensor) -> Tensor:
        self.rows += z.shape[:-1].numel()
        self.chunks.append(z.shape[0])
        return self.inner(z)


@pytest.mark.parametrize("name", ["elbo", "importance", "prior"])
def test_k_is_exactly_the_number_asked_for(name: str) -> None:
    model = two_d_model("bernoulli", 6)
    x = sample_data(model, 3)
    model.decoder = SpyDecoder(model.decoder)
    est = create_estimator(name, num_samples=1001, chunk_size=100).estimate(model, x, index=torch.arange(3))
    assert model.decoder.rows == 1001 * 3
    assert model.decoder.chunks == [100] * 10 + [1]
    assert est.num_samples == 1001 and est.log_px.shape == (3,)


@pytest.mark.parametrize("name", ["elbo", "importance", "prior"])
def test_chunked_equals_unchunked(name: str) -> None:
    model = two_d_model("bernoulli", 12)
    x = sample_data(model, 5)
    index = torch.arange(10, 15)
    whole = create_estimator(name, num_samples=300, chunk_size=300).estimate(model, x, index=index, seed=3)
    parts = create_estimator(name, num_samples=300, chunk_size=7).estimate(model, x, index=index, seed=3)
    for a, b in [
        (whole.log_px, parts.log_px),
        (whole.ess, parts.ess),
        (whole.log_weight_var, parts.log_weight_var),
    ]:
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["elbo", "importance", "prior"])
def test_estimate_does_not_depend_on_batch_composition(name: str) -> None:
    model = two_d_model("bernoulli", 12)
    x = sample_data(model, 6)
    index = torch.tensor([7, 3, 100, 5, 42, 0])
    est = create_estimator(name, num_samples=50)
    full = est.estimate(model, x, index=index, seed=5).log_px
    alone = est.estimate(model, x[2:3], index=index[2:3], seed=5).log_px
    flipped = est.estimate(model, x.flip(0), index=index.flip(0), seed=5).log_px.flip(0)
    torch.testing.assert_close(alone, full[2:3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flipped, full, rtol=1e-5, atol=1e-5)
    other_seed = est.estimate(model, x, index=index, seed=6).log_px
    assert not torch.equal(other_seed, full)


def test_without_index_estimates_are_seeded() -> None:
    model = two_d_model("bernoulli", 12)
    x = sample_data(model, 4)
    est = create_estimator("importance", num_samples=20)
    assert torch.equal(est.estimate(model, x, seed=1).log_px, est.estimate(model, x, seed=1).log_px)
    assert not torch.equal(est.estimate(model, x, seed=1).log_px, est.estimate(model, x, seed=2).log_px)


def test_estimates_need_no_grad_and_check_input() -> None:
    model = two_d_model("bernoulli", 12).train()
    x = sample_data(model, 4)
    assert not create_estimator("importance", num_samples=3).estimate(model, x).log_px.requires_grad
    with pytest.raises(ValueError, match=r"num_samples must be a positive integer; got 0"):
        create_estimator("importance", num_samples=0)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive integer or None; got -1"):
        create_estimator("prior", chunk_size=-1)
    with pytest.raises(ValueError, match=r"index must have shape \(4,\)"):
        create_estimator("prior").estimate(model, x, index=torch.arange(3))


# -- noise and the streaming logsumexp ---------------------------------------------------------------
def test_noise_is_standard_normal() -> None:
    eps = normal_noise(torch.arange(400), seed=11, start=0, count=250, dim=7)  # (250, 400, 7)
    flat = eps.double().flatten()
    assert abs(flat.mean()) < 0.005 and abs(flat.var() - 1) < 0.01
    assert stats.kstest(flat[::7].numpy(), "norm").pvalue > 1e-3
    # the cos/sin pair of one hash, neighbouring samples and neighbouring datapoints are uncorrelated
    for a, b in [(eps[..., 0], eps[..., 1]), (eps[:-1], eps[1:]), (eps[:, :-1], eps[:, 1:])]:
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(corr) < 0.01, corr


def test_noise_is_a_pure_function_of_seed_index_sample_dim() -> None:
    index = torch.tensor([3, 0, 2**40 + 7, 5])
    whole = normal_noise(index, 9, 0, 30, 5)
    parts = torch.cat([normal_noise(index, 9, 0, 11, 5), normal_noise(index, 9, 11, 19, 5)])
    assert torch.equal(whole, parts)
    assert torch.equal(normal_noise(index[2:3], 9, 0, 30, 5), whole[:, 2:3])
    assert torch.equal(normal_noise(index, 9, 0, 30, 4), whole[..., :4])
    assert not torch.equal(normal_noise(index, 10, 0, 30, 5), whole)

    def reference(seed: int, i: int, k: int, d: int) -> float:  # splitmix64 + Box-Muller in Python
        key = _mix64_int(_mix64_int(seed) ^ i)
        h = _mix64_int(key + (k * 2**32 + d // 2 + 1) * _GAMMA)
        u1, u2 = (((h >> 40) & 0xFFFFFF) + 0.5) / 2**24, ((h & 0xFFFFFF) + 0.5) / 2**24
        return math.sqrt(-2 * math.log(u1)) * (math.cos if d % 2 == 0 else math.sin)(2 * math.pi * u2)

    for k, b, d in [(0, 0, 0), (29, 3, 4), (7, 2, 1), (12, 1, 3)]:
        assert whole[k, b, d].item() == pytest.approx(reference(9, int(index[b]), k, d), abs=2e-6)


def test_streaming_log_mean_exp_matches_direct_formulas() -> None:
    lw = torch.randn(1000, 4, dtype=torch.float64) * 30 - 5000
    lw[:, 3] = -math.inf  # a datapoint with zero weight everywhere
    acc = LogMeanExp()
    for chunk in lw.split(37):
        acc.update(chunk)
    expected = torch.logsumexp(lw, 0) - math.log(1000)
    torch.testing.assert_close(acc.log_mean_exp(), expected, rtol=0, atol=1e-9)
    ess = torch.exp(2 * torch.logsumexp(lw[:, :3], 0) - torch.logsumexp(2 * lw[:, :3], 0))
    torch.testing.assert_close(acc.ess()[:3], ess, rtol=1e-9, atol=0)
    torch.testing.assert_close(acc.variance()[:3], lw[:, :3].var(0), rtol=1e-9, atol=0)
    assert acc.count == 1000


# -- the registry ---------------------------------------------------------------------------------------
class ConstantEstimator(Estimator):
    """log p-hat(x) = c for every datapoint (a stand-in for a plugin such as AIS)."""

    name: ClassVar[str] = "constant"

    def _estimate(self, model: LatentVariableModel, x: Tensor, index: Tensor | None, seed: int) -> Estimate:
        return Estimate(torch.full((x.shape[0],), -1.5), self.num_samples)


def test_registry_names_errors_and_custom_estimators() -> None:
    assert {"elbo", "importance", "prior"} <= set(list_estimators())
    with pytest.raises(UnknownNameError, match=r"Did you mean 'importance'.*elbo, importance, prior"):
        create_estimator("importanse")
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("importance")(ConstantEstimator)
    register_estimator("constant")(ConstantEstimator)
    try:
        model = two_d_model("bernoulli", 6)
        rows = compare_estimators(model, sample_data(model, 4), ["constant"], [1, 7])
        assert [(r.estimator, r.K, r.mean_log_px, r.mean_ess) for r in rows] == [
            ("constant", 1, -1.5, None),
            ("constant", 7, -1.5, None),
        ]
    finally:
        ESTIMATORS.remove("constant")


def test_plugin_estimator_arrives_through_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="ais_stub", value=f"{__name__}:ConstantEstimator", group="lvm.estimators")
    monkeypatch.setattr(ESTIMATORS, "_entry_points", lambda: [ep])
    ESTIMATORS.rescan()
    try:
        assert "ais_stub" in list_estimators()
        model = two_d_model("bernoulli", 6)
        out = create_estimator({"name": "ais_stub", "num_samples": 3}).estimate(model, sample_data(model, 2))
        assert out.log_px.tolist() == [-1.5, -1.5] and out.num_samples == 3
    finally:
        ESTIMATORS.remove("ais_stub")
        monkeypatch.undo()
        ESTIMATORS.rescan()


def test_estimators_run_in_the_lightning_test_loop() -> None:
    from lvm import VAE
    from lvm.data import TensorDataModule

    x = (torch.rand(24, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    vae = VAE(data_shape=[8], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
              decoder={"name": "mlp", "hidden": [16]}, estimators=[{"name": "importance", "num_samples": 20}])  # fmt: skip
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    out = trainer.test(vae, datamodule=TensorDataModule(x, test=x, batch_size=10), verbose=False)[0]
    direct = create_estimator("importance", num_samples=20).estimate(vae.model, x, index=torch.arange(24))
    assert out["test/log_px/importance"] == pytest.approx(direct.log_px.mean().item(), abs=1e-4)
    assert out["test/log_px/importance"] >= out["test/elbo"] - 3 * out["test/elbo_stderr"]
