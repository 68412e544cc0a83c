"""The likelihoods for counts, categories, proportions, heavy tails and 8-bit images: scipy and closed forms, the kit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, logsumexp

from lvm.likelihoods import Likelihood, create_likelihood
from lvm.testing import check_likelihood

D = 3  # columns of every test datapoint
S, B = 4, 5  # latent samples, batch


def softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def blocks(raw: np.ndarray, k: int) -> list[np.ndarray]:
    """The k parameter blocks of a raw decoder output (..., k * D), each (..., D)."""
    return [raw[..., i * D : (i + 1) * D] for i in range(k)]


def _nb(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def _zero_inflated(x: np.ndarray, gate: np.ndarray, logpmf: np.ndarray, log_q0: np.ndarray) -> np.ndarray:
    pi = expit(gate)
    return np.where(x == 0, np.log(pi + (1 - pi) * np.exp(log_q0)), np.log1p(-pi) + logpmf)


def _categorical(raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = np.stack(blocks(raw, 4), -1)  # (..., D, K)
    logp = logits - logsumexp(logits, -1, keepdims=True)
    logp, x = np.broadcast_arrays(logp, x[..., None].astype(int))
    return np.take_along_axis(logp, x[..., :1], -1)[..., 0]


def _cb(raw: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    lam = expit(raw)  # the closed form in lambda (Loaiza-Ganem & Cunningham 2019, eq. 4 and appendix)
    if x is None:
        return lam / (2 * lam - 1) + 1 / (2 * np.arctanh(1 - 2 * lam))
    return x * np.log(lam) + (1 - x) * np.log1p(-lam) + np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))


def _discretized(raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    w, loc, g = (np.stack(blocks(raw[..., i * 3 * D : (i + 1) * 3 * D], 3), -1) for i in range(3))
    scale = softplus(g) + 1e-4
    x = np.asarray(x)[..., None]
    upper = np.where(x >= 1, 1.0, stats.logistic.cdf(x + 0.5 / 255, loc, scale))
    lower = np.where(x <= 0, 0.0, stats.logistic.cdf(x - 0.5 / 255, loc, scale))
    pi = np.exp(w - logsumexp(w, -1, keepdims=True))
    return np.log((pi * (upper - lower)).sum(-1))


@dataclass(frozen=True)
class Case:
    """A likelihood spec with its reference log density and mean in numpy, and data in its support."""

    spec: dict[str, Any]
    data: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    logpdf: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (raw, x) -> elementwise (..., D)
    mean: Callable[[np.ndarray], np.ndarray]
    rtol: float = 1e-10


def _counts(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.negative_binomial(2, 0.3, shape).astype(float) * rng.integers(0, 2, shape)


CASES: dict[str, Case] = {
    "poisson": Case({"name": "poisson"}, _counts, lambda r, x: stats.poisson.logpmf(x, np.exp(r)), np.exp),
    "negative_binomial-feature": Case(
        {"name": "negative_binomial", "init_theta": 2.5}, _counts,
        lambda r, x: _nb(x, np.exp(r), 2.5), np.exp, rtol=1e-6,  # theta is a float32 parameter
    ),
    "negative_binomial-datapoint": Case(
        {"name": "negative_binomial", "dispersion": "datapoint"}, _counts,
        lambda r, x: _nb(x, np.exp(blocks(r, 2)[0]), np.exp(blocks(r, 2)[1])), lambda r: np.exp(blocks(r, 2)[0]),
    ),
    "zip": Case(
        {"name": "zip"}, _counts,
        lambda r, x: _zero_inflated(x, blocks(r, 2)[1], stats.poisson.logpmf(x, np.exp(blocks(r, 2)[0])), -np.exp(blocks(r, 2)[0])),
        lambda r: expit(-blocks(r, 2)[1]) * np.exp(blocks(r, 2)[0]),
    ),
    "zinb-datapoint": Case(
        {"name": "zinb", "dispersion": "datapoint"}, _counts,
        lambda r, x: _zero_inflated(
            x, blocks(r, 3)[2], _nb(x, np.exp(blocks(r, 3)[0]), np.exp(blocks(r, 3)[1])),
            _nb(0 * x, np.exp(blocks(r, 3)[0]), np.exp(blocks(r, 3)[1])),
        ),
        lambda r: expit(-blocks(r, 3)[2]) * np.exp(blocks(r, 3)[0]),
    ),
    "zinb-feature": Case(
        {"name": "zinb"}, _counts,
        lambda r, x: _zero_inflated(x, blocks(r, 2)[1], _nb(x, np.exp(blocks(r, 2)[0]), 1.0), _nb(0 * x, np.exp(blocks(r, 2)[0]), 1.0)),
        lambda r: expit(-blocks(r, 2)[1]) * np.exp(blocks(r, 2)[0]),
    ),
    "categorical": Case(
        {"name": "categorical", "num_categories": 4}, lambda g, s: g.integers(0, 4, s).astype(float), _categorical,
        lambda r: (np.exp(_categorical(r[..., None, :], np.arange(4.0)[:, None] + 0 * r[..., None, :D])) * np.arange(4.0)[:, None]).sum(-2),
    ),
    "beta": Case(
        {"name": "beta"}, lambda g, s: g.beta(2.0, 3.0, s),
        lambda r, x: stats.beta.logpdf(
            x, expit(blocks(r, 2)[0]) * (softplus(blocks(r, 2)[1]) + 1e-3), expit(-blocks(r, 2)[0]) * (softplus(blocks(r, 2)[1]) + 1e-3)
        ),
        lambda r: expit(blocks(r, 2)[0]),
    ),
    "continuous_bernoulli": Case({"name": "continuous_bernoulli"}, lambda g, s: g.uniform(size=s), _cb, _cb, rtol=1e-9),
    "student_t-fixed": Case(
        {"name": "student_t", "df": 2.5}, lambda g, s: g.standard_t(3.0, s),
        lambda r, x: stats.t.logpdf(x, 2.5, blocks(r, 2)[0], softplus(blocks(r, 2)[1]) + 1e-3), lambda r: blocks(r, 2)[0],
    ),
    "student_t-per_output": Case(
        {"name": "student_t", "df": "per_output"}, lambda g, s: g.standard_t(3.0, s),
        lambda r, x: stats.t.logpdf(x, softplus(blocks(r, 3)[2]) + 0.1, blocks(r, 3)[0], softplus(blocks(r, 3)[1]) + 1e-3),
        lambda r: np.where(softplus(blocks(r, 3)[2]) + 0.1 > 1, blocks(r, 3)[0], np.nan),
    ),
    "discretized_logistic": Case(
        {"name": "discretized_logistic", "num_components": 3}, lambda g, s: g.integers(0, 256, s) / 255.0,
        _discretized, lambda r: (np.exp(_discretized(r[..., None, :], np.arange(256.0)[:, None] / 255)) * np.arange(256.0)[:, None] / 255).sum(-2),
        rtol=1e-9,
    ),
}  # fmt: skip


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Likelihood, Case]:
    c = CASES[request.param]
    return create_likelihood(c.spec, (D,)).double(), c


def _raw(lk: Likelihood, *batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(*batch, lk.raw_size, generator=g, dtype=torch.float64)


def test_log_prob_matches_scipy_or_the_closed_form(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    raw = _raw(lk, S, B)  # (S, B, raw_size)
    x = c.data(np.random.default_rng(0), (B, D))  # broadcast over S
    lp = lk(raw).log_prob(torch.from_numpy(x))
    assert lp.shape == (S, B)
    np.testing.assert_allclose(lp.detach().numpy(), c.logpdf(raw.numpy(), x).sum(-1), rtol=c.rtol, atol=1e-10)


def test_mean_matches_the_closed_form(case: tuple[Likelihood, Case]) -> None:
    lk, c = case
    raw = _raw(lk, S, B)
    mean = lk.mean(raw)
    assert mean.shape == (S, B, D)
    np.testing.assert_allclose(mean.detach().numpy(), c.mean(raw.numpy()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_passes_the_conformance_kit(name: str) -> None:
    spec = dict(CASES[name].spec)
    check_likelihood(spec.pop("name"), **spec)


def test_the_kit_takes_image_shaped_events_and_configured_instances() -> None:
    check_likelihood("discretized_logistic", (1, 2, 2), num_components=2)
    check_likelihood(create_likelihood("negative_binomial", (5,), init_theta=3.0), init_theta=3.0)


# -- the size factor -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["poisson", "negative_binomial", "zip", "zinb"])
def test_size_factor_scales_the_mean_of_each_count(name: str) -> None:
    plain = create_likelihood(name, (D,)).double()
    sized = create_likelihood(name, (D + 1,), size_factor=True).double()
    assert sized.raw_size == plain.raw_size
    raw = _raw(plain, S, B)
    counts = torch.from_numpy(_counts(np.random.default_rng(0), (B, D)))
    s = torch.tensor([0.5, 1.0, 2.0, 7.5, 40.0], dtype=torch.float64)[:, None]
    lp = sized(raw).log_prob(torch.cat([counts, s], -1))
    # the same model with log s added to the log mean block
    shifted = raw.clone()
    shifted[..., :D] += s.log()
    torch.testing.assert_close(lp, plain(shifted).log_prob(counts), rtol=1e-12, atol=1e-12)
    if name == "poisson":
        expected = stats.poisson.logpmf(counts.numpy(), s.numpy() * np.exp(raw[..., :D].numpy())).sum(-1)
        np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-12)
    x = sized(raw).sample()
    assert x.shape == (S, B, D + 1) and (x[..., -1] == 1).all()
    assert sized.mean(raw).shape == (S, B, D + 1)
    sized.check(torch.cat([counts, s], -1).float())


@pytest.mark.parametrize(
    ("x", "needle"),
    [([[1.0, 2.0, 3.0, 0.0]], "size factor (last column) must be > 0; got min=0"),
     ([[1.0, 2.5, 3.0, 2.0]], "not non-negative integers (first: 2.5 at index [0, 1])")],
)  # fmt: skip
def test_size_factor_data_is_checked(x: list, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        create_likelihood("poisson", (D + 1,), size_factor=True).check(torch.tensor(x))
    assert needle in str(err.value) and "poisson" in str(err.value)


# -- the continuous Bernoulli near lambda = 1/2 ----------------------------------------------------
def test_continuous_bernoulli_normaliser_is_stable_near_one_half_in_float32() -> None:
    # A typo in this normaliser once gave negative KL divergences in a widely used library:
    # log C in float32 against the closed form in float64, around and across the Taylor switch
    from lvm.likelihoods.continuous_bernoulli import LogitContinuousBernoulli, log_normaliser

    f = torch.cat([torch.linspace(-1.0, 1.0, 20001), torch.tensor([0.0, 0.5, -0.5, 1e-7, -1e-30])])
    f64 = f.double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = expit(f64)
        exact = np.where(f64 == 0, np.log(2.0), np.log(f64 / np.tanh(f64 / 2)))
        in_lambda = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    far = np.abs(f64) > 1e-3
    np.testing.assert_allclose(exact[far], in_lambda[far], rtol=1e-9)  # the logit form is the same function
    np.testing.assert_allclose(log_normaliser(f).double().numpy(), exact, rtol=0, atol=2e-7)
    # KL(p || q) = E_p[x] (f_p - f_q) - softplus(f_p) + softplus(f_q) + log C(f_p) - log C(f_q) >= 0
    g = torch.linspace(-0.6, 0.6, 121, dtype=torch.float64)
    fp, fq = g[:, None], g[None, :]
    kl = (
        LogitContinuousBernoulli(fp).mean * (fp - fq)
        - torch.nn.functional.softplus(fp) + torch.nn.functional.softplus(fq)
        + log_normaliser(fp) - log_normaliser(fq)
    )  # fmt: skip
    assert kl.min() >= -1e-15, kl.min()
    # the mean is the derivative of the log partition function softplus(f) - log C(f)
    h = 1e-5
    dA = (
        torch.nn.functional.softplus(g + h)
        - log_normaliser(g + h)
        - torch.nn.functional.softplus(g - h)
        + log_normaliser(g - h)
    ) / (2 * h)
    torch.testing.assert_close(dA, LogitContinuousBernoulli(g).mean, rtol=1e-8, atol=1e-9)


def test_discretized_logistic_is_exact_for_tiny_and_huge_scales_in_float32() -> None:
    mpmath = pytest.importorskip("mpmath")
    lk = create_likelihood("discretized_logistic", (D,), num_components=3, min_scale=1e-4)
    raw = _raw(lk, 2, 4, seed=1)
    raw[0, :, 6 * D :] = -20.0  # scales at their floor: a bin is 39 scales wide, masses far below 1e-300
    raw[1, :, 6 * D :] = 8.0  # scales far wider than [0, 1]
    raw[..., 3 * D : 6 * D] = raw[..., 3 * D : 6 * D].clamp(-0.2, 1.2)
    x = np.random.default_rng(2).integers(0, 256, (4, D)) / 255.0
    x[:, 0], x[:, 1] = 0.0, 1.0
    lp = lk(raw.float()).log_prob(torch.from_numpy(x).float())
    assert torch.isfinite(lp).all()
    mpmath.mp.dps = 60
    params = lk.double().split(raw.double())  # each (2, 4, D, K)
    sigma = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731 - exact at 60 digits, any exponent
    expected = np.zeros((2, 4))
    for i, row, j in np.ndindex(2, 4, D):
        w, loc, scale = (params[k][i, row, j].tolist() for k in ("logits", "loc", "scale"))
        v = x[row, j]
        mass = mpmath.mpf(0)
        for wk, mk, sk in zip(w, loc, scale):
            a = mpmath.inf if v >= 1 else (mpmath.mpf(v) + mpmath.mpf(0.5) / 255 - mk) / sk
            b = -mpmath.inf if v <= 0 else (mpmath.mpf(v) - mpmath.mpf(0.5) / 255 - mk) / sk
            # sigma(a) - sigma(b), or the same as sigma(-b) - sigma(-a) right of 0, where both are tiny
            diff = sigma(-b) - sigma(-a) if a + b > 0 else sigma(a) - sigma(b)
            mass += mpmath.exp(wk) / sum(mpmath.exp(u) for u in w) * diff
        expected[i, row] += float(mpmath.log(mass))
    np.testing.assert_allclose(lp.double().numpy(), expected, rtol=2e-5)


# -- parts of a composite ------------------------------------------------------------------------
def test_counts_categories_and_proportions_side_by_side_in_composite() -> None:
    parts = [
        {"name": "categorical", "columns": [2], "num_categories": 3},
        {"name": "negative_binomial", "columns": [0, 3], "dispersion": "datapoint"},
        {"name": "beta", "columns": [1]},
    ]
    lk = create_likelihood("composite", (4,), parts=parts).double()
    assert lk.raw_size == 3 + 2 * 2 + 2
    raw = _raw(lk, S, B)
    x = torch.tensor([[3.0, 0.25, 2.0, 0.0]] * B, dtype=torch.float64)
    logits = raw[..., :3]
    mu, theta = raw[..., 3:5].exp().numpy(), raw[..., 5:7].exp().numpy()
    f, phi = raw[..., 7].numpy(), softplus(raw[..., 8].numpy()) + 1e-3
    expected = (
        (logits[..., 2] - torch.logsumexp(logits, -1)).numpy()
        + _nb(np.array([3.0, 0.0]), mu, theta).sum(-1)
        + stats.beta.logpdf(0.25, expit(f) * phi, expit(-f) * phi)
    )
    np.testing.assert_allclose(lk(raw).log_prob(x).numpy(), expected, rtol=1e-12)
    sample = lk(raw).sample()
    assert sample.dtype == torch.float64 and set(sample[..., 2].unique().tolist()) <= {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match=r"columns \[2\] \(categorical.*first: 3 at index"):
        lk.check(torch.tensor([[3.0, 0.25, 3.0, 0.0]]))


# -- bad options and bad data --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ({"name": "categorical", "num_categories": -3}, ["categorical", "num_categories", "-3"]),
        ({"name": "categorical", "num_categories": 2.5}, ["categorical", "num_categories", "2.5"]),
        ({"name": "student_t", "df": 0}, ["student_t", "df", "got 0"]),
        ({"name": "student_t", "df": -1.5}, ["student_t", "df", "-1.5"]),
        ({"name": "student_t", "df": "learned"}, ["student_t", "df", "'learned'"]),
        ({"name": "negative_binomial", "dispersion": "gene"}, ["negative_binomial", "dispersion", "'gene'"]),
        ({"name": "zinb", "init_theta": 0.0}, ["zinb", "init_theta", "0.0"]),
        ({"name": "beta", "min_precision": -1}, ["beta", "min_precision", "-1"]),
        ({"name": "discretized_logistic", "levels": 1}, ["discretized_logistic", "levels", "1"]),
        ({"name": "poisson", "size_factor": "yes"}, ["poisson", "size_factor", "'yes'"]),
        (
            {"name": "poisson", "size_factr": True},
            ["poisson", "unknown option size_factr=True", "Did you mean 'size_factor'"],
        ),
        ({"name": "zip", "dispersion": "feature"}, ["zip", "unknown option dispersion='feature'"]),
    ],
)
def test_bad_options_fail_naming_likelihood_option_and_value(spec: dict, needles: list[str]) -> None:
    with pytest.raises((ValueError, TypeError)) as err:
        create_likelihood(spec, (D,))
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


@pytest.mark.parametrize(
    ("spec", "value", "needle"),
    [
        ("poisson", 2.5, "first: 2.5"),
        ("negative_binomial", -1.0, "first: -1"),
        ("zinb", 0.5, "first: 0.5"),
        ({"name": "categorical", "num_categories": 4}, 4.0, "first: 4"),
        ("beta", 1.0, "first: 1"),
        ("beta", 0.0, "first: 0"),
        ("continuous_bernoulli", 1.5, "max=1.5"),
        ("discretized_logistic", 0.5 / 255, "first: 0.00196078"),
    ],
)
def test_data_outside_the_support_is_named_by_check(spec: Any, value: float, needle: str) -> None:
    lk = create_likelihood(spec, (D,))
    x = torch.tensor([[1.0, value, 1.0]]) if spec != "beta" else torch.tensor([[0.5, value, 0.5]])
    if spec == "discretized_logistic" or spec == "continuous_bernoulli":
        x = torch.tensor([[1.0, value, 0.0]])
    with pytest.raises(ValueError) as err:
        lk.check(x)
    assert needle in str(err.value) and lk.name in str(err.value), str(err.value)


def test_command_line_mistakes_are_one_line_and_exit_2(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    import yaml

    from lvm.cli import main

    (tmp_path / "counts.csv").write_text("a,b,c\n" + "1,2,3\n" * 4 + "4,2.5,6\n" + "0,5,1\n" * 5)
    cfg = {
        "model": {"latent_dim": 2, "likelihood": "poisson", "encoder": {"name": "mlp", "hidden": [4]},
                  "decoder": {"name": "mlp", "hidden": [4]}},
        "data": {"class_path": "lvm.data.FileDataModule",
                 "init_args": {"train": str(tmp_path / "counts.csv"), "split": [0.5, 0.25, 0.25], "batch_size": 4}},
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_checkpointing": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp_path)},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LVM_DEBUG", raising=False)
    for override, expected in [
        ('{"name": "categorical", "num_categories": -3}', "categorical likelihood: num_categories must be an integer >= 2; got -3"),
        ('{"name": "student_t", "dff": 3}', "student_t likelihood: unknown option dff=3. Did you mean 'df'?"),
        ("poisson", "(first: 2.5 at index"),
    ]:  # fmt: skip
        capfd.readouterr()
        rc = main(["fit", "--config", "cfg.yaml", "--model.likelihood", override])
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and 1 <= len(err) <= 2 and expected in err[0], err
    assert "column 'b'" in err[0]
