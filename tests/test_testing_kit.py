"""lvm.testing.check_likelihood: planted bugs are caught by the property that names them; its numerics are exact."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor
from torch.distributions import Distribution, Gamma, Laplace, Normal, Poisson

from lvm.likelihoods import Likelihood, ParamSpec, create_likelihood
from lvm.testing import PROPERTIES, check_likelihood
from lvm.testing.gof import chi_square
from lvm.testing.integrals import mass_of
from lvm.testing.support import support_of

_NO_SAMPLES = torch.Size()


# -- correct likelihoods, and the same ones with one bug planted -----------------------------
class GoodLaplace(Likelihood):
    """p = exp(-|x - mu| / b) / (2 b), b = softplus(f) + 1e-3."""

    name: ClassVar[str] = "good_laplace"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("loc"), ParamSpec("scale", "softplus", 1e-3))

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return Laplace(loc, scale, validate_args=False)


class _NoLogTwo(Laplace):
    def log_prob(self, value: Tensor) -> Tensor:
        return -(value - self.loc).abs() / self.scale - self.scale.log()  # the log 2 is missing


class MissingConstant(GoodLaplace):
    """A missing normalising constant: log_prob forgets -log 2, so p integrates to 2."""

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return _NoLogTwo(loc, scale, validate_args=False)


class GoodGamma(Likelihood):
    """Gamma(concentration k, rate r), both softplus(f) + 1e-4."""

    name: ClassVar[str] = "good_gamma"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("concentration", "softplus", 1e-4),
        ParamSpec("rate", "softplus", 1e-4),
    )
    support: ClassVar[str] = "(0, inf)"

    def distribution(self, concentration: Tensor, rate: Tensor) -> Distribution:  # type: ignore[override]
        return Gamma(concentration, rate, validate_args=False)

    def support_violation(self, x: Tensor) -> str | None:
        return f"got min={x.min().item():.4g}" if x.min() <= 0 else None


class _ScaleSampler(Gamma):
    def rsample(
        self, sample_shape: torch.Size = _NO_SAMPLES, generator: torch.Generator | None = None
    ) -> Tensor:
        return Gamma(self.concentration, 1 / self.rate).rsample(sample_shape)  # the rate used as a scale


class RateAsScale(GoodGamma):
    """A rate used as a scale in the sampler only: log_prob and mean are right, draws are not."""

    def distribution(self, concentration: Tensor, rate: Tensor) -> Distribution:  # type: ignore[override]
        return _ScaleSampler(concentration, rate, validate_args=False)


class GoodGaussian(Likelihood):
    name: ClassVar[str] = "good_gaussian"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("loc"), ParamSpec("scale", "softplus", 1e-3))

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return Normal(loc, scale, validate_args=False)


class ScaleReachesZero(GoodGaussian):
    """An inverse link that lets a scale reach 0: log(1 + e^f) is exactly 0 in float32 below f = -17."""

    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("loc"), ParamSpec("scale"))

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return Normal(loc, torch.log(1 + torch.exp(scale)), validate_args=False)


class _UnitLogProb(Normal):
    def log_prob(self, value: Tensor) -> Tensor:
        return Normal(self.loc, torch.ones_like(self.scale)).log_prob(value)  # the scale is ignored


class IgnoresScale(GoodGaussian):
    """A log_prob that ignores one parameter: sigma reaches the sampler and the mean, not log_prob."""

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return _UnitLogProb(loc, scale, validate_args=False)


PLANTED = {
    "missing normalising constant": (
        MissingConstant,
        "normalisation",
        ["integrates to 2", "loc=", "scale=", "expected 1"],
    ),
    "rate used as a scale in the sampler": (
        RateAsScale,
        "sampler",
        ["chi-square", "concentration=", "rate=", "p = "],
    ),
    "scale reaches 0": (ScaleReachesZero, "finite", ["float32", "scale=-20", "expected a finite number"]),
    "log_prob ignores a parameter": (
        IgnoresScale,
        "sensitivity",
        ["parameter 'scale'", "log_prob ignores it"],
    ),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_each_planted_bug_is_caught_by_its_property(bug: str) -> None:
    cls, prop, needles = PLANTED[bug]
    with pytest.raises(AssertionError) as err:
        check_likelihood(cls((3,)), skip=("registry",))
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{prop}: "), first
    for needle in needles:
        assert needle in first, (needle, first)


@pytest.mark.parametrize("cls", [GoodLaplace, GoodGamma, GoodGaussian], ids=lambda c: c.__name__)
def test_the_same_likelihoods_without_the_bugs_pass(cls: type[Likelihood]) -> None:
    check_likelihood(cls((3,)), skip=("registry",))


def test_the_missing_constant_is_caught_even_where_the_sampler_is_right() -> None:
    # the draws of MissingConstant are Laplace's: only the normalisation can see the bug
    check_likelihood(MissingConstant((3,)), skip=("registry", "normalisation", "moments"))


# -- the other properties: each can fail --------------------------------------------------------
class SilentCheck(GoodGamma):
    """Rejects x <= 0 without saying which value."""

    def support_violation(self, x: Tensor) -> str | None:
        return "bad data" if x.min() <= 0 else None


class NoCheck(GoodGamma):
    def support_violation(self, x: Tensor) -> str | None:
        return None


class _Unfolded(GoodGaussian):
    def forward(self, raw: Tensor) -> Distribution:
        return self.distribution(**self.split(raw))  # event dims left as batch dims


class _WrongMean(Normal):
    @property
    def mean(self) -> Tensor:
        return self.loc + self.scale


class WrongMean(GoodGaussian):
    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return _WrongMean(loc, scale, validate_args=False)


@pytest.mark.parametrize(
    ("lik", "prop", "needle"),
    [
        (SilentCheck((3,)), "support", "does not name the value"),
        (NoCheck((3,)), "support", "check accepted x = -1"),
        (_Unfolded((3,)), "shapes", "and event (); expected (2, 3) and (3,)"),
        (WrongMean((3,)), "moments", "differs from E[x]"),
        (GoodGaussian((3,)), "registry", "unknown likelihood 'good_gaussian'"),
        (create_likelihood("bernoulli", (3,)), "lattice", "check accepted x = 0.5"),
    ],
    ids=["silent-check", "no-check", "unfolded", "wrong-mean", "unregistered", "bernoulli-grey-values"],
)
def test_other_properties_fail_with_their_name(lik: Likelihood, prop: str, needle: str) -> None:
    with pytest.raises(AssertionError) as err:
        check_likelihood(lik, skip=() if prop == "registry" else ("registry",))
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{prop}: ") and needle in first, first


def test_builtins_of_the_first_version_pass() -> None:
    for spec, options in [("gaussian", {}), ("gaussian", {"scale": "shared"}), ("gamma", {})]:
        check_likelihood(spec, **options)
    check_likelihood("bernoulli", skip=("lattice",))  # grey values are accepted on purpose


def test_arguments_and_rng_state() -> None:
    with pytest.raises(ValueError, match="unknown properties \\['normalization'\\]"):
        check_likelihood("gaussian", skip=("normalization",))
    with pytest.raises(ValueError, match="event_shape \\(4,\\) differs"):
        check_likelihood(create_likelihood("gaussian", (3,)), (4,))
    assert PROPERTIES[0] == "registry" and "composite" in PROPERTIES
    torch.manual_seed(5)
    before = torch.get_rng_state()
    check_likelihood("gaussian", skip=("sampler", "normalisation"))
    assert torch.equal(torch.get_rng_state(), before)


# -- the kit's numerics against scipy ----------------------------------------------------------
def test_chi_square_p_value_matches_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g, dtype=torch.float64)
    edges = torch.cat(
        [torch.tensor([-math.inf]), torch.linspace(-3, 3, 61, dtype=torch.float64), torch.tensor([math.inf])]
    )
    cdf = torch.special.ndtr(edges)
    stat, dof, p = chi_square(x, edges, cdf[1:] - cdf[:-1], bins=30)
    assert dof >= 20
    assert p == pytest.approx(stats.chi2.sf(stat, dof), rel=1e-9)
    # the same samples against a shifted normal are rejected
    shifted = torch.special.ndtr(edges - 0.2)
    assert chi_square(x, edges, shifted[1:] - shifted[:-1], bins=30)[2] < 1e-12


def _t(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    ("dist", "mean", "var"),
    [
        (Gamma(_t(0.07, 3.0), _t(2.0, 0.5)), [0.035, 6.0], [0.0175, 12.0]),
        (Normal(_t(1e3, -2.0), _t(1e-3, 40.0)), [1e3, -2.0], [1e-6, 1600.0]),
        (
            torch.distributions.Beta(_t(0.05, 2.0), _t(0.3, 5.0)),
            [0.05 / 0.35, 2 / 7],
            [0.05 * 0.3 / (0.35**2 * 1.35), 10 / 392],
        ),
        (torch.distributions.StudentT(_t(0.5, 5.0)), [math.nan, 0.0], [math.nan, 5 / 3]),
        (
            Laplace(_t(0.3, 0.5308), _t(2.0, 2.252)),
            [0.3, 0.5308],
            [8.0, 2 * 2.252**2],
        ),  # a kink off p_u's mode
    ],
    ids=["gamma", "normal", "beta", "student_t", "laplace"],
)
def test_quadrature_integrates_to_one_with_exact_moments(dist: Distribution, mean: list, var: list) -> None:
    torch.manual_seed(0)
    mass = mass_of(support_of(dist), dist.log_prob, dist.sample((4000,)))
    np.testing.assert_allclose(mass.total.numpy(), 1.0, atol=1e-9)
    assert (mass.error < 1e-9).all()
    m, v = np.array(mean), np.array(var)
    ok = np.isfinite(v)
    np.testing.assert_allclose(mass.mean.numpy()[ok], m[ok], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(mass.var.numpy()[ok], v[ok], rtol=1e-7)


def test_discrete_sum_reports_its_tail() -> None:
    dist = Poisson(torch.tensor([3.0, 400.0], dtype=torch.float64))
    mass = mass_of(support_of(dist), dist.log_prob, dist.sample((4000,)))
    np.testing.assert_allclose(mass.total.numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(mass.mean.numpy(), [3.0, 400.0], rtol=1e-10)
    assert (mass.tail < 1e-12).all()
