"""Benchmark: each likelihood's log_prob forward and backward against torch.distributions on the same parameters.

For every likelihood added with the count, category, proportion, heavy-tail and image models, one
timing is: raw decoder outputs (S, B, P x D) with requires_grad -> parameters through the inverse
links -> log p(x | z) summed over the event -> ``.sum().backward()``, with S = B = 100 and D = 784
(a (100, 100, 784) output per parameter). lvm's side is ``likelihood(raw).log_prob(x)``; the
reference applies the same links in torch and calls torch.distributions' own class:
``Poisson``, ``NegativeBinomial``, ``Categorical``, ``Beta``, ``ContinuousBernoulli``,
``StudentT``. torch has no zero-inflated class: there the reference is torch's ``Poisson`` /
``NegativeBinomial`` log_prob with the zero inflation written in torch ops as scVI writes it
(``log_zinb_positive``). torch has no discretised logistic: there it is PixelCNN++'s own loss
(Salimans et al. 2017, ``discretized_mix_logistic_loss``, each subpixel on its own), ported to torch.
Rounds alternate the order; the ratio is lvm's time over the reference's in the same round, its
median over the rounds and its min-max reported. Default environment (torch's threads, no
allocator or OpenMP variables).

Usage:
    nice -n 10 python benchmarks/bench_likelihoods.py --repeats 5 --out benchmarks/results/likelihoods.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributions as td

from lvm.likelihoods import create_likelihood

S, B, D = 100, 100, 784
Case = tuple[dict, int, Callable[[Tensor, Tensor], Tensor], Callable[[torch.Generator], Tensor]]


def _blocks(raw: Tensor, k: int) -> list[Tensor]:
    return list(raw.unflatten(-1, (k, D)).unbind(-2))


def _zero_inflated(lp: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """scVI's zero inflation around a count log_prob: logaddexp at 0, log(1 - pi) elsewhere."""
    nonzero = -F.softplus(h) + lp
    return torch.where(x == 0, F.softplus(-h + lp) - F.softplus(-h), nonzero)


def _pixelcnn_loss(raw: Tensor, x: Tensor, k: int) -> Tensor:
    """PixelCNN++'s discretized_mix_logistic_loss (Salimans et al. 2017, code), data on [0, 1] as lvm's."""
    w, loc, g = (t.movedim(-2, -1) for t in raw.unflatten(-1, (3, k, D)).unbind(-3))  # (..., D, K)
    log_scale = torch.log(F.softplus(g) + 1e-4)
    x = x.unsqueeze(-1)
    centred = x - loc
    inv = torch.exp(-log_scale)
    plus_in, min_in = inv * (centred + 0.5 / 255), inv * (centred - 0.5 / 255)
    cdf_plus, cdf_min = torch.sigmoid(plus_in), torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)
    log_one_minus_cdf_min = -F.softplus(min_in)
    cdf_delta = cdf_plus - cdf_min
    mid_in = inv * centred
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)
    inner = torch.where(
        cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - torch.log(torch.tensor(127.5))
    )
    log_probs = torch.where(x < 0.001, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, inner))
    return torch.logsumexp(log_probs + torch.log_softmax(w, -1), -1)


def _counts(g: torch.Generator) -> Tensor:
    return torch.poisson(torch.full((B, D), 2.0), generator=g) * (torch.rand(B, D, generator=g) > 0.4)


CASES: dict[str, Case] = {
    "poisson": ({"name": "poisson"}, 1, lambda r, x: td.Poisson(r.exp(), validate_args=False).log_prob(x), _counts),
    "negative_binomial": (
        {"name": "negative_binomial", "dispersion": "datapoint"}, 2,
        lambda r, x: td.NegativeBinomial(
            _blocks(r, 2)[1].exp(), logits=_blocks(r, 2)[0] - _blocks(r, 2)[1], validate_args=False
        ).log_prob(x),
        _counts,
    ),
    "zip": (
        {"name": "zip"}, 2,
        lambda r, x: _zero_inflated(td.Poisson(_blocks(r, 2)[0].exp(), validate_args=False).log_prob(x), _blocks(r, 2)[1], x),
        _counts,
    ),
    "zinb": (
        {"name": "zinb", "dispersion": "datapoint"}, 3,
        lambda r, x: _zero_inflated(
            td.NegativeBinomial(_blocks(r, 3)[1].exp(), logits=_blocks(r, 3)[0] - _blocks(r, 3)[1], validate_args=False).log_prob(x),
            _blocks(r, 3)[2], x,
        ),
        _counts,
    ),
    "categorical": (
        {"name": "categorical", "num_categories": 4}, 4,
        lambda r, x: td.Categorical(logits=r.unflatten(-1, (4, D)).movedim(-2, -1), validate_args=False).log_prob(x),
        lambda g: torch.randint(0, 4, (B, D), generator=g).float(),
    ),
    "beta": (
        {"name": "beta"}, 2,
        lambda r, x: td.Beta(
            torch.sigmoid(_blocks(r, 2)[0]) * (F.softplus(_blocks(r, 2)[1]) + 1e-3),
            torch.sigmoid(-_blocks(r, 2)[0]) * (F.softplus(_blocks(r, 2)[1]) + 1e-3), validate_args=False,
        ).log_prob(x),
        lambda g: torch.rand(B, D, generator=g).clamp(1e-3, 1 - 1e-3),
    ),
    "continuous_bernoulli": (
        {"name": "continuous_bernoulli"}, 1,
        lambda r, x: td.ContinuousBernoulli(logits=r, validate_args=False).log_prob(x),
        lambda g: torch.rand(B, D, generator=g),
    ),
    "student_t": (
        {"name": "student_t", "df": "per_output"}, 3,
        lambda r, x: td.StudentT(
            F.softplus(_blocks(r, 3)[2]) + 0.1, _blocks(r, 3)[0], F.softplus(_blocks(r, 3)[1]) + 1e-3, validate_args=False
        ).log_prob(x),
        lambda g: torch.randn(B, D, generator=g),
    ),
    "discretized_logistic": (
        {"name": "discretized_logistic", "num_components": 5}, 15,
        lambda r, x: _pixelcnn_loss(r, x, 5),
        lambda g: torch.randint(0, 256, (B, D), generator=g) / 255.0,
    ),
}  # fmt: skip


def _time(fn: Callable[[Tensor], Tensor], raw: Tensor) -> float:
    raw = raw.detach().requires_grad_()
    start = time.perf_counter()
    fn(raw).sum().backward()
    return time.perf_counter() - start


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES), help="likelihoods to time")
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/likelihoods.json"), help="JSON results file"
    )
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    rows = {}
    for name in args.only:
        spec, params, reference, data = CASES[name]
        g = torch.Generator().manual_seed(0)
        lik = create_likelihood(spec, (D,))
        raw = torch.randn(S, B, params * D, generator=g)
        x = data(g)
        ours = lambda r, lik=lik, x=x: lik(r).log_prob(x)  # noqa: E731
        theirs = lambda r, reference=reference, x=x: reference(r, x).sum(-1)  # noqa: E731
        # the same numbers (PixelCNN++ approximates bins of mass below 1e-5 by the density at their centre)
        torch.testing.assert_close(ours(raw), theirs(raw), rtol=1e-3, atol=1e-2)
        _time(ours, raw), _time(theirs, raw)  # warm-up
        times: dict[str, list[float]] = {"lvm": [], "torch": []}
        for r in range(args.repeats):
            for side in ("lvm", "torch") if r % 2 == 0 else ("torch", "lvm"):
                times[side].append(_time(ours if side == "lvm" else theirs, raw))
        ratios = [a / b for a, b in zip(times["lvm"], times["torch"], strict=True)]
        rows[name] = {
            "spec": spec,
            "raw_shape": [S, B, params * D],
            "reference": "PixelCNN++ loss in torch ops" if name == "discretized_logistic" else (
                "torch log_prob + scVI-style zero inflation" if name in ("zip", "zinb") else "torch.distributions class"
            ),
            "lvm_s": times["lvm"],
            "torch_s": times["torch"],
            "lvm_median_s": statistics.median(times["lvm"]),
            "torch_median_s": statistics.median(times["torch"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }  # fmt: skip
        row = rows[name]
        print(
            f"{name:22s} lvm {row['lvm_median_s']:.3f} s  reference {row['torch_median_s']:.3f} s  "
            f"lvm/reference {row['ratio_median']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})",
            flush=True,
        )
    result = {
        "what": "log_prob forward + backward on (100, 100, 784) per parameter, median of interleaved rounds",
        "note": "measured under load: a shared machine, other processes running (see load_avg)",
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "likelihoods": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['cpu']}, {result['torch_threads']} threads, load {load_before[0]:.1f}: measured under load; {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
