"""lvm.optim: the default Adam is torch's update; optimisers and schedulers by class path are torch's own."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from lvm.deprecation import LVMDeprecationWarning
from lvm.optim import Adam, IWAESchedule, class_spec, iwae_lr_factor


def _steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, n: int = 5) -> None:
    for _ in range(n):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()


def test_steps_match_torch_adam() -> None:
    torch.manual_seed(0)
    ours, x = nn.Linear(6, 3), torch.randn(8, 6)
    theirs, start = copy.deepcopy(ours), ours.weight.detach().clone()
    _steps(ours, Adam(ours.parameters(), lr=0.1, betas=(0.8, 0.99), eps=1e-6), x)
    _steps(theirs, torch.optim.Adam(theirs.parameters(), lr=0.1, betas=(0.8, 0.99), eps=1e-6), x)
    assert (ours.weight - start).abs().min() > 0.01  # the five steps moved every weight
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_parameter_groups_keep_their_own_settings() -> None:
    torch.manual_seed(0)
    ours, x = nn.Linear(6, 3), torch.randn(8, 6)
    theirs = copy.deepcopy(ours)
    _steps(ours, Adam([{"params": ours.weight}, {"params": iter([ours.bias]), "lr": 0.5}], lr=0.1), x)
    _steps(
        theirs, torch.optim.Adam([{"params": theirs.weight}, {"params": [theirs.bias], "lr": 0.5}], lr=0.1), x
    )
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# -- optimisers and schedulers chosen by class path ------------------------------------------------
def _vae(**kw: Any) -> Any:
    import lvm

    return lvm.VAE(data_shape=[6], latent_dim=2, encoder={"name": "mlp", "hidden": [4]},
                   decoder={"name": "mlp", "hidden": [4]}, **kw)  # fmt: skip


@pytest.mark.parametrize(
    "value",
    ["torch.optim.SGD", "SGD", torch.optim.SGD, {"class_path": "torch.optim.SGD"},
     {"class_path": "torch.optim.SGD", "init_args": None}],
)  # fmt: skip
def test_class_spec_takes_a_path_a_short_name_a_class_or_a_mapping(value: Any) -> None:
    spec = class_spec(value, "optimizer")
    assert spec is not None and spec["init_args"] == {}
    assert spec["class_path"] in ("torch.optim.SGD", "SGD", "torch.optim.sgd.SGD")


class _Namespace:
    """A stand-in for the jsonargparse Namespace that LightningCLI links: only ``as_dict`` is read."""

    def as_dict(self) -> dict:
        return {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2}}


def test_class_spec_reads_a_linked_namespace_as_plain_values() -> None:
    assert class_spec(_Namespace(), "lr_scheduler") == {
        "class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2}}  # fmt: skip
    assert class_spec(None, "optimizer") is None


@pytest.mark.parametrize(
    ("value", "kind", "error", "match"),
    [
        ("torch.optim.Adma", "optimizer", ValueError, r"has no class 'Adma'\. Did you mean torch\.optim\.Adam"),
        ("nowhere.Opt", "optimizer", ValueError, r"cannot import module 'nowhere'"),
        ("torch.optim.lr_scheduler.StepLR", "optimizer", ValueError, "is not a subclass of Optimizer"),
        ("torch.optim.SGD", "lr_scheduler", ValueError, "is not a subclass of LRScheduler"),
        ({"class_path": "torch.optim.SGD", "init_args": {"momentun": 0.9}}, "optimizer", TypeError,
         r"torch\.optim\.SGD: got an unexpected keyword argument 'momentun'"),
        ({"class_path": "torch.optim.SGD", "lr": 0.1}, "optimizer", ValueError, r"takes keys class_path and init_args; got \['lr'\]"),
        (3, "optimizer", ValueError, "optimizer must be a class path"),
        ("torch.optim.lr_scheduler.ReduceLROnPlateau", "lr_scheduler", ValueError, "needs the metric it watches"),
    ],
)  # fmt: skip
def test_bad_optimizer_or_scheduler_fails_when_the_module_is_built(
    value: Any, kind: str, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        class_spec(value, kind)
    with pytest.raises(error, match=match):
        _vae(**{kind: value})  # before any step


def test_default_optimizer_is_the_fused_adam_without_a_scheduler() -> None:
    opt = _vae(lr=0.01, eps=1e-4).configure_optimizers()
    assert type(opt) is Adam and opt.defaults["fused"] is True
    assert (opt.defaults["lr"], opt.defaults["eps"]) == (0.01, 1e-4)


def test_optimizer_and_scheduler_from_specs_are_torchs_and_saved_as_plain_values() -> None:
    vae = _vae(optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}},
               lr_scheduler={"class_path": "ExponentialLR", "init_args": {"gamma": 0.5}})  # fmt: skip
    out = vae.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9
    assert type(sched["scheduler"]) is torch.optim.lr_scheduler.ExponentialLR and sched["interval"] == "epoch"
    assert vae.hparams.optimizer == {
        "class_path": "torch.optim.SGD",
        "init_args": {"lr": 0.1, "momentum": 0.9},
    }
    assert vae.hparams.lr_scheduler == {"class_path": "ExponentialLR", "init_args": {"gamma": 0.5}}


def test_lightnings_reduce_on_plateau_gets_its_monitor() -> None:
    spec = {
        "class_path": "lightning.pytorch.cli.ReduceLROnPlateau",
        "init_args": {"monitor": "val/elbo", "mode": "max"},
    }
    out = _vae(lr_scheduler=spec).configure_optimizers()
    assert out["lr_scheduler"]["monitor"] == "val/elbo"


def test_default_adam_settings_beside_another_optimizer_warn_that_they_are_unused() -> None:
    with pytest.warns(
        UserWarning, match=r"lr=0\.5: for lvm's default Adam, not used with optimizer torch\.optim\.SGD"
    ):
        _vae(lr=0.5, optimizer="torch.optim.SGD")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _vae(optimizer="torch.optim.SGD")  # the defaults: nothing to say


def test_iwae_schedule_is_a_scheduler_with_burda_et_als_rates() -> None:
    """10^(-i/7) for 3^i epochs (Burda et al. 2016, sec. 5), the same rates as a LambdaLR of the factor."""
    p = nn.Parameter(torch.zeros(1))
    ours, theirs = torch.optim.SGD([p], lr=1.0), torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    a, b = IWAESchedule(ours), torch.optim.lr_scheduler.LambdaLR(theirs, iwae_lr_factor)
    rates = []
    for _ in range(40):
        rates.append(ours.param_groups[0]["lr"])
        assert rates[-1] == theirs.param_groups[0]["lr"]
        ours.step(), theirs.step(), a.step(), b.step()
    assert rates[:1] == [1.0] and rates[1:4] == [pytest.approx(10 ** (-1 / 7))] * 3
    assert rates[4:13] == [pytest.approx(10 ** (-2 / 7))] * 9 and rates[13] == pytest.approx(10 ** (-3 / 7))


def test_deprecated_lr_schedule_iwae_is_the_iwae_scheduler_with_a_warning() -> None:
    with pytest.warns(
        LVMDeprecationWarning, match=r"lr_schedule='iwae' is deprecated.*lvm\.optim\.IWAESchedule"
    ):
        vae = _vae(lr_schedule="iwae")
    assert vae.hparams.lr_scheduler == {"class_path": "lvm.optim.IWAESchedule", "init_args": {}}
    assert vae.hparams.lr_schedule == "constant"  # saved in the new form
    assert type(vae.configure_optimizers()["lr_scheduler"]["scheduler"]) is IWAESchedule
    with pytest.raises(ValueError, match="give lr_scheduler or the deprecated lr_schedule='iwae', not both"):
        _vae(lr_schedule="iwae", lr_scheduler={"class_path": "StepLR", "init_args": {"step_size": 1}})


def test_semi_supervised_vae_takes_an_optimizer_spec() -> None:
    from lvm.semi_supervised import SemiSupervisedVAE

    vae = SemiSupervisedVAE(data_shape=[6], num_classes=2, latent_dim=2, optimizer="torch.optim.RMSprop")
    assert type(vae.configure_optimizers()) is torch.optim.RMSprop
    assert type(SemiSupervisedVAE(data_shape=[6], num_classes=2, latent_dim=2).configure_optimizers()) is Adam


def test_module_adam_method_is_deprecated() -> None:
    with pytest.warns(
        LVMDeprecationWarning, match=r"EvaluatedModule\.adam\(\) is deprecated.*configure_optimizers"
    ):
        assert type(_vae().adam()) is Adam
