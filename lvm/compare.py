"""``lvm compare``: log p(x) estimators against the number of samples K on a checkpoint's test set."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lvm.checkpoint import read_checkpoint
from lvm.errors import CommandParser
from lvm.estimators import create_estimator, list_estimators
from lvm.estimators.allocator import keep_freed_memory
from lvm.estimators.comparison import (
    COLUMNS,
    EXTRA_COLUMNS,
    collect,
    format_table,
    plot_rows,
    run_comparison,
    write_outputs,
)
from lvm.registry import PluginError

__all__ = ["COLUMNS", "build_parser", "format_table", "main", "plot_rows", "run_comparison", "write_outputs"]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,10,100; got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers; got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="lvm compare",
        description="Estimate log p(x) on the test set of a trained checkpoint with several estimators and "
        "numbers of samples K; print a table, write compare.json, compare.csv and compare.png.",
    )
    parser.add_argument("--ckpt", required=True, type=Path, help="Lightning checkpoint of an lvm VAE.")
    parser.add_argument(
        "--estimators",
        default="elbo,importance,prior",
        help=f"comma-separated estimator names (known: {', '.join(list_estimators())}).",
    )
    parser.add_argument(
        "--num-samples",
        default=[1, 10, 100, 1000, 5000],
        type=_int_list,
        help="comma-separated K, samples of z per datapoint (default 1,10,100,1000,5000).",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test datapoints.")
    parser.add_argument(
        "--data-config",
        type=Path,
        default=None,
        help="YAML with a 'data:' section as in LightningCLI configs (class_path, init_args). "
        "Default: config.yaml beside the checkpoint (or up to two folders above), else the "
        "data module hyperparameters saved in the checkpoint.",
    )
    parser.add_argument(
        "--data-class",
        default=None,
        help="data module class (e.g. lvm.data.MNISTDataModule or 'mnist') to build from the "
        "hyperparameters saved in the checkpoint, when they do not identify it.",
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
        "--wandb",
        action="store_true",
        help="also log the table and plot to W&B (mode $WANDB_MODE, default offline).",
    )
    parser.add_argument("--wandb-project", default="lvm", help="W&B project (default lvm).")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar.")
    return parser


def load_vae(path: Path, device: str) -> Any:
    """``VAE.load_from_checkpoint`` with ``weights_only=True``, else (with a warning) a full unpickle."""
    from lvm.vae import VAE

    read_checkpoint(path)  # a missing, empty, truncated or foreign file: an error naming it
    try:
        return VAE.load_from_checkpoint(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        print(
            f"lvm compare: warning: {path} holds objects beyond tensors and plain values ({err}); "
            f"loading it with full unpickling, so only do this for checkpoints you trust",
            file=sys.stderr,
        )
        return VAE.load_from_checkpoint(path, map_location=device, weights_only=False)


def _data_class(name: str) -> type:
    import lvm.data

    if name in lvm.data.DATAMODULES:
        return lvm.data.DATAMODULES[name]
    if "." not in name:
        if hasattr(lvm.data, name):
            return getattr(lvm.data, name)
        raise ValueError(
            f"unknown data module {name!r}; known: {', '.join(lvm.data.DATAMODULES)} or a dotted path"
        )
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _read_data_spec(path: Path) -> dict[str, Any]:
    import yaml

    cfg = yaml.safe_load(path.read_text()) or {}
    spec = cfg.get("data", cfg) if isinstance(cfg, dict) else None
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"{path}: expected a 'data:' section with 'class_path' (and 'init_args'); got {spec!r}"
        )
    return spec


def _saved_data_hparams(path: Path) -> dict[str, Any] | None:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return None
    hp = ckpt.get("datamodule_hyper_parameters")
    return dict(hp) if hp else None


def _matching_classes(hparams: dict[str, Any]) -> list[type]:
    """Registered data modules whose ``__init__`` takes exactly these keyword arguments."""
    import lvm.data

    found = []
    for cls in lvm.data.DATAMODULES.values():
        params = inspect.signature(cls.__init__).parameters
        required = {
            n
            for n, p in params.items()
            if n != "self"
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        if set(hparams) <= set(params) and required <= set(hparams):
            found.append(cls)
    return found


def load_datamodule(args: argparse.Namespace) -> Any:
    """The data module from --data-config, a config.yaml beside the checkpoint, or the checkpoint itself."""
    if args.data_config is not None:
        spec = _read_data_spec(args.data_config)
    else:
        spec = None
        if args.data_class is None:
            ckpt_dir = args.ckpt.resolve().parent
            for folder in (ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent):
                if (folder / "config.yaml").is_file():
                    spec = _read_data_spec(folder / "config.yaml")
                    print(f"lvm compare: data from {folder / 'config.yaml'}", file=sys.stderr)
                    break
        if spec is None:
            hparams = _saved_data_hparams(args.ckpt)
            classes = [_data_class(args.data_class)] if args.data_class else _matching_classes(hparams or {})
            if hparams is None or len(classes) != 1:
                raise ValueError(
                    f"cannot tell which data to evaluate {args.ckpt} on: pass --data-config PATH (a YAML "
                    f"with 'data: {{class_path: lvm.data.MNISTDataModule, init_args: {{...}}}}'), or "
                    f"--data-class NAME to use the data hyperparameters saved in the checkpoint ({hparams!r}"
                    + (f"; they fit {[c.__name__ for c in classes]}" if hparams and classes else "")
                    + ")"
                )
            spec = {"class_path": classes[0], "init_args": hparams}
    cls = spec["class_path"] if isinstance(spec["class_path"], type) else _data_class(str(spec["class_path"]))
    return cls(**dict(spec.get("init_args") or {}))


def _log_wandb(
    rows: Sequence[dict[str, Any]], png: Path, out: Path, project: str, meta: dict[str, Any]
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
    table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
    run.log({"compare/table": table, "compare/plot": wandb.Image(str(png))})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    """Run ``lvm compare``; returns the exit status (2 with a message for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, PluginError) as err:
        print(f"lvm compare: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    keep_freed_memory()  # the process's entry point: reuse the chunks' freed blocks (1.4-1.6x faster)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    for n in names:
        create_estimator(n)  # fail on an unknown name before loading anything
    vae = load_vae(args.ckpt, device)
    vae.eval()
    dm = load_datamodule(args)
    if hasattr(dm, "prepare_data"):
        dm.prepare_data()
    dm.setup("test")
    x, _ = collect(dm.test_dataloader(), 1)
    if tuple(x.shape[1:]) != tuple(vae.model.event_shape):
        raise ValueError(
            f"test datapoints have shape {tuple(x.shape[1:])}; the model expects "
            f"{tuple(vae.model.event_shape)} (check the data module's flatten option)"
        )
    rows = run_comparison(
        vae.model,
        dm.test_dataloader(),
        names,
        args.num_samples,
        args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    print(format_table(rows, bits_per_dim=args.bits_per_dim))
    out = args.out or args.ckpt.resolve().parent / "compare"
    meta = {
        "checkpoint": str(args.ckpt),
        "seed": args.seed,
        "device": device,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
    }
    paths = write_outputs(rows, out, meta)
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['png']}", file=sys.stderr)
    if args.wandb:
        _log_wandb(rows, paths["png"], out, args.wandb_project, meta)
    return 0
