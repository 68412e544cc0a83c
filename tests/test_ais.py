"""Annealed importance sampling against exact values: linear-Gaussian closed form and 2-D quadrature."""

from __future__ import annotations

import pytest
import torch
from exact_models import Identity, Spy, bernoulli_2d, linear_gaussian, sample_data
from torch import Tensor, nn
from torch.distributions import Distribution, Normal

from lvm import LatentVariableModel, create_estimator
from lvm.estimators.ais import anneal, annealing_schedule
from lvm.estimators.quadrature import Grid, grid_log_px
from lvm.likelihoods import Gaussian

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("steps", "schedule"), [(1, "sigmoid"), (3, "linear"), (40, "sigmoid")])
def test_exact_posterior_start_is_exact_for_any_t(steps: int, schedule: str) -> None:
    lg = linear_gaussian(n=30)
    est = create_estimator("ais", num_samples=3, steps=steps, schedule=schedule, leapfrog_steps=3)
    out = est.estimate(lg.model, lg.x, index=torch.arange(30), seed=2)
    torch.testing.assert_close(out.log_px.double(), lg.exact, rtol=0, atol=2e-4)
    assert out.mc_stderr.max() < 1e-4 and out.num_samples == 3


def test_hmc_kernel_leaves_the_posterior_invariant() -> None:
    lg = linear_gaussian(n=3)
    model = lg.plant(1.0)
    with torch.no_grad():
        q = model.posterior(lg.x)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = loc + scale * torch.randn(4000, 3, 2, generator=torch.Generator().manual_seed(0))
        fixed = torch.full((29, 3), 0.7)  # eps_t: kernels that do not look at the chains
        log_w, z_end, used = anneal(model, lg.x, z, [1.0] * 31, (loc, scale), index=None, seed=0,
                                    chain_start=0, leapfrog_steps=4, step_sizes=fixed, precondition=scale)  # fmt: skip
    assert torch.equal(used, fixed) and torch.equal(log_w, torch.zeros_like(log_w))
    u = (z_end - loc) / scale  # standard normal if p(z | x) was left invariant
    assert u.mean(0).abs().max() < 0.06 and (u.std(0) - 1).abs().max() < 0.03, (u.mean(0), u.std(0))
    assert (z_end != z).float().mean() > 0.5  # and the chains moved


def test_schedules() -> None:
    assert annealing_schedule("linear", 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    s = torch.tensor(annealing_schedule("sigmoid", 10), dtype=torch.float64)
    assert s[0] == 0 and s[-1] == 1 and (s.diff() > 0).all()
    torch.testing.assert_close(s + s.flip(0), torch.ones_like(s))  # symmetric about T / 2
    assert s[1] < 0.1 / 2 and annealing_schedule("sigmoid", 1) == [0.0, 1.0]


def test_poor_q_on_a_2d_bernoulli_model_lands_on_quadrature_and_beats_importance_sampling() -> None:
    """An untrained encoder as q; AIS with T = 500 against quadrature and IS of equal decoder cost."""
    model = bernoulli_2d(d=24)
    x = sample_data(model, 20)
    exact = grid_log_px(model, x, Grid(6.0, 300))
    index = torch.arange(20)
    k, pilot, steps, leapfrog = 4, 2, 500, 2
    ais = create_estimator("ais", num_samples=k, steps=steps, leapfrog_steps=leapfrog, pilot_chains=pilot)
    out = ais.estimate(model, x, index=index)
    err = out.log_px.double() - exact
    se = out.mc_stderr.double().square().sum().sqrt() / len(x)  # of the mean error
    assert abs(err.mean()) < 3 * se, f"AIS mean error {err.mean():.4f}, MC SE {se:.4f}"
    evaluations = (k + pilot) * (1 + (steps - 1) * leapfrog)  # decoder passes per datapoint
    imp = create_estimator("importance", num_samples=evaluations).estimate(model, x, index=index)
    err_is = imp.log_px.double() - exact
    assert err.abs().mean() < err_is.abs().mean(), (err.abs().mean(), err_is.abs().mean())


def test_exactly_k_chains_independent_of_chunks_and_batch() -> None:
    model = bernoulli_2d(d=10)
    x = sample_data(model, 4)
    model.decoder = Spy(model.decoder)
    index = torch.tensor([5, 0, 9, 2])
    est = create_estimator("ais", num_samples=6, steps=5, leapfrog_steps=2, pilot_chains=3, chunk_size=6)
    whole = est.estimate(model, x, index=index, seed=1)
    assert model.decoder.rows == 4 * (1 + (3 + 6) * (1 + 4 * 2))  # probe, pilot and counted chains
    parts = create_estimator("ais", num_samples=6, steps=5, leapfrog_steps=2, pilot_chains=3, chunk_size=4)
    torch.testing.assert_close(parts.estimate(model, x, index=index, seed=1).log_px, whole.log_px)
    alone = est.estimate(model, x[2:3], index=index[2:3], seed=1)
    torch.testing.assert_close(alone.log_px, whole.log_px[2:3], rtol=1e-5, atol=1e-5)
    assert not torch.equal(est.estimate(model, x, index=index, seed=2).log_px, whole.log_px)


class DetachedGaussian(Gaussian):
    """A plugin-like likelihood whose log_prob carries no gradient."""

    def distribution(self, loc: Tensor, scale: Tensor | None = None) -> Distribution:  # type: ignore[override]
        return Normal(loc.detach(), 1.0)


def test_bad_input_is_rejected_before_any_work() -> None:
    for kwargs, message in [
        ({"steps": 0}, r"T must be an integer >= 1; got 0"),
        ({"schedule": "cosine"}, r"unknown schedule 'cosine'; allowed: sigmoid, linear"),
        ({"start": "mode"}, r"unknown start 'mode'; allowed: posterior, prior"),
        ({"leapfrog_steps": 0}, r"leapfrog_steps must be an integer >= 1; got 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            create_estimator("ais", **kwargs)
    decoder = Spy(nn.Linear(2, 3))
    model = LatentVariableModel(Identity(3), decoder, DetachedGaussian((3,), scale="fixed"), 2)
    with pytest.raises(ValueError, match=r"differentiable in z.*'gaussian'"):
        create_estimator("ais", num_samples=50, steps=100).estimate(model, torch.zeros(2, 3))
    assert decoder.rows == 2  # one probe chain, no annealing


def test_runs_under_inference_mode_as_in_a_lightning_test_loop() -> None:
    lg = linear_gaussian(n=4)
    model = lg.plant(0.7)
    est = create_estimator("ais", num_samples=3, steps=4, leapfrog_steps=2)
    plain = est.estimate(model, lg.x, index=torch.arange(4))
    with torch.inference_mode():
        x = lg.x.clone()  # an inference tensor, as a test loop's batch is
        inside = est.estimate(model, x, index=torch.arange(4))
    torch.testing.assert_close(inside.log_px, plain.log_px)
