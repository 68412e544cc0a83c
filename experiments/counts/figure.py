"""The README's figure: held-out log-likelihoods of every part of the count experiment, seeds as error bars.

Reads ``results/{digits,baseball,scvi_side_by_side,mixed}.json`` and writes ``results/counts.png``:

1. Poisson, NB and ZINB VAEs on digits and baseball: held-out log p(x) per row minus that of the
   independent per-column NB fits (mean and sd over seeds);
2. lvm and scVI on ``synthetic_iid`` and on baseball (with the observed library size): held-out
   log p(x | l) per row, mean and sd over seeds (on ``synthetic_iid`` also lvm without library
   size and the true log p(x));
3. the mixed table: each column's held-out log-likelihood under the composite VAE minus that of
   its independent fit, the conditional log p(x_j | x_-j) and the marginal log p(x_j).

    python experiments/counts/figure.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LIKELIHOODS = {"poisson": "Poisson", "negative_binomial": "NB", "zinb": "ZINB"}


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def likelihood_panel(ax: plt.Axes) -> None:
    width = 0.25
    for t, table in enumerate(("digits", "baseball")):
        r = load(table)
        base = r["per_column_nb_baseline"]["test_log_px_mean"]
        for i, (lik, label) in enumerate(LIKELIHOODS.items()):
            s = r["summary"][lik]
            ax.bar(t + (i - 1) * width, s["mean"] - base, width, yerr=s["sd"], capsize=3, color=f"C{i}",
                   label=label if t == 0 else None)  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks([0, 1], ["digits (64 cols)", "baseball (17 cols)"])
    ax.set_ylabel("held-out log p(x) - per-column NB fits\n(nats per row, mean ± sd over 3 seeds)")
    ax.set_title("VAE likelihoods vs no latent")
    ax.legend(fontsize=8)


def side_panel(ax: plt.Axes, table: str) -> None:
    t = load("scvi_side_by_side")["tables"][table]
    s = t["summary"]
    models = [("lvm", "lvm ZINB, l"), ("scvi", "scVI ZINB, l")]
    if "lvm_no_size_factor" in s:
        models.append(("lvm_no_size_factor", "lvm ZINB, no l"))
    for i, (key, _label) in enumerate(models):
        ax.errorbar(i, s[key]["mean"], yerr=s[key]["sd"], fmt="o", capsize=4, color=f"C{i + 3}")
    ax.set_xticks(range(len(models)), [m[1] for m in models], rotation=20, fontsize=8)
    ax.margins(y=0.3)
    if "true_log_px_mean" in s:
        ax.axhline(s["true_log_px_mean"], color="k", ls="--", lw=0.8, label="true log p(x)")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xlim(-0.5, len(models) - 0.5)
    ax.set_ylabel("held-out log p(x | l), nats per row")
    ax.set_title(f"lvm vs scVI: {table}\n{t['epochs']} epochs, 3 seeds", fontsize=10)


def mixed_panel(ax: plt.Axes) -> None:
    r = load("mixed")
    cols, base, s = r["columns"], r["baseline"]["per_column"], r["summary"]
    width = 0.4
    for i, (kind, label) in enumerate((("conditional", "log p(x_j | x_-j)"), ("marginal", "log p(x_j)"))):
        ax.bar([j + (i - 0.5) * width for j in range(len(cols))], [s[kind][c]["mean"] - base[c] for c in cols],
               width, yerr=[s[kind][c]["sd"] for c in cols], capsize=2, color=f"C{i + 6}", label=label)  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(cols)), cols, rotation=70, fontsize=7)
    ax.set_ylabel("VAE - independent fit, nats per row")
    ax.set_title("NMES1988, composite VAE, per column")
    ax.legend(fontsize=8)


def main() -> int:
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1.1, 0.8, 0.7, 2.2]})
    likelihood_panel(axes[0])
    side_panel(axes[1], "synthetic_iid")
    side_panel(axes[2], "baseball")
    mixed_panel(axes[3])
    fig.tight_layout()
    out = RESULTS / "counts.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
