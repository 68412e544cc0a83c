"""The ``lvm`` command: fit/validate/test (LightningCLI), ``compare``, ``bdmc``, ``configs``; one line per user error."""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import textwrap
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from lvm.errors import run_command

__all__ = ["bundled_configs", "main", "resolve_config"]  # and LVMCLI, imported on first use

_SUBCOMMANDS = ("fit", "validate", "test")
#: Load a ``--ckpt_path`` that needs more than ``torch.load(weights_only=True)``: runs its code.
TRUST_FLAG = "--trust-checkpoint"
_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def _description() -> str:
    from lvm.encoders import DECODERS, ENCODERS
    from lvm.estimators import ESTIMATORS
    from lvm.likelihoods import LIKELIHOODS

    parts = [
        "Train and evaluate latent variable models. Parts are chosen by registry name in the "
        "config (model.encoder / model.decoder / model.likelihood: a name or {name: ..., <kwargs>}).",
        "",
        f"likelihoods: {LIKELIHOODS.describe()}",
        f"encoders:    {ENCODERS.describe()}",
        f"decoders:    {DECODERS.describe()}",
        f"estimators:  {ESTIMATORS.describe()}",
        f"configs:     {', '.join(bundled_configs())} (bundled: lvm fit --config NAME; lvm configs shows paths)",
        "",
        "Subcommands: fit, validate, test (Lightning: lvm fit --help), compare (log p(x) estimators "
        "side by side: lvm compare --help), bdmc (a bidirectional Monte Carlo sandwich of log p(x) on "
        "data simulated from a checkpoint: lvm bdmc --help), configs (the bundled configs and their paths).",
        "Errors are one line; --debug (or LVM_DEBUG=1) shows the traceback.",
        f"Checkpoints load as tensors and plain values only; {TRUST_FLAG} loads one that holds other "
        "objects, which runs code from the file: only for checkpoints you made.",
        "Example: lvm fit --config mnist_vae",
    ]
    return "\n".join(
        textwrap.fill(p, 100, subsequent_indent=" " * 13 if ":" in p[:13] else "") for p in parts
    )


def bundled_configs() -> dict[str, Path]:
    """The experiment configs shipped inside the package (``lvm/configs/*.yaml``), by name."""
    folder = resources.files("lvm") / "configs"
    return {Path(f.name).stem: Path(str(f)) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}  # fmt: skip


def resolve_config(value: str) -> str:
    """``value`` if it is a file, else the path of the bundled config of that name.

    Raises:
        FileNotFoundError: for neither, listing the bundled names.
    """
    if os.path.exists(value) or not re.fullmatch(r"[\w.-]+", value):
        return value
    known = bundled_configs()
    name = value[:-5] if value.endswith(".yaml") else value
    if name in known:
        return str(known[name])
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(
        f"config {value!r} is neither a file nor a bundled config.{hint} Bundled: {', '.join(known)}"
    )


def _configs_command(args: list[str]) -> int:
    if args:
        raise ValueError(f"lvm configs takes no arguments; got {' '.join(args)}")
    for name, path in bundled_configs().items():
        print(f"{name}\t{path}")
    return 0


def _batch_counts(args: list[str]) -> dict[str, int]:
    """``--trainer.limit_*_batches N`` given as an integer on the command line or in a ``--config`` YAML."""
    import yaml

    counts: dict[str, int] = {}
    pairs = []
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        pairs.append((key, value))
    for key, value in pairs:
        if key == "--config" and os.path.isfile(value):
            with open(value) as f:
                trainer = (yaml.safe_load(f) or {}).get("trainer") or {}
            if isinstance(trainer, dict):
                counts.update({k: v for k, v in trainer.items() if k in _LIMITS and type(v) is int})
        elif key.removeprefix("--trainer.") in _LIMITS and re.fullmatch(r"\d+", value):
            counts[key.removeprefix("--trainer.")] = int(value)
    return counts


def _print_help() -> int:
    print(
        "usage: lvm [-h] {fit,validate,test,compare,bdmc,configs} ...   (lvm SUBCOMMAND --help for its options)\n"
    )
    print(_description())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lvm`` console script: one line on stderr and status 2 for a user error.

    ``--debug`` anywhere on the command line, or ``LVM_DEBUG=1``, shows the traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("compare", "bdmc"):
        from lvm.evaluate.commands import bdmc_main, compare_main, run

        return run(f"lvm {args[0]}", compare_main if args[0] == "compare" else bdmc_main, args[1:])
    if args and args[0] == "configs":
        return run_command("lvm configs", _configs_command, args[1:])
    if [a for a in args if a != "--debug"] in (["-h"], ["--help"]):
        return _print_help()  # without importing Lightning: a few seconds faster
    return run_command("lvm", _lightning_main, args)


def _lightning_main(args: list[str]) -> int:
    trust = TRUST_FLAG in args  # lvm's own flag, read before LightningCLI sees the arguments
    args = [a for a in args if a != TRUST_FLAG]
    for i, arg in enumerate(args):  # a bundled config by name: --config mnist_vae
        if arg == "--config" and i + 1 < len(args):
            args[i + 1] = resolve_config(args[i + 1])
        elif arg.startswith("--config="):
            args[i] = "--config=" + resolve_config(arg.partition("=")[2])
    os.environ.setdefault("WANDB_MODE", "offline")
    from lightning.pytorch import LightningDataModule

    from lvm.lightning_cli import LVMCLI, help_formatter
    from lvm.vae import VAE

    handlers = [
        h
        for name in ("lightning.pytorch", "lightning.fabric")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler) and h.stream is sys.stderr
    ]
    quiet = _DropAdvertisements()
    saved_argv, sys.argv = sys.argv, [sys.argv[0], *args]  # LightningCLI warns when args= and argv differ
    try:
        with warnings.catch_warnings():
            ignore_misleading_warnings()
            for h in handlers:  # progress on stdout, problems on stderr
                h.setStream(sys.stdout)
                h.addFilter(quiet)
            _run_cli(LVMCLI, VAE, LightningDataModule, help_formatter, args, trust)
    finally:
        sys.argv = saved_argv
        for h in handlers:
            h.setStream(sys.stderr)
            h.removeFilter(quiet)
    return 0


class _DropAdvertisements(logging.Filter):
    """Drop Lightning's "Tip: try installing ..." lines: advice about other products, not about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: " not in record.getMessage()


def ignore_misleading_warnings() -> None:
    """Filter Lightning warnings that do not apply to lvm runs (use inside ``warnings.catch_warnings``).

    Validation and test metrics are torchmetrics states summed over ranks before they are logged,
    so the advice to log epoch-level values with ``sync_dist=True`` (printed once per key in a DDP
    run) does not apply; and the seed Lightning picks when the config sets none is printed anyway.
    """
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\(.*sync_dist=True")
    warnings.filterwarnings("ignore", message=r"No seed found, seed set to")
    # A resumed run writes into its own checkpoint folder; a new run into a folder with
    # checkpoints is refused before this point (lvm.run_folder.refuse_old_checkpoints).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Raised by torch inside Lightning's own code (lightning.pytorch.utilities._pytree), on every
    # run; nothing an lvm user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Printed by `lvm test --ckpt_path`: evaluation needs none of the callbacks that trained it.
    warnings.filterwarnings(
        "ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create"
    )


def _run_cli(cli: type, model: type, data: type, formatter: type, args: list[str], trust: bool) -> None:
    no_exit = {"exit_on_error": False}
    cli(
        model,
        data,
        subclass_mode_data=True,
        args=None,
        batch_counts=_batch_counts(args),
        trust_checkpoint=trust,
        parser_kwargs={
            "prog": "lvm",
            "description": _description(),
            "formatter_class": formatter,
            **no_exit,
            **{name: dict(no_exit) for name in _SUBCOMMANDS},
        },
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def __getattr__(name: str) -> Any:
    if name == "LVMCLI":
        from lvm.lightning_cli import LVMCLI

        return LVMCLI
    raise AttributeError(f"module 'lvm.cli' has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
