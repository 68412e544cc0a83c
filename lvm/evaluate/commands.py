"""``lvm compare`` and ``lvm bdmc``: the command-line front ends of evaluating a trained checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lvm.errors import USER_ERRORS, CommandParser, debug_requested, one_line, run_command
from lvm.estimators import list_estimators
from lvm.estimators.ais import SCHEDULES, STARTS
from lvm.evaluate import report
from lvm.evaluate.loop import process_group, torchrun_world
from lvm.evaluate.restore import load_datamodule, load_vae
from lvm.evaluate.runner import build_estimators, check_bdmc, compare_estimators, run_bdmc
from lvm.registry import Spec

__all__ = [
    "bdmc_command",
    "bdmc_main",
    "bdmc_parser",
    "compare_command",
    "compare_main",
    "compare_parser",
    "estimator_specs",
    "int_list",
    "resolve_device",
    "run",
]


def int_list(text: str) -> list[int]:
    """``"1,10,100"`` as positive integers (an argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,10,100; got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers; got {text!r}")
    return values


def estimator_specs(text: str) -> list[Spec]:
    """``"elbo,importance"``, or a YAML list such as ``"[elbo, {name: importance, chunk_size: 50}]"``."""
    if not text.lstrip().startswith("["):
        return [n.strip() for n in text.split(",") if n.strip()]
    import yaml

    try:
        specs = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a YAML list of estimators: {text!r}") from err
    if not isinstance(specs, list) or not all(
        isinstance(s, str) or (isinstance(s, dict) and "name" in s) for s in specs
    ):
        raise argparse.ArgumentTypeError(
            f"each estimator must be a name or a {{name: ...}} mapping; got {text!r}"
        )
    return specs


def _parser(prog: str, description: str, out: str) -> tuple[CommandParser, Callable[..., Any]]:
    """A parser with the options both commands share (checkpoint, output, device, seed, chunks, progress)."""
    parser = CommandParser(prog=prog, description=description)
    add = parser.add_argument
    add("--ckpt", required=True, type=Path, help="Lightning checkpoint of an lvm VAE.")
    add(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the checkpoint in full even where it needs more than tensors and plain values; "
        "this runs whatever code the file asks for: only for checkpoints you made yourself.",
    )
    add("--out", type=Path, default=None, help=f"output folder (default <ckpt folder>/{out}).")
    add("--device", default=None, help="torch device (default cuda if available, else cpu).")
    add("--chunk-size", type=int, default=None, help="samples or chains per chunk (default: automatic).")
    add("--no-progress", action="store_true", help="hide the progress bar.")
    return parser, add


def compare_parser() -> CommandParser:
    """The options of ``lvm compare``."""
    parser, add = _parser(
        "lvm compare",
        "Estimate log p(x) on the test set of a trained checkpoint with several estimators and "
        "numbers of samples K; print a table (mean log p(x), its standard error across datapoints, the "
        "mean Monte Carlo standard error of each datapoint's estimate, ESS, Pareto k of the importance "
        "weights), write compare.json, compare.csv and compare.png. Runs under torchrun (torchrun ... -m "
        "lvm.cli compare ...: each process evaluates every W-th datapoint; rank 0 prints and writes).",
        "compare",
    )
    add("--estimators", default="elbo,importance,prior", type=estimator_specs,
        help=f"comma-separated estimator names (known: {', '.join(list_estimators())}), or a YAML list "
        "of names and {name: ..., <options>} specs.")  # fmt: skip
    add("--num-samples", default=[1, 10, 100, 1000, 5000], type=int_list,
        help="comma-separated K, samples of z per datapoint (default 1,10,100,1000,5000).")  # fmt: skip
    add("--limit", type=int, default=None, help="use only the first N test datapoints.")
    add("--data-config", type=Path, default=None,
        help="YAML with a 'data:' section as in LightningCLI configs (class_path, init_args). Default: the "
        "data module recorded in the checkpoint by lvm fit, whose files must be unchanged.")  # fmt: skip
    add("--data-class", default=None,
        help="for checkpoints that do not record their data module: its registered name or class (e.g. "
        "'mnist' or lvm.data.MNISTDataModule), built from the data hyperparameters saved in the checkpoint.")  # fmt: skip
    add("--batch-size", type=int, default=100, help="datapoints per estimator call (default 100).")
    add("--seed", type=int, default=0, help="evaluation seed (default 0).")
    add("--bits-per-dim", action="store_true", help="add NLL in bits per dimension to the table.")
    add("--per-datapoint", action="store_true",
        help="also write each datapoint's index, log p(x), MC SE, Pareto k and ESS (JSON rows and "
        "compare_datapoints.csv).")  # fmt: skip
    add("--wandb", action="store_true",
        help="also log the table and plot to W&B (mode $WANDB_MODE, default offline).")  # fmt: skip
    add("--wandb-project", default="lvm", help="W&B project (default lvm).")
    return parser


def bdmc_parser() -> CommandParser:
    """The options of ``lvm bdmc``."""
    parser, add = _parser(
        "lvm bdmc",
        "Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015): simulate (z, x) from a "
        "trained checkpoint's model, run forward AIS (a stochastic lower bound on log p(x)) and reverse AIS "
        "from the exact z (a stochastic upper bound) for each T, evaluate each estimator on the same x, "
        "print the sandwich and each estimator's distance to it; write bdmc.json, bdmc_bounds.csv, "
        "bdmc_estimators.csv and bdmc.png. Runs in one process.",
        "bdmc",
    )
    add("--num-datapoints", type=int, default=100, help="N, datapoints to simulate (default 100).")
    add(
        "--steps",
        type=int_list,
        default=[100, 1000],
        help="comma-separated T, annealing steps (default 100,1000).",
    )
    add("--chains", type=int, default=10, help="AIS chains per datapoint and direction (default 10).")
    add("--estimators", type=estimator_specs, default=["elbo", "importance"],
        help=f"estimators to place in the sandwich: comma-separated names (known: {', '.join(list_estimators())}) "
        "or a YAML list of names and {name: ..., <options>} specs (default elbo,importance).")  # fmt: skip
    add("--num-samples", type=int_list, default=[1, 100, 1000],
        help="comma-separated K of the estimators (default 1,100,1000).")  # fmt: skip
    add("--schedule", choices=SCHEDULES, default="sigmoid", help="annealing schedule (default sigmoid).")
    add("--start", choices=STARTS, default="posterior",
        help="AIS start and end: q(z|x) or the prior (default posterior).")  # fmt: skip
    add("--leapfrog-steps", type=int, default=10, help="leapfrog steps per HMC transition (default 10).")
    add("--batch-size", type=int, default=100, help="datapoints per AIS batch (default 100).")
    add("--seed", type=int, default=0,
        help="seed of the simulation and of AIS; the estimators use seed + 1 (default 0).")  # fmt: skip
    return parser


def resolve_device(name: str | None) -> torch.device:
    """The torch device ``--device`` names (default: cuda if available, else cpu), checked to exist here.

    Raises:
        ValueError: for a name torch does not know, or a CUDA device this machine does not have.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name!r} is not a torch device ({err}); use cpu or cuda") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: this machine has no CUDA device; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    return device


def _output_folder(out: Path | None, ckpt: Path, name: str) -> Path:
    """``out`` or ``<ckpt folder>/<name>``, checked before any work to be a folder or creatable as one.

    Raises:
        NotADirectoryError: if it, or a folder it would be made in, is a file.
    """
    folder = out if out is not None else ckpt.resolve().parent / name
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise NotADirectoryError(f"output folder {folder} {what}; --out takes a folder")
    return folder


def _process_device(device: torch.device) -> torch.device:
    """Under torchrun, a CUDA ``device`` becomes this process's own GPU, cuda:LOCAL_RANK."""
    if torchrun_world() > 1 and device.type == "cuda":
        local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= count:
            raise ValueError(
                f"torchrun process {local} of this node has no GPU of its own: the machine has {count} CUDA "
                f"device(s); start at most {count} per node (--nproc-per-node) or use --device cpu"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return device


def compare_main(argv: list[str] | None = None) -> int:
    """Run ``lvm compare``; user errors propagate to :func:`run` (one line, exit status 2)."""
    return compare_command(compare_parser().parse_args(argv))


def compare_command(args: argparse.Namespace) -> int:
    """``lvm compare`` with parsed arguments: check them, read the checkpoint and its data, estimate, report."""
    out = _output_folder(args.out, args.ckpt, "compare")
    device = _process_device(resolve_device(args.device))
    build_estimators(args.estimators, [1])  # bad input fails before the checkpoint is read
    vae, ckpt = load_vae(args.ckpt, device, trust=args.trust_checkpoint)  # errors here: before the group
    dm, data_spec = load_datamodule(ckpt, args.data_config, args.data_class, source=f"checkpoint {args.ckpt}")
    with process_group(device) as (world, rank):
        rows = compare_estimators(vae, dm, args.estimators, args.num_samples, seed=args.seed, limit=args.limit,
                                  batch_size=args.batch_size, chunk_size=args.chunk_size,
                                  progress=not args.no_progress)  # fmt: skip
    if rank != 0:
        return 0
    print(report.format_table(rows, bits_per_dim=args.bits_per_dim))
    warning = report.tail_warning(rows)
    if warning:
        print(warning)
    meta = {"checkpoint": str(args.ckpt), "data": data_spec, "seed": args.seed, "device": str(device),
            "processes": world, "limit": args.limit, "batch_size": args.batch_size, "torch": torch.__version__}  # fmt: skip
    paths = report.write_report(rows, out, meta, per_datapoint=args.per_datapoint)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if args.wandb:
        report.log_wandb(rows, paths["png"], out, args.wandb_project, meta)
    return 0


def bdmc_main(argv: list[str] | None = None) -> int:
    """Run ``lvm bdmc``; user errors propagate to :func:`run` (one line, exit status 2)."""
    return bdmc_command(bdmc_parser().parse_args(argv))


def bdmc_command(args: argparse.Namespace) -> int:
    """``lvm bdmc`` with parsed arguments: check them, read the checkpoint, run the sandwich, report."""
    out = _output_folder(args.out, args.ckpt, "bdmc")
    device = resolve_device(args.device)
    ais_options = {"schedule": args.schedule, "start": args.start, "leapfrog_steps": args.leapfrog_steps}
    check_bdmc(args.num_datapoints, args.steps, args.chains, args.estimators, args.num_samples,
               args.batch_size, args.chunk_size, ais_options)  # fmt: skip  # bad input: before the checkpoint is read
    vae, _ = load_vae(args.ckpt, device, trust=args.trust_checkpoint)
    bounds, rows = run_bdmc(vae.model, args.num_datapoints, args.steps, args.chains, args.estimators,
                            args.num_samples, seed=args.seed, batch_size=args.batch_size,
                            chunk_size=args.chunk_size, progress=not args.no_progress, **ais_options)  # fmt: skip
    print(report.format_bdmc_tables(bounds, rows))
    meta = {"checkpoint": str(args.ckpt), "num_datapoints": args.num_datapoints, "chains": args.chains,
            "seed": args.seed, "estimator_seed": args.seed + 1, **ais_options, "device": str(device),
            "torch": torch.__version__}  # fmt: skip
    paths = report.write_bdmc_report(bounds, rows, out, meta)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def run(prog: str, main: Callable[[list[str]], int], argv: list[str]) -> int:
    """``main(argv)`` with user errors as one line and exit status 2 (:func:`lvm.errors.run_command`).

    Under torchrun (``WORLD_SIZE`` > 1) every process would print the same error and hint, so
    each prints one line, naming its rank, and no hint; ``--debug`` keeps the traceback.
    """
    world = torchrun_world()
    debug, rest = debug_requested(argv)
    if world <= 1 or debug:
        return run_command(prog, main, argv)
    try:
        return main(rest)
    except USER_ERRORS as err:
        rank = os.environ.get("RANK", "?")
        print(f"{prog}: error (rank {rank} of {world}): {one_line(err)}", file=sys.stderr)
        return 2
