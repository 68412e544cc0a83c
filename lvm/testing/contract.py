"""The kit's contract properties: registry, shapes, support, lattice, finite, sensitivity, composite."""

from __future__ import annotations

import torch
from torch import Tensor

from lvm.likelihoods.registry import LIKELIHOODS, create_likelihood
from lvm.testing.case import Case, base_of, close, fail, names
from lvm.testing.support import support_of

__all__ = ["composite", "finite", "lattice", "registry", "sensitivity", "shapes", "support"]

#: Raw values of the ``finite`` property: each raw output takes them, alone and in random mixes.
_EXTREMES = (-20.0, -10.0, -3.0, 0.0, 3.0, 10.0, 20.0)


def registry(c: Case) -> None:
    name, shape = c.lik.name, tuple(c.event)
    try:
        built = create_likelihood(name, shape, **c.options)
    except Exception as err:  # noqa: BLE001 - any failure of the round trip is the finding
        fail("registry", f"create_likelihood({name!r}, {shape}) failed: {type(err).__name__}: {err}")
    if type(built) is not type(c.lik):
        fail(
            "registry",
            f"create_likelihood({name!r}) built {type(built).__qualname__}, not {type(c.lik).__qualname__}",
        )


def shapes(c: Case) -> None:
    S, B, R, m = 2, 3, c.lik.raw_size, c.model()
    raw = c.typical(S * B).reshape(S, B, R)
    dist = m(raw)
    if dist.batch_shape != (S, B) or dist.event_shape != c.event:
        fail("shapes", f"raw (S, B, {R}) = {tuple(raw.shape)} gave batch {tuple(dist.batch_shape)} "
              f"and event {tuple(dist.event_shape)}; expected ({S}, {B}) and {tuple(c.event)}")  # fmt: skip
    x = dist.sample()
    for got, want, what in (
        (tuple(x.shape), (S, B, *c.event), "sample()"),
        (tuple(dist.sample((4,)).shape), (4, S, B, *c.event), "sample((4,))"),
        (tuple(dist.mean.shape), (S, B, *c.event), "mean"),
        (tuple(m.mean(raw).shape), (S, B, *c.event), "Likelihood.mean(raw)"),
        (tuple(dist.log_prob(x[0]).shape), (S, B), "log_prob(x) for x (B, *event)"),
        (tuple(dist.log_prob(x).shape), (S, B), "log_prob(x) for x (S, B, *event)"),
    ):
        if got != want:
            fail("shapes", f"{what} has shape {got}; expected {want}")
    lp = dist.log_prob(x[0])
    folded = base_of(dist).log_prob(x[0]).flatten(2).sum(-1)
    if not close(lp, folded):
        fail("shapes", f"log_prob is not the sum of the elements' log_prob over the event dims: "
              f"{lp.flatten()[:3].tolist()} against {folded.flatten()[:3].tolist()}")  # fmt: skip
    each = torch.stack([m(raw[s]).log_prob(x[0]) for s in range(S)])
    flat = m(raw.reshape(S * B, R)).log_prob(x[0].repeat(S, *[1] * len(c.event))).reshape(S, B)
    if not (close(lp, each) and close(lp, flat)):
        fail("shapes", "log_prob over a batch (S, B) differs from log_prob of its slices or of (S * B) rows")
    try:
        m(raw[..., :-1])
    except ValueError:
        return
    fail("shapes", f"a raw output with {R - 1} values per datapoint was accepted; expected {R}")


def _bad_value(c: Case, prop: str, value: float) -> None:
    x = c.model(torch.float32)(c.typical(4).float()).sample()
    x.view(4, -1)[2, 0] = value
    try:
        c.lik.check(x)
    except (ValueError, TypeError) as err:
        if not names(str(err), value):
            fail(prop, f"check rejected x = {value:g} but its message does not name the value: {err}")
        return
    fail(prop, f"check accepted x = {value:g}, outside the support {c.lik.support}")


def support(c: Case) -> None:
    dist = c.model(torch.float32)(c.typical(8).float())  # as data arrive
    x = dist.sample()
    try:
        c.lik.check(x)
    except (ValueError, TypeError) as err:
        fail("support", f"the likelihood's own samples fail its check: {err}")
    for value in support_of(base_of(dist)).outside():
        _bad_value(c, "support", value)


def lattice(c: Case) -> None:
    value = support_of(base_of(c.model()(c.typical(1)))).off_lattice()
    if value is not None:
        _bad_value(c, "lattice", value)


def _raw_extremes(c: Case) -> Tensor:
    R = c.lik.raw_size
    grid = torch.tensor(_EXTREMES, dtype=torch.float64)
    alone = grid[:, None].expand(-1, R)
    mixed = grid[torch.randint(len(grid), (64, R), generator=c.gen)]
    uniform = 40 * torch.rand(16, R, generator=c.gen, dtype=torch.float64) - 20
    return torch.cat([alone, mixed, uniform])


def finite(c: Case) -> None:
    support = support_of(base_of(c.model()(c.typical(1))))
    values = []
    for v in support.inside():
        try:
            c.lik.check(torch.full((1, *c.event), v))
            values.append(v)
        except (ValueError, TypeError):
            pass
    if not values:
        fail("finite", f"check rejects every one of {support.inside()}; the kit has no data to try")
    raw64 = _raw_extremes(c)
    n = c.lik.event_numel
    for dtype in (torch.float32, torch.float64):
        m = c.model(dtype)
        params = [p for p in m.parameters() if p.requires_grad]
        for v in values:
            raw = raw64.to(dtype).requires_grad_()
            x = torch.full((len(raw), *c.event), v, dtype=dtype)
            dist = m(raw)
            lp = dist.log_prob(x)
            if not torch.isfinite(lp).all():
                per = base_of(dist).log_prob(x).reshape(len(raw), n)
                i = int((~torch.isfinite(per)).reshape(-1).nonzero()[0])
                fail("finite", f"log_prob(x = {v:g}) is {per.reshape(-1)[i].item()} in {dtype} at "
                      f"{c.describe(raw64, i)}; expected a finite number")  # fmt: skip
            grads = torch.autograd.grad(lp.sum(), [raw, *params], allow_unused=True)
            if not torch.isfinite(grads[0]).all():
                row, slot = (~torch.isfinite(grads[0])).nonzero()[0].tolist()
                fail("finite", f"the gradient of log_prob(x = {v:g}) in raw output {slot} is "
                      f"{grads[0][row, slot].item()} in {dtype} at {c.describe(raw64, row * n + slot % n)}; "
                      f"expected a finite number")  # fmt: skip
            for (name, _), g in zip([(k, p) for k, p in m.named_parameters() if p.requires_grad], grads[1:]):
                if g is not None and not torch.isfinite(g).all():
                    fail(
                        "finite",
                        f"the gradient of log_prob(x = {v:g}) in parameter {name} is not finite in {dtype}",
                    )


def sensitivity(c: Case) -> None:
    m, n = c.model(), c.lik.event_numel
    raw = c.typical(16).requires_grad_()
    dist = m(raw)
    with torch.no_grad():
        x = dist.sample()
    named = [(k, p) for k, p in m.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(dist.log_prob(x).sum(), [raw, *(p for _, p in named)], allow_unused=True)
    dead = ((grads[0] == 0).all(0)).nonzero().reshape(-1).tolist()
    if dead:
        slot = dead[0]
        specs = getattr(c.lik, "params", ())
        which = f"parameter {specs[slot // n].name!r}, " if len(specs) * n == c.lik.raw_size else ""
        fail("sensitivity", f"raw output {slot} ({which}element {slot % n}) never changes log_prob over 16 "
              f"decoder outputs and their samples; log_prob ignores it")  # fmt: skip
    for (name, _), g in zip(named, grads[1:]):
        if g is None or bool((g == 0).all()):
            fail("sensitivity", f"parameter {name} never changes log_prob; log_prob ignores it")


def composite(c: Case) -> None:
    n = c.lik.event_numel
    key = f"_check_likelihood_{id(c)}"
    ours = [0, *range(2, n + 1)]
    LIKELIHOODS.add(key, type(c.lik))
    try:
        parts = [
            {"name": key, "columns": ours, **c.options},
            {"name": "gaussian", "columns": [1], "scale": "fixed"},
        ]
        try:
            comp = create_likelihood("composite", (n + 1,), parts=parts).double()
        except Exception as err:  # noqa: BLE001 - any failure to compose is the finding
            fail("composite", f"could not be a part of composite: {type(err).__name__}: {err}")
    finally:
        LIKELIHOODS.remove(key)
    raw = torch.randn(4, comp.raw_size, generator=c.gen, dtype=torch.float64).clamp(-3, 3)
    dist = comp(raw)
    x = dist.sample()
    try:
        comp.check(x.float())
    except (ValueError, TypeError) as err:
        fail("composite", f"samples of the composite fail its check: {err}")
    part = comp.parts[0]
    expected = part(raw[:, : part.raw_size]).log_prob(x[:, ours]) + torch.distributions.Normal(
        raw[:, part.raw_size], 1.0
    ).log_prob(x[:, 1])
    got = dist.log_prob(x)
    if not close(got, expected):
        fail("composite", f"log_prob {got.tolist()} differs from its parts' {expected.tolist()}")
    if tuple(dist.mean.shape) != (4, n + 1):
        fail("composite", f"mean has shape {tuple(dist.mean.shape)}; expected (4, {n + 1})")
