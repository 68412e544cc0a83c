"""Run the main job (``lvm fit --config experiments/mnist/vae.yaml``) once per training seed.

Each seed trains for the config's fixed number of epochs in its own folder
``runs/mnist_vae_seed<S>`` and its output goes to ``<out>/seed<S>.log``; the test ELBO that the
job prints is collected into ``<out>/results.json`` with the mean and the standard deviation over
seeds, the wall time of each run (reported, never a budget) and the commit it ran at.

    python experiments/mnist/seeds.py                     # seeds 0 1 2
    python experiments/mnist/seeds.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
LINE = re.compile(
    r"\[lvm\] test ELBO: (?P<elbo>-?[\d.]+) nats per datapoint \(\+/- (?P<se>[\d.]+) s\.e\., n=(?P<n>\d+)\)"
)


def _config_for(seed: int, config: Path) -> str:
    """The config text with every ``runs/mnist_vae`` path moved to ``runs/mnist_vae_seed<seed>``."""
    text = config.read_text()
    return re.sub(r"runs/mnist_vae\b", f"runs/mnist_vae_seed{seed}", text)


def run_seed(seed: int, config: Path, out: Path) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(_config_for(seed, config))
    cmd = [sys.executable, "-m", "lvm.cli", "fit", "--config", f.name, "--seed_everything", str(seed)]
    cmd += ["--trainer.enable_progress_bar", "false"]  # the log keeps the epoch lines, not a progress bar
    log = out / f"seed{seed}.log"
    print("$", " ".join(cmd[1:]), f"> {log}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    Path(f.name).unlink()
    match = LINE.search(log.read_text())
    if rc != 0 or match is None:
        raise SystemExit(f"seed {seed}: lvm fit failed (exit status {rc}); see {log}")
    row = {
        "seed": seed,
        "test_elbo": float(match["elbo"]),
        "test_elbo_stderr": float(match["se"]),
        "n": int(match["n"]),
        "wall_s": round(wall, 1),
    }
    print(f"seed {seed}: test ELBO {row['test_elbo']:.3f} (+/- {row['test_elbo_stderr']:.3f}), {wall:.0f} s")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=HERE / "vae.yaml")
    parser.add_argument("--out", type=Path, default=HERE / "results_main")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(args.config.read_text())
    git = ["git", "-C", str(HERE)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "../../lvm"], capture_output=True, text=True
    )
    rows = [run_seed(s, args.config, args.out) for s in args.seeds]
    elbos = [r["test_elbo"] for r in rows]
    summary = {
        "command": "python experiments/mnist/seeds.py --seeds " + " ".join(map(str, args.seeds)),
        "config": str(args.config.relative_to(HERE.parent.parent)),
        "epochs": cfg["trainer"]["max_epochs"],
        "commit": commit,  # before the first seed; each seed imports lvm anew: leave lvm/ alone meanwhile
        "lvm_changed_locally": bool(changed.stdout.strip()),
        "seeds": args.seeds,
        "test_elbo_mean": round(statistics.mean(elbos), 3),
        "test_elbo_sd": round(statistics.stdev(elbos), 3) if len(elbos) > 1 else None,
        "runs": rows,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    sd = f" +/- {summary['test_elbo_sd']:.2f} sd" if summary["test_elbo_sd"] is not None else ""
    print(
        f"test ELBO over {len(rows)} seeds: {summary['test_elbo_mean']:.2f}{sd} nats; {args.out / 'results.json'}"
    )


if __name__ == "__main__":
    main()
