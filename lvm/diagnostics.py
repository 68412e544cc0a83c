"""Signal-to-noise ratio of a training objective's gradient estimates, per parameter group (Rainforth et al. 2018).

This module diagnoses *training gradients*: how much of a stochastic gradient estimate is signal.
It is not :mod:`lvm.estimators.diagnostics`, which diagnoses the *importance weights* of a log p(x)
estimate (effective sample size, Monte Carlo error, Pareto k); the two share no code or concept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lvm.model import LatentVariableModel
from lvm.objectives import Objective, create_objective
from lvm.registry import Spec

__all__ = ["GradientSNR", "gradient_snr", "parameter_groups"]


@dataclass(frozen=True)
class GradientSNR:
    """SNR = |E[g]| / sd[g] of each scalar parameter's gradient estimate g, summarised per group.

    Rainforth et al. (2018), "Tighter variational bounds are not necessarily better", sec. 3
    (the SNR of one parameter) and Theorem 1 (for IWAE's reparameterised gradient, the encoder's
    SNR is O(sqrt(M / K)) and the decoder's O(sqrt(M K)), with M datapoints and K samples).

    Attributes:
        objective: The objective and its gradient estimator, e.g. ``"iwae(gradient=dreg)"``.
        num_samples: K, samples of z per datapoint.
        num_datapoints: M, datapoints per gradient estimate (the estimate is their mean).
        repeats: Independent gradient estimates the mean and sd are taken over.
        encoder: Mean over q's scalar parameters (encoder body and posterior head) of their SNR.
        decoder: Mean over the generative model's scalar parameters (decoder, likelihood).
        encoder_median: Median of the encoder's per-parameter SNR.
        decoder_median: Median of the decoder's per-parameter SNR.
        encoder_parameters: Scalars counted in the encoder's summary (those whose estimate varies).
        decoder_parameters: Scalars counted in the decoder's summary.
        noise_floor: sqrt(2 / (pi repeats)), the mean SNR measured for a gradient whose true mean is 0
            (E|mean| / sd of ``repeats`` Gaussian draws); values near it are indistinguishable from 0.
    """

    objective: str
    num_samples: int
    num_datapoints: int
    repeats: int
    encoder: float
    decoder: float
    encoder_median: float
    decoder_median: float
    encoder_parameters: int
    decoder_parameters: int
    noise_floor: float


def parameter_groups(model: LatentVariableModel) -> dict[str, list[nn.Parameter]]:
    """``{"encoder": q's parameters, "decoder": p(x, z)'s parameters}``, trainable ones only."""
    q_modules = (model.encoder, model.posterior_head)
    q_ids = {id(p) for m in q_modules for p in m.parameters()}
    groups: dict[str, list[nn.Parameter]] = {"encoder": [], "decoder": []}
    for p in model.parameters():
        if p.requires_grad:
            groups["encoder" if id(p) in q_ids else "decoder"].append(p)
    return groups


def gradient_snr(
    model: LatentVariableModel | nn.Module,
    data: Tensor,
    objective: Spec | Objective = "iwae",
    num_samples: int = 1,
    repeats: int = 100,
    *,
    kl_weight: float = 1.0,
    seed: int | None = 0,
) -> GradientSNR:
    r"""Estimate the SNR of the gradient of ``objective`` on ``data`` for the encoder and the decoder.

    Each of ``repeats`` estimates is the gradient of the mean over the M datapoints of the
    objective (what a training step on that batch uses), with fresh draws of z; the estimates are
    streamed into per-parameter sums of g - g_1 and (g - g_1)^2 in float64 (shifted by the first
    estimate against cancellation), not kept. For each scalar parameter SNR = |mean| / sd with the
    (repeats - 1) sd; a group's summary is the mean (and median) over its scalars whose estimate
    varies. One backward pass per repeat: the loop is over independent estimates, each vectorised
    over datapoints and samples.

    Args:
        model: A :class:`~lvm.model.LatentVariableModel`, or a module holding one as ``.model``
            (an :class:`lvm.VAE`).
        data: A batch of M datapoints, (M, *event_shape), on the model's device.
        objective: Name, ``{"name": ..., "gradient": ...}`` spec, or :class:`~lvm.objectives.Objective`.
        num_samples: K.
        repeats: Gradient estimates (at least 2); the SNR's noise floor is about sqrt(2 / (pi repeats)).
        kl_weight: The objective's KL weight (1: the bound itself).
        seed: Seeds the draws of z (the caller's RNG state is restored); None uses the global RNG.

    Returns:
        A :class:`GradientSNR`.

    Raises:
        ValueError: for repeats < 2, num_samples < 1, or an objective that does not apply.
    """
    if not isinstance(model, LatentVariableModel) and isinstance(
        getattr(model, "model", None), LatentVariableModel
    ):
        model = model.model
    if not isinstance(model, LatentVariableModel):
        raise TypeError(f"gradient_snr needs a LatentVariableModel or an lvm.VAE; got {type(model).__name__}")
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 to estimate a standard deviation; got {repeats}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    fn = create_objective(objective, num_samples)
    groups = parameter_groups(model)
    params = [p for ps in groups.values() for p in ps]
    with torch.random.fork_rng(devices=[data.device] if data.is_cuda else []):
        if seed is not None:
            torch.manual_seed(seed)
        shift: list[Tensor] = []
        s1 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        s2 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        for r in range(repeats):
            loss = -fn(model, data, num_samples, kl_weight).objective.mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                g = torch.zeros_like(p) if g is None else g
                if r == 0:
                    shift.append(g.detach().double())
                d = g.detach().double() - shift[i]
                s1[i] += d
                s2[i] += d * d
    stats = {}
    offset = 0
    for name, ps in groups.items():
        snr = []
        for i in range(offset, offset + len(ps)):
            mean = s1[i] / repeats
            var = (s2[i] - repeats * mean * mean).clamp_min(0) / (repeats - 1)
            sd = var.sqrt()
            ok = sd > 0
            snr.append(((mean + shift[i]).abs()[ok] / sd[ok]).flatten())
        offset += len(ps)
        values = torch.cat(snr) if snr else torch.zeros(0, dtype=torch.float64)
        stats[name] = (
            values.mean().item() if values.numel() else math.nan,
            values.median().item() if values.numel() else math.nan,
            values.numel(),
        )
    return GradientSNR(
        objective=fn.label,
        num_samples=num_samples,
        num_datapoints=int(data.shape[0]),
        repeats=repeats,
        encoder=stats["encoder"][0],
        decoder=stats["decoder"][0],
        encoder_median=stats["encoder"][1],
        decoder_median=stats["decoder"][1],
        encoder_parameters=stats["encoder"][2],
        decoder_parameters=stats["decoder"][2],
        noise_floor=math.sqrt(2 / (math.pi * repeats)),
    )
