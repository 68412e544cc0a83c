"""The training plan: a short fit improves the ELBO, checkpoints round-trip, bad input fails early."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

import lvm
from lvm.data import TensorDataModule


def prototype_bits(n: int, d: int = 20, seed: int = 0) -> torch.Tensor:
    """Binary data from 4 prototypes with 5% of bits flipped: easy to compress, far from uniform."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, d, generator=g) > 0.5).float()
    x = protos[torch.randint(0, 4, (n,), generator=g)]
    flip = (torch.rand(n, d, generator=g) < 0.05).float()
    return (x + flip) % 2


def small_vae(**kw: object) -> lvm.VAE:
    args = dict(
        data_shape=[20],
        latent_dim=2,
        encoder={"name": "mlp", "hidden": [32]},
        decoder={"name": "mlp", "hidden": [32]},
        lr=1e-2,
    )
    args.update(kw)
    return lvm.VAE(**args)  # type: ignore[arg-type]


def trainer(tmp_path: Path, **kw: object) -> L.Trainer:
    args = dict(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
    )
    args.update(kw)
    return L.Trainer(**args)  # type: ignore[arg-type]


def datamodule(n: int = 2000) -> TensorDataModule:
    x = prototype_bits(n + 1000)
    return TensorDataModule(x[:n], x[n : n + 500], x[n + 500 :], batch_size=50, eval_batch_size=250)


def test_short_fit_improves_test_elbo_by_at_least_4_nats(tmp_path: Path) -> None:
    L.seed_everything(0)
    vae, dm = small_vae(), datamodule()
    before = trainer(tmp_path).test(vae, datamodule=dm, verbose=False)[0]["test/elbo"]
    # untrained: about -20 log 2 = -13.9 nats; the 4-prototype data needs about 2 + 20 * H(0.05) = 6 nats
    assert before < -12
    trainer(tmp_path).fit(vae, datamodule=dm)
    after = trainer(tmp_path).test(vae, datamodule=dm, verbose=False)[0]
    assert after["test/elbo"] > before + 4, (before, after)
    assert after["test/count"] == 500


def test_iwae_model_logs_its_bound_apart_from_the_elbo(tmp_path: Path) -> None:
    """test/elbo is the ELBO and test/bound the IWAE bound L_k, each equal to its estimator's mean."""
    torch.manual_seed(0)
    vae, x = small_vae(objective="iwae", num_samples=5), prototype_bits(300, seed=1)
    dm = TensorDataModule(x, x, x, batch_size=50, eval_batch_size=70)  # batches cut across the estimate
    out = trainer(tmp_path).test(vae, datamodule=dm, verbose=False)[0]
    index = torch.arange(len(x))
    with torch.no_grad():
        elbo = lvm.create_estimator({"name": "elbo", "num_samples": 5}).estimate(vae.model, x, index=index)
        iwae = lvm.create_estimator({"name": "importance", "num_samples": 5}).estimate(
            vae.model, x, index=index
        )
    assert out["test/elbo"] == pytest.approx(elbo.log_px.mean().item(), abs=1e-4)
    assert out["test/bound"] == pytest.approx(iwae.log_px.mean().item(), abs=1e-4)
    assert out["test/bound"] > out["test/elbo"]  # L_5 >= ELBO on average (Burda et al. 2016, Thm 1)


def test_prior_mc_model_logs_the_prior_estimate_as_its_bound_and_trains(tmp_path: Path) -> None:
    """Training on log (1/K) sum_k p(x | z_k) raises it; test/bound is lvm's ``prior`` estimator with that K."""
    L.seed_everything(0)
    vae, dm = small_vae(objective="prior_mc", num_samples=16), datamodule()
    before = trainer(tmp_path).test(vae, datamodule=dm, verbose=False)[0]["test/bound"]
    trainer(tmp_path).fit(vae, datamodule=dm)
    out = trainer(tmp_path).test(vae, datamodule=dm, verbose=False)[0]
    x = prototype_bits(3000)[2500:]  # the test split of datamodule()
    with torch.no_grad():
        prior = lvm.create_estimator({"name": "prior", "num_samples": 16}).estimate(
            vae.model, x, index=torch.arange(500)
        )
    assert out["test/bound"] == pytest.approx(prior.log_px.mean().item(), abs=1e-4)
    assert out["test/bound"] > before + 2, (before, out["test/bound"])
    # the encoder gets no gradient from this objective: frozen, so DDP's reducer does not wait for it
    q_params = [*vae.model.encoder.parameters(), *vae.model.posterior_head.parameters()]
    assert q_params and not any(p.requires_grad for p in q_params)
    assert all(p.requires_grad for p in vae.model.decoder.parameters())


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    L.seed_everything(0)
    vae = small_vae(likelihood={"name": "gaussian", "scale": "shared"}, objective="iwae", num_samples=3)
    dm = TensorDataModule(torch.randn(200, 20), batch_size=50)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(vae, datamodule=dm)
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    loaded = lvm.VAE.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams.objective == "iwae" and loaded.hparams.likelihood["scale"] == "shared"
    x = torch.randn(7, 20)
    vae.eval()
    loaded.eval()
    torch.manual_seed(3)
    a = vae(x).value
    torch.manual_seed(3)
    b = loaded(x).value
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for (n1, p1), (n2, p2) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_non_finite_loss_names_step_and_term(tmp_path: Path) -> None:
    vae = small_vae()
    with torch.no_grad():
        vae.model.decoder.output_layer.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"global step 0 .*reconstruction"):
        trainer(tmp_path, max_epochs=1).fit(vae, datamodule=datamodule(100))


def test_data_shape_mismatch_fails_before_training(tmp_path: Path) -> None:
    vae = small_vae(data_shape=[21])
    with pytest.raises(ValueError, match=r"data shape \(20,\) does not match the model's data_shape \(21,\)"):
        trainer(tmp_path).fit(vae, datamodule=datamodule(100))
    assert vae.global_step == 0


@pytest.mark.parametrize(
    "likelihood,data,match",
    [
        ("bernoulli", torch.full((50, 20), 2.0), r"bernoulli likelihood expects x in \[0, 1\]; got min=2"),
        ("gamma", torch.zeros(50, 20), r"gamma likelihood expects x in \(0, inf\); .*min=0"),
        (
            "gaussian",
            torch.full((50, 20), float("nan")),
            r"gaussian likelihood: data contains .*non-finite.*nan",
        ),
    ],
)
def test_bad_data_fails_before_training(
    tmp_path: Path, likelihood: str, data: torch.Tensor, match: str
) -> None:
    vae = small_vae(likelihood=likelihood)
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match=match):
        trainer(tmp_path).fit(vae, datamodule=TensorDataModule(data, batch_size=10))
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_kl_warmup_weight_is_linear() -> None:
    vae = small_vae(kl_warmup_steps=100)

    class _T:
        global_step = 25

    vae._trainer = _T()  # type: ignore[assignment]
    assert vae.kl_weight() == pytest.approx(0.25)
    assert small_vae().kl_weight() == 1.0


def test_adam_defaults_follow_kingma_and_ba() -> None:
    opt = small_vae(lr=1e-3).configure_optimizers()
    g = opt.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"]) == (1e-3, (0.9, 0.999), 1e-8)


def test_plugin_missing_from_checkpoint_is_named() -> None:
    with pytest.raises(
        lvm.UnknownNameError,
        match=r"plugin 'laplace' from distribution 'lvm-laplace'.*pip install lvm-laplace",
    ):
        small_vae(likelihood="laplace", plugins={"laplace": "lvm-laplace"})


def test_unknown_objective_lists_known() -> None:
    with pytest.raises(lvm.UnknownNameError, match="Known objectives: elbo, iwae"):
        small_vae(objective="iwea")


def test_log_half_for_untrained_bernoulli_is_exact() -> None:
    """Zero logits: log p(x | z) = -D log 2 for any z and x, a hand-computed value."""
    vae = small_vae()
    with torch.no_grad():
        for p in vae.model.decoder.parameters():
            p.zero_()
    b = vae(prototype_bits(8))
    torch.testing.assert_close(b.reconstruction, torch.full((8,), -20 * math.log(2)))


def test_iwae_lr_schedule_boundaries() -> None:
    """Burda et al. (2016): 3^i epochs at 10^(-i/7); 3,280 epochs end at a factor of 1/10."""
    from lvm.vae import iwae_lr_factor

    stages = [iwae_lr_factor(e) for e in range(3280)]
    for i in range(8):
        assert stages.count(pytest.approx(10 ** (-i / 7))) == 3**i
    assert iwae_lr_factor(3279) == pytest.approx(0.1)
    with pytest.warns(FutureWarning, match="lr_schedule='iwae' is deprecated"):
        opt = small_vae(lr_schedule="iwae").configure_optimizers()
    assert opt["lr_scheduler"]["interval"] == "epoch"
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, iwae; got 'cosine'"):
        small_vae(lr_schedule="cosine")


class _Rows(Logger):
    """Keeps every ``log_metrics`` call in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "rows"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((int(step or 0), dict(metrics)))


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_training_values_reach_the_logger_every_log_every_n_steps(tmp_path: Path, objective: str) -> None:
    vae = lvm.VAE(data_shape=[20], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]}, objective=objective, num_samples=4)  # fmt: skip
    logger = _Rows()
    L.Trainer(
        max_steps=12, accelerator="cpu", logger=logger, log_every_n_steps=4, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    ).fit(vae, datamodule=TensorDataModule((torch.rand(400, 20) < 0.3).float(), batch_size=10))  # fmt: skip
    steps = [step for step, m in logger.rows if "train/loss" in m]
    assert steps == [3, 7, 11], logger.rows
    for _, m in logger.rows:
        if "train/loss" in m:
            assert {
                "train/elbo",
                "train/bound",
                "train/reconstruction",
                "train/kl",
                "train/kl_weight",
            } <= set(m)
            assert m["train/loss"] == pytest.approx(-m["train/bound"], rel=1e-5)
            assert m["train/elbo"] == pytest.approx(m["train/reconstruction"] - m["train/kl"], rel=1e-5)
            if objective == "elbo":
                assert m["train/bound"] == pytest.approx(m["train/elbo"], rel=1e-5)
            else:  # log-mean-exp >= mean-log on the same 4 samples, datapoint by datapoint (Jensen)
                assert m["train/bound"] > m["train/elbo"] + 1e-3


def test_adam_update_is_adams() -> None:
    """One step of the model's optimiser equals torch's reference Adam step (Kingma & Ba 2015, alg. 1)."""
    vae = lvm.VAE(data_shape=[20], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]}, lr=0.01)  # fmt: skip
    ref = [p.detach().clone().requires_grad_() for p in vae.parameters()]
    opt, ref_opt = vae.configure_optimizers(), torch.optim.Adam(ref, lr=0.01, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(vae.parameters(), ref, strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(vae.parameters(), ref, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_training_values_are_logged_only_on_logger_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``training_step`` calls ``log_dict`` only on the steps Lightning hands to the loggers."""
    vae = lvm.VAE(data_shape=[20], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]})  # fmt: skip
    steps: list[int] = []
    log_dict = vae.log_dict

    def counting(values: dict[str, Any], **kwargs: Any) -> None:
        if "train/loss" in values:
            steps.append(vae.global_step)
        log_dict(values, **kwargs)

    monkeypatch.setattr(vae, "log_dict", counting)
    L.Trainer(
        max_steps=12, accelerator="cpu", logger=_Rows(), log_every_n_steps=4, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    ).fit(vae, datamodule=TensorDataModule((torch.rand(400, 20) < 0.3).float(), batch_size=10))  # fmt: skip
    assert steps == [3, 7, 11]


def test_two_estimators_of_one_name_are_refused_not_overwritten() -> None:
    vae = small_vae(estimators=[{"name": "importance", "proposal": "prior"}, "elbo"])
    assert list(vae.estimators) == ["importance", "elbo"]
    with pytest.raises(ValueError, match=r"names must differ; got \['importance', 'importance'\]"):
        small_vae(estimators=[{"name": "importance", "proposal": "prior"}, {"name": "importance"}])
