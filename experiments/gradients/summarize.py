"""Mean and sd over seeds of train.py's test NLL and snr.py's encoder SNR, per training estimator.

Reads ``results/runs/*.json`` (train.py), ``results/snr_runs.json`` (snr.py --runs) and
``results/snr.json`` (snr.py); writes ``results/summary.json`` and ``results/results.md``.

    python experiments/gradients/summarize.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for over_seeds
from over_seeds import fail, mean_sd  # noqa: E402

HERE = Path(__file__).resolve().parent
GRADIENTS = ("reparam", "dreg")


def summarise(runs: list[dict[str, Any]], snr_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per training estimator: seeds, test NLL, and the encoder SNR of each estimator on its models."""
    out: dict[str, Any] = {}
    for g in GRADIENTS:
        rs = sorted((r for r in runs if r["gradient"] == g), key=lambda r: r["seed"])
        if not rs:
            continue
        snr = {
            e: mean_sd([s["encoder"] for s in snr_rows if s["trained_with"] == g and s["gradient"] == e])
            for e in GRADIENTS
            if any(s["trained_with"] == g and s["gradient"] == e for s in snr_rows)
        }
        out[g] = {
            "seeds": [r["seed"] for r in rs],
            "epochs": rs[0]["epochs"],
            "k": rs[0]["k"],
            "test_images": rs[0]["test_images"],
            "eval_K": rs[0]["eval_K"],
            "test_nll": mean_sd([r["test_nll"] for r in rs]),
            "test_nll_stderr_over_images": [r["test_nll_stderr"] for r in rs],
            "final_val_bound": mean_sd([r["curve"]["bound"][-1][1] for r in rs]),
            "encoder_snr": snr,
            "train_seconds": mean_sd([r["train_seconds"] for r in rs]),
        }
    paired = [
        a["test_nll"] - b["test_nll"]
        for a in runs
        for b in runs
        if a["gradient"] == "reparam" and b["gradient"] == "dreg" and a["seed"] == b["seed"]
    ]
    return {
        "by_training_gradient": out,
        "nll_reparam_minus_dreg_per_seed": mean_sd(paired) if paired else None,
    }


def _pm(s: dict[str, Any], digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f}" + (f" ± {s['sd']:.{digits}f}" if s["sd"] is not None else " (one seed)")


def table(summary: dict[str, Any], sweep: dict[str, Any] | None) -> str:
    by = summary["by_training_gradient"]
    first = next(iter(by.values()))
    lines = [
        f"IWAE k = {first['k']}, MNIST 784-200-200-50 tanh, batch 20, {first['epochs']} epochs, seeds "
        f"{', '.join(map(str, first['seeds']))}; test NLL by importance sampling (K = {first['eval_K']}, "
        f"{first['test_images']:,} test images); encoder SNR at k = {first['k']} on 20 training images.",
        "",
        "| trained with | test NLL (nats, mean ± sd over seeds) | final validation L_64 | encoder SNR of reparam "
        "| encoder SNR of DReG | training s per run |",
        "|---|---|---|---|---|---|",
    ]
    for g, v in by.items():
        snr = v["encoder_snr"]
        lines.append(
            f"| {g} | **{_pm(v['test_nll'])}** | {_pm(v['final_val_bound'])} | "
            f"{_pm(snr['reparam'], 3) if 'reparam' in snr else '-'} | {_pm(snr['dreg'], 3) if 'dreg' in snr else '-'} | "
            f"{v['train_seconds']['mean']:.0f} |"
        )
    d = summary["nll_reparam_minus_dreg_per_seed"]
    if d:
        lines += ["", f"NLL(reparam) - NLL(DReG), paired by seed: {_pm(d)} nats (per seed: "
                      f"{', '.join(f'{v:+.2f}' for v in d['values'])})."]  # fmt: skip
    if sweep:
        lines += ["", f"SNR against K (`snr.png`; M = {sweep['batch']} images, {sweep['repeats']} estimates each, "
                      f"noise floor {sweep['rows'][0]['noise_floor']:.3f}):", "",
                  "| K | " + " | ".join(f"encoder {g}" for g in ("reparam", "stl", "dreg")) + " | decoder |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for k in sorted({r["num_samples"] for r in sweep["rows"]}):
            at = {r["gradient"]: r for r in sweep["rows"] if r["num_samples"] == k}
            enc = " | ".join(
                f"{at[g]['encoder']:.3f}" if g in at else "-" for g in ("reparam", "stl", "dreg")
            )
            lines.append(f"| {k} | {enc} | {next(iter(at.values()))['decoder']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=HERE / "results", help="train.py's and snr.py's --out")
    args = p.parse_args(argv)
    files = sorted((args.results / "runs").glob("*.json"))
    if not files:
        fail(f"no evaluated runs under {args.results / 'runs'}; run train.py first")
    runs = [json.loads(f.read_text()) for f in files]
    snr_file, sweep_file = args.results / "snr_runs.json", args.results / "snr.json"
    snr_rows = json.loads(snr_file.read_text())["rows"] if snr_file.exists() else []
    sweep = json.loads(sweep_file.read_text()) if sweep_file.exists() else None
    summary = summarise(runs, snr_rows)
    summary["command"] = "python experiments/gradients/summarize.py"
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = table(summary, sweep)
    (args.results / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
