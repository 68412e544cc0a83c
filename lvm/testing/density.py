"""The kit's density properties: normalisation, moments and the sampler against log_prob."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from lvm.testing.case import Case, fail
from lvm.testing.gof import chi_square

__all__ = ["moments", "normalisation", "sampler"]

#: Kurtosis above which a variance is not checked: its quadrature and sample estimates do not settle.
_MAX_KURTOSIS = 1e6


def normalisation(c: Case) -> None:
    raw, _, support, _, mass = c.elementwise()
    walk = "sums" if support.discrete else "integrates"
    for i in range(len(mass.total)):
        total, err, tail = mass.total[i].item(), mass.error[i].item(), mass.tail[i].item()
        if not err <= 10 * c.tolerance:
            fail("normalisation", f"quadrature did not settle at {c.describe(raw, i)}: {total:.9g} with "
                  f"step h, {total - err:.9g} or {total + err:.9g} with 2h, over {mass.span[i]}")  # fmt: skip
        if not abs(total - 1) <= c.tolerance:
            fail("normalisation", f"p {walk} to {total:.9g} at {c.describe(raw, i)} over {mass.span[i]} "
                  f"(tail {tail:.2g}); expected 1 +- {c.tolerance:g}")  # fmt: skip


def _declared(base: Distribution, what: str) -> Tensor | None:
    try:
        return getattr(base, what).reshape(-1).double().detach()
    except NotImplementedError:
        return None


def moments(c: Case) -> None:
    raw, base, _, _, mass = c.elementwise()
    mean, var = _declared(base, "mean"), _declared(base, "variance")
    if mean is None:
        fail("moments", f"{type(base).__name__} has no mean; Likelihood.mean(raw) needs it")
    sd = mass.var.sqrt()
    for i in range(len(mass.total)):
        if not (math.isfinite(mean[i]) and math.isfinite(mass.var[i])):
            continue
        if abs(mean[i] - mass.mean[i]) > 1e-5 * (sd[i] + mass.mean[i].abs()):
            fail("moments", f"the distribution's mean {mean[i].item():.9g} differs from E[x] = "
                  f"{mass.mean[i].item():.9g} under its log_prob at {c.describe(raw, i)}")  # fmt: skip
        if var is None or not math.isfinite(var[i]) or mass.m4[i] > _MAX_KURTOSIS * mass.var[i] ** 2:
            continue
        if abs(var[i] - mass.var[i]) > 1e-5 * mass.var[i]:
            fail("moments", f"the distribution's variance {var[i].item():.9g} differs from Var[x] = "
                  f"{mass.var[i].item():.9g} under its log_prob at {c.describe(raw, i)}")  # fmt: skip


def sampler(c: Case) -> None:
    raw, base, _, samples, mass = c.elementwise()
    n = len(samples)
    mean, var = _declared(base, "mean"), _declared(base, "variance")
    findings: list[tuple[float, str]] = []  # (p-value, what)
    for i in range(samples.shape[1]):
        s, v, m4 = samples[:, i], mass.var[i], mass.m4[i]
        where = c.describe(raw, i)
        has_var = math.isfinite(v) and v > 0 and (var is None or math.isfinite(var[i]))
        if mean is not None and math.isfinite(mean[i]) and has_var:
            z = (s.mean() - mean[i]) / (v / n).sqrt()
            p = 2 * torch.special.ndtr(-z.abs()).item()
            findings.append((p, f"sample mean {s.mean().item():.6g} against the mean {mean[i].item():.6g} "
                                f"(z = {z.item():.2f}) at {where}"))  # fmt: skip
        if has_var and math.isfinite(m4) and m4 <= _MAX_KURTOSIS * v**2:
            z = (s.var() - v) / ((m4 - v**2) / n).sqrt()
            p = 2 * torch.special.ndtr(-z.abs()).item()
            findings.append((p, f"sample variance {s.var().item():.6g} against Var[x] = {v.item():.6g} under "
                                f"log_prob (z = {z.item():.2f}) at {where}"))  # fmt: skip
        stat, dof, p = chi_square(mass.coordinate(s), mass.edges[:, i], mass.cells[:, i], bins=30)
        if dof:
            findings.append((p, f"chi-square {stat:.1f} on {dof} degrees of freedom of samples binned "
                                f"against log_prob at {where}"))  # fmt: skip
    level = c.false_alarm / max(1, len(findings))
    p, what = min(findings, default=(1.0, ""))
    if p < level:
        fail("sampler", f"{what}: p = {p:.2g} < {level:.2g} (false-alarm rate {c.false_alarm:g} over "
              f"{len(findings)} tests, n = {n} draws each, seed {c.seed})")  # fmt: skip
