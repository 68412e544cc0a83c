"""Mass, moments and cells of elementwise densities: sums over discrete supports, quadrature over continuous ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lvm.testing.support import Support

__all__ = ["Mass", "mass_of"]

#: Trapezoid step and half-width in t of the double-exponential rules (the first, centring pass
#: takes 4x the step); u reaches c +- 2.5e30 w, past the representable range.
_STEP, _HALF_WIDTH = 1 / 128, 4.5
#: Support values evaluated per call of ``log_prob`` on a discrete support (bounds memory).
_CHUNK = 1024
#: The largest integer support the kit sums; beyond, the tail is extrapolated.
_MAX_COUNT = 200_000

LogProb = Callable[[Tensor], Tensor]  # x (G, P) -> log p (G, P), float64


@dataclass(frozen=True)
class Mass:
    """What the kit knows about P elementwise distributions after summing or integrating them.

    Attributes:
        total: Sum of p(k) or integral of p(x), tail included, (P,).
        tail: Mass past what was evaluated: a geometric extrapolation past the last count, or
            the exponential extension in u past the bounds where x(u) is representable, (P,).
        error: Quadrature error estimate |I_h - I_2h| (0 for sums), (P,).
        mean: E[x] under p / total, (P,).
        var: Var[x], (P,).
        m4: E[(x - E x)^4], (P,).
        edges: Cell boundaries in the walking coordinate (k or u), (G + 1, P), outermost +-inf.
        cells: Normalised mass of each cell, (G, P), summing to 1 per element.
        coordinate: Maps samples x to the walking coordinate.
        span: What was walked, for messages: ``"{0, ..., 412}"``, or the quartiles of x.
    """

    total: Tensor
    tail: Tensor
    error: Tensor
    mean: Tensor
    var: Tensor
    m4: Tensor
    edges: Tensor
    cells: Tensor
    coordinate: Callable[[Tensor], Tensor]
    span: list[str]


def _moments(x: Tensor, mass: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Total, mean, variance and 4th central moment of point masses ``mass`` at ``x``, both (G, P)."""
    total = mass.sum(0)
    x = torch.where(mass > 0, x, torch.zeros_like(x))  # 0 * inf at unreachable points
    mean = (x * mass).sum(0) / total
    dev = x - mean
    var = (dev.square() * mass).sum(0) / total
    m4 = (dev.square().square() * mass).sum(0) / total
    return total, mean, var, m4


def _discrete(support: Support, log_prob: LogProb, hint: Tensor) -> Mass:
    """Sums over the support; an unbounded one up to ``hint`` (P,) per element, the rest extrapolated."""
    P = hint.numel()
    if support.kind == "finite":
        values = support.values[:, None].expand(-1, P)  # type: ignore[index]
    else:
        top = int(min(_MAX_COUNT, float(hint.max())))
        values = torch.arange(support.lower, support.lower + top + 1, dtype=torch.float64)[:, None].expand(
            -1, P
        )
    lp = torch.cat([log_prob(values[i : i + _CHUNK].contiguous()) for i in range(0, len(values), _CHUNK)])
    p = lp.exp()
    tail = torch.zeros(P, dtype=torch.float64)
    if support.kind == "integer":
        # p(K) rho / (1 - rho), rho = p(K) / p(K - 1): exact for a geometric tail, an upper bound
        # for ratios that fall (Poisson), close for ratios that rise slowly to their limit (NB)
        rho = (lp[-1] - lp[-2]).exp()
        tail = torch.where(p[-1] > 0, p[-1] * rho / (1 - rho), torch.zeros_like(rho))
        tail = torch.where(rho < 1, tail, torch.where(p[-1] > 0, math.inf, 0.0))
    total, mean, var, m4 = _moments(values, p)
    total = total + tail
    cells = p.clone()
    cells[-1] += tail
    cells = cells / cells.sum(0)
    mids = (values[1:] + values[:-1]) / 2
    inf = torch.full((1, P), math.inf, dtype=torch.float64)
    edges = torch.cat([-inf, mids, inf])
    lo, hi = values[0, 0].item(), values[-1, 0].item()
    span = [f"{{{lo:g}, ..., {hi:g}}}"] * P
    return Mass(
        total, tail, torch.zeros(P, dtype=torch.float64), mean, var, m4, edges, cells, lambda x: x, span
    )


def _nodes(step: float, half: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Nodes s(t), ds/dt and s at the cell boundaries t +- step/2, t in [-4.5, 4.5].

    Sinh-sinh, s = sinh(pi/2 sinh t), for the whole line; exp-sinh, s = exp(pi/2 sinh t), for a
    half-line, whose nodes crowd at its end so that a kink there (the mode of a Laplace) costs
    nothing (Takahasi & Mori 1974; Mori & Sugihara 2001, sec. 3).
    """
    n = round(_HALF_WIDTH / step)
    t = torch.arange(-n, n + 1, dtype=torch.float64) * step
    tb = torch.arange(-n, n + 2, dtype=torch.float64) * step - step / 2
    inner, d_inner = math.pi / 2 * torch.sinh(t), math.pi / 2 * torch.cosh(t)
    if half:
        return inner.exp(), d_inner * inner.exp(), (math.pi / 2 * torch.sinh(tb)).exp()
    return torch.sinh(inner), d_inner * torch.cosh(inner), torch.sinh(math.pi / 2 * torch.sinh(tb))


def _mode(f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, steps: int = 50) -> Tensor:
    """Golden-section search for the maximum of f on [a, b], elementwise, (P,)."""
    g = (math.sqrt(5) - 1) / 2
    for _ in range(steps):
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = f(torch.stack([c, d])).unbind(0)
        left = ~(fc < fd)  # keep [a, d] where f(c) >= f(d); nan keeps the left
        a, b = torch.where(left, a, c), torch.where(left, d, b)
    return (a + b) / 2


def _log_density_u(support: Support, log_prob: LogProb, u: Tensor) -> tuple[Tensor, Tensor]:
    """log p_u(u) = log p(x(u)) + log |dx/du|, (G, P), extended exponentially past the representable u.

    Returns the log density and the mass of the extensions, (P,).
    """
    lo, hi = support.u_range()
    P = u.shape[1]
    edge_u = torch.tensor([lo, lo + 1.0, hi - 1.0, hi], dtype=torch.float64)[:, None].expand(4, P)
    inner = u.clamp(lo, hi)
    lp_all = log_prob(support.x_of_u(torch.cat([inner, edge_u]))) + support.log_jacobian(
        torch.cat([inner, edge_u])
    )
    lp, (at_lo, in_lo, in_hi, at_hi) = lp_all[:-4], lp_all[-4:]
    tail = torch.zeros(P, dtype=torch.float64)
    for at, inside, sign, bound in ((at_lo, in_lo, -1.0, lo), (at_hi, in_hi, 1.0, hi)):
        rate = inside - at  # decay of log p_u per unit of u outward
        rate = torch.where(torch.isfinite(at), rate, torch.ones_like(rate))
        past = sign * (u - bound) > 0
        lp = torch.where(past, at - rate * sign * (u - bound), lp)
        tail = tail + torch.where(torch.isfinite(at), torch.where(rate > 0, at.exp() / rate, math.inf), 0.0)
    return lp, tail


def _continuous(support: Support, log_prob: LogProb, centre: Tensor, width: Tensor) -> Mass:
    """Quadrature in u: a sinh-sinh pass at (centre, width) finds the mode and quartiles of the
    density, then exp-sinh rules integrate each side of the mode at steps h and 2h."""
    P = centre.numel()

    def density(u: Tensor) -> tuple[Tensor, Tensor]:
        return _log_density_u(support, log_prob, u)

    s, ds, _ = _nodes(4 * _STEP, half=False)
    u = centre + width * s[:, None]  # (G, P)
    lp, _ = density(u)
    mass = lp.exp() * ds[:, None] * width
    cdf = mass.cumsum(0) / mass.sum(0)
    q25, q75 = (u.gather(0, (cdf < f).sum(0, keepdim=True).clamp(max=len(u) - 1))[0] for f in (0.25, 0.75))
    # Split where a kink of p(x) would be: at the mode of p(x) when it lies inside (Laplace's
    # location), else at the mode of p_u (a density unbounded at a bound, Gamma's with k < 1)
    u_lo, u_hi = support.u_range()
    lp_x = (lp - support.log_jacobian(u)).masked_fill((u < u_lo) | (u > u_hi), -math.inf)
    mode = torch.empty_like(centre)
    for log_p, of_x in ((lp, False), (lp_x, True)):
        top = log_p.nan_to_num(-math.inf).argmax(0, keepdim=True)
        lo, hi = u.gather(0, (top - 1).clamp(min=0))[0], u.gather(0, (top + 1).clamp(max=len(u) - 1))[0]

        def f(v: Tensor, of_x: bool = of_x) -> Tensor:
            lp_v = density(v)[0]
            return lp_v - support.log_jacobian(v) if of_x else lp_v

        at = torch.arange(P)
        peak = log_p[top[0], at]
        left, right = log_p[(top[0] - 1).clamp(min=0), at], log_p[(top[0] + 1).clamp(max=len(u) - 1), at]
        # a strict maximum between two nodes in range (not where p rises or levels off to a bound)
        inner = (top[0] > 0) & (top[0] < len(u) - 1) & torch.isfinite(left) & torch.isfinite(right)
        inner &= peak - torch.maximum(left, right) > 1e-9 * (1 + peak.abs())
        mode = torch.where(inner, _mode(f, lo, hi), mode) if of_x else _mode(f, lo, hi)
    seen = torch.isfinite(mass.sum(0)) & (mass.sum(0) > 0)
    mode = torch.where(seen & torch.isfinite(mode), mode, centre)
    sides = []
    for sign, q in ((-1.0, q25), (1.0, q75)):
        w = sign * (q - mode) / 0.6745  # the distance to a quartile, as a normal's scale
        w = torch.where(seen & torch.isfinite(w) & (w > 0), w, width)
        s, ds, sb = _nodes(_STEP, half=True)
        u = mode + sign * w * s[:, None]
        lp, tail = density(u)
        sides.append((u, lp.exp() * (_STEP * w * ds[:, None]), mode + sign * w * sb[:, None]))
    (ul, ml, bl), (ur, mr, br) = sides
    u, mass = torch.cat([ul.flip(0), ur]), torch.cat([ml.flip(0), mr])
    coarse = 2 * (ml[::2].sum(0) + mr[::2].sum(0))  # the same rules at twice the step
    x = support.x_of_u(u.clamp(*support.u_range()))
    total, mean, var, m4 = _moments(x, mass)
    error = (total - coarse).abs()
    edges = torch.cat([bl.flip(0), br])  # a cell of no mass between the two sides' innermost bounds
    cells = torch.cat([ml.flip(0), torch.zeros(1, P, dtype=mass.dtype), mr]) / total
    # Samples past the representable u sit at its bounds: so does the mass of the cells there
    lo, hi = support.u_range()
    edges = edges.clamp(lo, hi)
    below, above = edges[1:] <= lo, edges[:-1] >= hi
    first = (~below).to(torch.int8).argmax(0)
    moved_low, moved_high = (cells * below).sum(0), (cells * above).sum(0)
    cells = cells * ~(below | above)
    cells[first, torch.arange(P)] += moved_low
    cells[-1] += moved_high
    edges[0], edges[-1] = -math.inf, math.inf
    quartiles = zip(support.x_of_u(q25).tolist(), support.x_of_u(q75).tolist())
    span = [f"the support (quartiles {a:.4g}, {b:.4g})" for a, b in quartiles]
    return Mass(
        total, tail, error, mean, var, m4, edges, cells, lambda x: support.u_of_x(x).clamp(lo, hi), span
    )


def mass_of(support: Support, log_prob: LogProb, samples: Tensor) -> Mass:
    """Sum or integrate P elementwise densities.

    Args:
        support: Where the elements live.
        log_prob: x (G, P) -> log p(x) (G, P), float64, elementwise.
        samples: Draws (n, P) from the distributions: where to centre the quadrature (median and
            interquartile range in u), how far to sum counts. The centring is refined on the
            density itself, so a wrong sampler cannot hide a wrong density.
    """
    if support.discrete:
        top = samples.max(0).values - support.lower if support.kind == "integer" else samples[0]
        return _discrete(support, log_prob, 4 * top + 200)
    u = support.u_of_x(samples)
    u = torch.where(torch.isfinite(u), u, torch.nan)
    q = u.nanquantile(torch.tensor([0.25, 0.5, 0.75], dtype=u.dtype), dim=0)
    centre = torch.nan_to_num(q[1], nan=0.0)
    width = torch.nan_to_num((q[2] - q[0]) / 1.349, nan=1.0)
    width = torch.where(width > 0, width, torch.ones_like(width))
    return _continuous(support, log_prob, centre, width)
