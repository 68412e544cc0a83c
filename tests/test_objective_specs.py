"""The gradient option of the objectives: same bound for every estimator, any likelihood, specs, checkpoints, bad input."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from test_cli_errors import config
from test_objectives import tiny_model
from torch.distributions import Independent, Laplace, Normal, TransformedDistribution
from torch.distributions.transforms import ExpTransform

import lvm
from lvm.cli import main as lvm_main
from lvm.data import TensorDataModule
from lvm.objectives import create_objective, detached

COMBOS = [
    ("elbo", "reparam"),
    ("elbo", "stl"),
    ("elbo", "score"),
    ("iwae", "reparam"),
    ("iwae", "stl"),
    ("iwae", "dreg"),
    ("prior_mc", "reparam"),
]


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: g for n, g in zip(params, grads, strict=True) if g is not None}


@pytest.mark.parametrize("kl_weight", [1.0, 0.3])
@pytest.mark.parametrize(("name", "gradient"), COMBOS)
def test_the_bound_is_the_same_whatever_the_gradient(name: str, gradient: str, kl_weight: float) -> None:
    """Same draws, same numbers: value, objective, reconstruction and KL equal the plain gradient's to the bit.

    The decoder's gradient is the same too (every estimator changes only the encoder's); the
    encoder's differs for every estimator but the plain one.
    """
    model, x = tiny_model(seed=4), (torch.rand(6, 12) > 0.5).float()
    plain, other = create_objective(name), create_objective({"name": name, "gradient": gradient})
    torch.manual_seed(1)
    a = plain(model, x, 4, kl_weight)
    torch.manual_seed(1)
    b = other(model, x, 4, kl_weight)
    for term in ("value", "objective", "reconstruction", "kl"):
        assert torch.equal(getattr(a, term), getattr(b, term)), term
    ga, gb = _grads(model, -a.objective.mean()), _grads(model, -b.objective.mean())
    assert ga.keys() == gb.keys()
    for n in ga:
        if n.startswith("decoder"):
            torch.testing.assert_close(ga[n], gb[n], rtol=1e-5, atol=1e-6, msg=n)
    encoder = [n for n in ga if n.startswith(("encoder", "posterior_head"))]
    assert (name == "prior_mc") == (not encoder)
    differs = any(not torch.allclose(ga[n], gb[n], rtol=1e-4, atol=1e-6) for n in encoder)
    assert differs == (gradient != "reparam"), gradient


LIKELIHOODS = {
    "bernoulli": ("bernoulli", lambda n: (torch.rand(n, 12) > 0.5).float()),
    "gaussian": ({"name": "gaussian", "scale": "shared"}, lambda n: torch.randn(n, 12)),
    "gamma": ("gamma", lambda n: torch.rand(n, 12) + 0.1),
    "composite": (
        {"name": "composite", "parts": [{"name": "gaussian", "columns": list(range(6))},
                                        {"name": "gamma", "columns": list(range(6, 12))}]},
        lambda n: torch.cat([torch.randn(n, 6), torch.rand(n, 6) + 0.1], 1),
    ),
    "poisson": ("poisson", lambda n: torch.poisson(torch.full((n, 12), 3.0))),
    "negative_binomial": ("negative_binomial", lambda n: torch.poisson(torch.full((n, 12), 3.0))),
    "zip": ("zip", lambda n: torch.poisson(torch.full((n, 12), 1.0))),
    "zinb": ("zinb", lambda n: torch.poisson(torch.full((n, 12), 1.0))),
    "categorical": ({"name": "categorical", "num_categories": 4}, lambda n: torch.randint(0, 4, (n, 12)).float()),
    "beta": ("beta", lambda n: torch.rand(n, 12) * 0.9 + 0.05),
    "continuous_bernoulli": ("continuous_bernoulli", lambda n: torch.rand(n, 12)),
    "student_t": ("student_t", lambda n: torch.randn(n, 12)),
    "discretized_logistic": ("discretized_logistic", lambda n: torch.randint(0, 256, (n, 12)).float() / 255),
}  # fmt: skip


def test_every_registered_likelihood_is_covered() -> None:
    assert set(LIKELIHOODS) == set(lvm.list_likelihoods())


@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
@pytest.mark.parametrize(("name", "gradient"), [c for c in COMBOS if c[1] != "reparam"])
def test_every_gradient_works_with_every_likelihood(likelihood: str, name: str, gradient: str) -> None:
    spec, data = LIKELIHOODS[likelihood]
    model = tiny_model(seed=5, likelihood=spec)
    bound = create_objective({"name": name, "gradient": gradient})(model, data(5), 3)
    grads = _grads(model, -bound.objective.mean())
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("posterior_head"))


def test_detached_keeps_the_values_and_cuts_the_parameters() -> None:
    loc, scale = torch.zeros(3, requires_grad=True), torch.ones(3, requires_grad=True)
    for q in (Independent(Normal(loc, scale), 1), Independent(Laplace(loc, scale), 1)):
        z = q.rsample((2,))
        d = detached(q)
        torch.testing.assert_close(d.log_prob(z), q.log_prob(z))
        (g,) = torch.autograd.grad(d.log_prob(z).sum(), [loc])
        # only through z: d/dloc log q(loc + scale eps) with q's loc held fixed
        torch.testing.assert_close(g, torch.autograd.grad(q.base_dist.log_prob(z).sum(), [z])[0].sum(0))
    with pytest.raises(TypeError, match="TransformedDistribution"):
        detached(TransformedDistribution(Normal(loc, scale), [ExpTransform()]))


@pytest.mark.parametrize(
    ("spec", "num_samples", "message"),
    [
        ({"name": "elbo", "gradient": "dreg"}, 1,
         "objective 'elbo' takes gradient reparam, stl, score; got 'dreg' (dreg is for iwae)"),
        ({"name": "iwae", "gradient": "score"}, 5,
         "objective 'iwae' takes gradient reparam, stl, dreg; got 'score' (score is for elbo)"),
        ({"name": "iwae", "gradient": "dreq"}, 5, "got unknown gradient 'dreq'. Did you mean 'dreg'?"),
        ({"name": "prior_mc", "gradient": "stl"}, 5, "objective 'prior_mc' takes gradient reparam; got 'stl'"),
        ({"name": "elbo", "gradient": "score"}, 1, "needs num_samples >= 2"),
        ({"name": "iwae", "samples": 5}, 5, "objective 'iwae' takes the option 'gradient' only; got samples"),
        ({"gradient": "dreg"}, 5, "objective must be a name or {name: ..., gradient: ...}"),
    ],
)  # fmt: skip
def test_bad_gradient_option_names_the_objective_and_the_options(
    spec: dict, num_samples: int, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        create_objective(spec, num_samples)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_objective_in_a_spec_lists_the_known() -> None:
    with pytest.raises(lvm.UnknownNameError, match="Known objectives: elbo, iwae, prior_mc"):
        create_objective({"name": "iwea", "gradient": "dreg"})


def _vae(**kw: object) -> lvm.VAE:
    return lvm.VAE(data_shape=[12], latent_dim=2, encoder={"name": "mlp", "hidden": [8]},
                   decoder={"name": "mlp", "hidden": [8]}, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_vae_takes_a_name_or_a_spec_and_rejects_a_bad_one_before_training() -> None:
    assert _vae(objective="iwae", num_samples=3).objective_fn.label == "iwae"
    vae = _vae(objective={"name": "iwae", "gradient": "dreg"}, num_samples=3)
    assert vae.objective_fn.label == "iwae(gradient=dreg)" and vae._eval_bound is not None
    with pytest.raises(ValueError, match="objective 'elbo' takes gradient reparam, stl, score; got 'dreg'"):
        _vae(objective={"name": "elbo", "gradient": "dreg"})
    with pytest.raises(ValueError, match="needs num_samples >= 2"):
        _vae(objective={"name": "elbo", "gradient": "score"})


def test_checkpoint_restores_the_gradient_option(tmp_path: Path) -> None:
    L.seed_everything(0)
    vae = _vae(objective={"name": "iwae", "gradient": "dreg"}, num_samples=3)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(vae, datamodule=TensorDataModule((torch.rand(40, 12) > 0.5).float(), batch_size=10))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = lvm.VAE.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert loaded.hparams.objective == {"name": "iwae", "gradient": "dreg"}
    assert loaded.objective_fn.label == "iwae(gradient=dreg)"


def test_lvm_fit_takes_the_spec_and_refuses_a_bad_one_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LVM_DEBUG", raising=False)
    fit = ["fit", "--config", str(config(tmp_path)), "--model.num_samples", "3", "--model.objective"]
    assert lvm_main([*fit, "{name: iwae, gradient: dreg}"]) == 0
    capfd.readouterr()
    assert lvm_main([*fit, "{name: elbo, gradient: dreg}"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err), err
    assert "objective 'elbo' takes gradient reparam, stl, score; got 'dreg' (dreg is for iwae)" in err[0], err
