"""lvm.diagnostics.gradient_snr: the per-parameter SNR by hand, Rainforth et al.'s scaling in K and M, bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from exact_models import LinearGaussian, linear_gaussian

import lvm
from lvm.diagnostics import GradientSNR, gradient_snr, parameter_groups

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lg() -> LinearGaussian:
    """q wider than the posterior and shifted from it, so every estimator has a non-zero mean."""
    out = linear_gaussian()
    out.plant(1.5, 0.5)
    return out


def test_snr_is_mean_over_sd_per_parameter_averaged_per_group(lg: LinearGaussian) -> None:
    """Against the gradients kept in a list and reduced by torch: the same numbers."""
    model, x, spec = lg.model, lg.x[:3], {"name": "iwae", "gradient": "dreg"}
    got = gradient_snr(model, x, spec, 7, repeats=25, seed=3)
    torch.manual_seed(3)
    objective = lvm.objectives.create_objective(spec)
    groups = parameter_groups(model)
    params = groups["encoder"] + groups["decoder"]
    rows = [torch.autograd.grad(-objective(model, x, 7).objective.mean(), params) for _ in range(25)]
    flat = torch.stack([torch.cat([g.flatten() for g in r]) for r in rows]).double()  # (25, P)
    snr = flat.mean(0).abs() / flat.std(0)
    n_enc = sum(p.numel() for p in groups["encoder"])
    assert (got.encoder_parameters, got.decoder_parameters) == (n_enc, flat.shape[1] - n_enc)
    assert got.encoder == pytest.approx(snr[:n_enc].mean().item(), rel=1e-6)
    assert got.decoder == pytest.approx(snr[n_enc:].mean().item(), rel=1e-6)
    assert got.encoder_median == pytest.approx(snr[:n_enc].median().item(), rel=1e-6)
    assert (got.objective, got.num_samples, got.num_datapoints, got.repeats) == (
        "iwae(gradient=dreg)",
        7,
        3,
        25,
    )
    assert got.noise_floor == pytest.approx(math.sqrt(2 / (math.pi * 25)))


def test_iwae_encoder_snr_falls_with_k_and_dreg_does_not(lg: LinearGaussian) -> None:
    """Rainforth et al. (2018), Theorem 1: the encoder's SNR is O(sqrt(M / K)), the decoder's O(sqrt(M K)).

    From K = 4 to 64 (a factor 4 in sqrt(K)) the reparameterised IWAE encoder SNR falls by about
    4 (measured 0.26x) and the decoder's rises (2.6x); DReG's encoder SNR rises (Tucker et al. 2019).
    """
    x = lg.x[:4]
    snr = {
        (g, k): gradient_snr(lg.model, x, {"name": "iwae", "gradient": g}, k, repeats=100)
        for g in ("reparam", "dreg")
        for k in (4, 64)
    }
    assert snr["reparam", 64].encoder < 0.5 * snr["reparam", 4].encoder, snr
    assert snr["reparam", 64].decoder > 2 * snr["reparam", 4].decoder, snr
    assert snr["dreg", 64].encoder > snr["dreg", 4].encoder, snr
    # the decoder's estimator is the same: the same draws give the same decoder SNR
    assert snr["dreg", 64].decoder == pytest.approx(snr["reparam", 64].decoder, rel=1e-5)


def test_snr_grows_as_sqrt_m_over_replicated_datapoints(lg: LinearGaussian) -> None:
    """M copies of one datapoint: the mean of M independent estimates, so the SNR scales by sqrt(M) = 4."""
    one = gradient_snr(lg.model, lg.x[:1], "iwae", 8, repeats=400)
    sixteen = gradient_snr(lg.model, lg.x[:1].expand(16, -1), "iwae", 8, repeats=400)
    for group in ("encoder", "decoder"):
        ratio = getattr(sixteen, group) / getattr(one, group)
        assert 3.3 < ratio < 4.8, (group, ratio)


def test_takes_a_vae_restores_the_rng_and_is_frozen() -> None:
    vae = lvm.VAE(data_shape=[12], latent_dim=2, encoder={"name": "mlp", "hidden": [8]},
                  decoder={"name": "mlp", "hidden": [8]}, objective="iwae", num_samples=3)  # fmt: skip
    x = (torch.rand(5, 12) > 0.5).float()
    state = torch.get_rng_state()
    a = gradient_snr(vae, x, "iwae", 3, repeats=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == gradient_snr(vae.model, x, "iwae", 3, repeats=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.encoder = 0.0  # type: ignore[misc]
    assert isinstance(a, GradientSNR) and set(dataclasses.asdict(a)) >= {"encoder", "decoder"}


def test_bad_input_is_refused(lg: LinearGaussian) -> None:
    with pytest.raises(ValueError, match="repeats must be >= 2"):
        gradient_snr(lg.model, lg.x[:2], "iwae", 4, repeats=1)
    with pytest.raises(ValueError, match="objective 'elbo' takes gradient reparam, stl, score; got 'dreg'"):
        gradient_snr(lg.model, lg.x[:2], {"name": "elbo", "gradient": "dreg"}, 4)
    with pytest.raises(TypeError, match="LatentVariableModel"):
        gradient_snr(torch.nn.Linear(2, 2), lg.x[:2])
