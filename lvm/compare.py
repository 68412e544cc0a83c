"""``lvm compare``: log p(x) estimators against the number of samples K on a checkpoint's test set."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lvm.checkpoint import DATAMODULE_KEY, init_arguments, load_vae
from lvm.comparison import compare_estimators
from lvm.errors import CommandParser
from lvm.estimators import create_estimator, list_estimators
from lvm.registry import Spec
from lvm.report import COLUMNS, EXTRA_COLUMNS, ComparisonRow, format_table, tail_warning, write_report

__all__ = ["build_parser", "estimator_specs", "int_list", "load_datamodule", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="lvm compare",
        description="Estimate log p(x) on the test set of a trained checkpoint with several estimators and "
        "numbers of samples K; print a table (mean log p(x), its standard error across datapoints, the "
        "mean Monte Carlo standard error of each datapoint's estimate, ESS, Pareto k of the importance "
        "weights), write compare.json, compare.csv and compare.png. Runs under torchrun (each process "
        "evaluates every W-th datapoint; rank 0 prints and writes).",
    )
    parser.add_argument("--ckpt", required=True, type=Path, help="Lightning checkpoint of an lvm VAE.")
    parser.add_argument(
        "--estimators",
        default="elbo,importance,prior",
        type=estimator_specs,
        help=f"comma-separated estimator names (known: {', '.join(list_estimators())}), or a YAML list "
        "of names and {name: ..., <options>} specs.",
    )
    parser.add_argument(
        "--num-samples",
        default=[1, 10, 100, 1000, 5000],
        type=int_list,
        help="comma-separated K, samples of z per datapoint (default 1,10,100,1000,5000).",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test datapoints.")
    parser.add_argument(
        "--data-config",
        type=Path,
        default=None,
        help="YAML with a 'data:' section as in LightningCLI configs (class_path, init_args). "
        "Default: the data module recorded in the checkpoint by lvm fit.",
    )
    parser.add_argument(
        "--data-class",
        default=None,
        help="for checkpoints that do not record their data module: its class (e.g. 'mnist' or "
        "lvm.data.MNISTDataModule), built from the data hyperparameters saved in the checkpoint.",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="datapoints per estimator call (default 100)."
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="samples per chunk (default: automatic)."
    )
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0).")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default <ckpt folder>/compare)."
    )
    parser.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu).")
    parser.add_argument(
        "--bits-per-dim", action="store_true", help="add NLL in bits per dimension to the table."
    )
    parser.add_argument(
        "--per-datapoint",
        action="store_true",
        help="also write each datapoint's index, log p(x), MC SE, Pareto k and ESS (JSON rows and "
        "compare_datapoints.csv).",
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the table and plot to W&B (mode $WANDB_MODE, default offline).",
    )
    parser.add_argument("--wandb-project", default="lvm", help="W&B project (default lvm).")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar.")
    return parser


def _data_class(name: str) -> type:
    """A data module class from a registered name or a dotted path."""
    import lightning as L

    import lvm.data

    if name in lvm.data.DATAMODULES:
        return lvm.data.DATAMODULES.get(name)
    module, _, attr = name.rpartition(".")
    if not module:
        raise ValueError(
            f"unknown data module {name!r}; known: {', '.join(lvm.data.DATAMODULES)} or a dotted path"
        )
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import data module {name!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, L.LightningDataModule)):
        raise ValueError(f"{name!r} is not a LightningDataModule class")
    return cls


def _read_data_spec(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"data config {path} does not exist")
    cfg = yaml.safe_load(path.read_text()) or {}
    spec = cfg.get("data", cfg) if isinstance(cfg, dict) else None
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"{path}: expected a 'data:' section with 'class_path' (and 'init_args'); got {spec!r}"
        )
    return spec


def load_datamodule(
    ckpt: dict[str, Any], data_config: Path | None = None, data_class: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The data module a checkpoint was trained with, and the spec it was built from.

    In order: ``data_config`` (a LightningCLI-style ``data:`` section); the class path and init
    arguments that ``lvm fit`` records in the checkpoint; ``data_class`` with the data module
    hyperparameters Lightning saves in the checkpoint (for checkpoints written before the record).

    Raises:
        ValueError: when none of these applies, or the class cannot be built from the arguments.
    """
    if data_config is not None:
        spec = _read_data_spec(data_config)
    elif ckpt.get(DATAMODULE_KEY):
        spec = ckpt[DATAMODULE_KEY]
    elif data_class is not None:
        spec = {"class_path": data_class, "init_args": dict(ckpt.get("datamodule_hyper_parameters") or {})}
    else:
        raise ValueError(
            "the checkpoint does not record its data module (it was saved before lvm recorded it, or "
            "without a data module): pass --data-config PATH (a YAML with 'data: {class_path: "
            "lvm.data.MNISTDataModule, init_args: {...}}') or --data-class NAME to build NAME from the "
            f"data hyperparameters saved in the checkpoint ({ckpt.get('datamodule_hyper_parameters')!r})"
        )
    cls = _data_class(str(spec["class_path"]))
    init_args = init_arguments(spec.get("init_args") or {})  # also for records that kept LightningCLI's keys
    try:
        return cls(**init_args), {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": init_args,
        }
    except TypeError as err:
        raise ValueError(
            f"cannot build {cls.__name__} from {init_args!r}: {err}; pass --data-config with its arguments"
        ) from err


def _setup_distributed(device: str | None) -> tuple[str, bool]:
    """Join the torchrun process group if there is one; (this process's device, whether we joined)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = (device is None and torch.cuda.is_available()) or (device or "").startswith("cuda")
    if world > 1 and not torch.distributed.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        return device or "cpu", True
    return device or ("cuda" if cuda else "cpu"), False


def _log_wandb(
    rows: Sequence[ComparisonRow], png: Path, out: Path, project: str, meta: dict[str, Any]
) -> None:
    import wandb

    run = wandb.init(
        project=project,
        job_type="compare",
        dir=str(out),
        config=meta,
        mode=os.environ.get("WANDB_MODE", "offline"),
    )
    columns = [*COLUMNS, *EXTRA_COLUMNS]
    table = wandb.Table(columns=columns, data=[[getattr(r, c) for c in columns] for r in rows])
    run.log({"compare/table": table, "compare/plot": wandb.Image(str(png))})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    """Run ``lvm compare``; returns the exit status (2 with a one-line message for bad input)."""
    args = build_parser().parse_args(argv)
    device, joined = _setup_distributed(args.device)
    try:  # user errors become one line in lvm.errors.run_command, the entry point's wrapper
        return _run(args, device)
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def _run(args: argparse.Namespace, device: str) -> int:
    for spec in args.estimators:
        create_estimator(spec)  # fail on an unknown name before loading anything
    vae, ckpt = load_vae(args.ckpt, device)
    dm, data_spec = load_datamodule(ckpt, args.data_config, args.data_class)
    rows = compare_estimators(
        vae,
        dm,
        args.estimators,
        args.num_samples,
        seed=args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return 0
    print(format_table(rows, bits_per_dim=args.bits_per_dim))
    warning = tail_warning(rows)
    if warning:
        print(warning)
    out = args.out or args.ckpt.resolve().parent / "compare"
    meta = {
        "checkpoint": str(args.ckpt),
        "data": data_spec,
        "seed": args.seed,
        "device": device,
        "processes": world,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
    }
    paths = write_report(rows, out, meta, per_datapoint=args.per_datapoint)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if args.wandb:
        _log_wandb(rows, paths["png"], out, args.wandb_project, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
