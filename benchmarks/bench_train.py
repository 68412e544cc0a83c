"""Benchmark: one training epoch of one case (lvm or a hand-written baseline), run in its own process.

Cases (all train the same network on the same random binary data with the same seed):

- ``handwritten``: the minimal plain-torch loop of ``baselines.py``, batches gathered from the
  in-memory tensor with a permutation; the yardstick for ``lvm``.
- ``handwritten_tuned``: the same loop with the kernels lvm picks (fused Adam, lvm's log1p-free
  Bernoulli log-density), so that ``lvm / handwritten_tuned`` is the framework's own overhead.
- ``handwritten_dataloader``: the same loop through a default ``DataLoader(TensorDataset)``.
- ``lightning_default``: a minimal ``LightningModule`` around the same network, default ``DataLoader``.
- ``lvm``: ``lvm.VAE`` (mlp 200-200 tanh, latent 50, bernoulli, elbo) with ``TensorDataModule``.
- ``handwritten_conv`` / ``lvm_conv``: lvm's default conv encoder / transposed-conv decoder on
  (1, 28, 28) images, the throughput case.
- ``pythae`` / ``pyro``: the peers, when installed (``peers.py``; not dependencies of lvm).

What is timed: ``epoch_s`` is the wall time of the training epoch alone, from the start of the
epoch (for Lightning, ``on_train_epoch_start``; the loader's iterator, its permutation and
gather are inside) to its end (``on_train_epoch_end``; after the optimiser step of the last
batch). Process start, imports, data creation, model construction and ``Trainer`` setup are
outside it; ``fit_s`` (the whole ``trainer.fit`` call, or the hand-written epoch loop) is
reported for information. ``peak_rss_mb`` is the process's peak resident memory.

Usage:
    python benchmarks/bench_train.py --case lvm --json /tmp/lvm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import MLPVAE, ConvVAE, make_binary_data, train_epoch_dataloader, train_epoch_sliced  # noqa: E402

CASES = (
    "handwritten", "handwritten_tuned", "handwritten_dataloader", "lightning_default", "lvm",
    "handwritten_conv", "lvm_conv", "pythae", "pyro",
)  # fmt: skip
IMAGE = (1, 28, 28)
MLP = {"name": "mlp", "hidden": [200, 200], "activation": "tanh"}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trainer_kwargs(epochs: int) -> dict[str, Any]:
    """The same quiet Trainer for every Lightning case: CPU, no logger, checkpoint, bar or validation."""
    return dict(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip


class Clock:
    """Wall and CPU (all threads of this process) seconds of each timed epoch."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self._t0 = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._t0[0])
        self.cpu.append(time.process_time() - self._t0[1])


def _epoch_timer(clock: Clock) -> Any:
    """A Lightning callback that times each training epoch with ``clock``."""
    import lightning as L

    class EpochTimer(L.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            clock.start()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            clock.stop()

    return EpochTimer()


def run_handwritten(x: torch.Tensor, args: argparse.Namespace, clock: Clock, conv: bool, tuned: bool) -> None:
    model = ConvVAE(IMAGE) if conv else MLPVAE()
    model.tuned = tuned
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=tuned or None)
    for _ in range(args.epochs):
        clock.start()
        train_epoch_sliced(model, opt, x, args.batch_size)
        clock.stop()


def run_handwritten_dataloader(x: torch.Tensor, args: argparse.Namespace, clock: Clock) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    model = MLPVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x), batch_size=args.batch_size, shuffle=True)
    for _ in range(args.epochs):
        clock.start()
        train_epoch_dataloader(model, opt, loader)
        clock.stop()


def run_lightning_default(x: torch.Tensor, args: argparse.Namespace, clock: Clock) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Minimal(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.vae = MLPVAE()

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = self.vae.loss(batch[0])
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    loader = DataLoader(TensorDataset(x), batch_size=args.batch_size, shuffle=True)
    L.Trainer(callbacks=[_epoch_timer(clock)], **_trainer_kwargs(args.epochs)).fit(Minimal(), loader)


def run_lvm(x: torch.Tensor, args: argparse.Namespace, clock: Clock, conv: bool) -> None:
    import lightning as L

    import lvm
    from lvm.data import TensorDataModule

    if conv:
        vae = lvm.VAE(
            data_shape=list(IMAGE),
            latent_dim=50,
            encoder="conv",
            decoder="conv_transpose",
            likelihood="bernoulli",
            objective="elbo",
        )
    else:
        vae = lvm.VAE(
            data_shape=[784],
            latent_dim=50,
            encoder=MLP,
            decoder=MLP,
            likelihood="bernoulli",
            objective="elbo",
        )
    dm = TensorDataModule(x, batch_size=args.batch_size, seed=args.seed)
    L.Trainer(callbacks=[_epoch_timer(clock)], **_trainer_kwargs(args.epochs)).fit(vae, datamodule=dm)


def machine() -> dict[str, Any]:
    import lightning

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--epochs", type=int, default=1, help="epochs to train and time (default 1)")
    parser.add_argument("--n", type=int, default=60_000, help="datapoints (default 60000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads (default 0: not called, torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the result here (else print it)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    conv = args.case.endswith("_conv")
    x = make_binary_data(args.n, IMAGE if conv else (784,), seed=args.seed)
    rss_before = peak_rss_mb()
    clock = Clock()
    t0 = time.perf_counter()
    if args.case in ("handwritten", "handwritten_tuned", "handwritten_conv"):
        run_handwritten(x, args, clock, conv, tuned=args.case == "handwritten_tuned")
    elif args.case == "handwritten_dataloader":
        run_handwritten_dataloader(x, args, clock)
    elif args.case == "lightning_default":
        run_lightning_default(x, args, clock)
    elif args.case in ("pythae", "pyro"):
        import peers

        (peers.run_pythae if args.case == "pythae" else peers.run_pyro)(x, args, clock)
    else:
        run_lvm(x, args, clock, conv)
    fit_s = time.perf_counter() - t0
    assert len(clock.wall) == args.epochs, f"timed {len(clock.wall)} epochs, expected {args.epochs}"
    result = {
        "case": args.case,
        "n": args.n,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "epoch_s": clock.wall,
        "epoch_cpu_s": clock.cpu,
        "fit_s": fit_s,
        "datapoints_per_s": args.n / clock.wall[0],
        "peak_rss_mb_data": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
