"""
Multi-GPU and multi-node runs: torchrun, SLURM
==============================================

Training and evaluation run under Lightning's DDP. Each process takes its own shard of the
data, and the validation and test means are torchmetrics sum states reduced across processes,
so the logged numbers are the same dataset means as on one process. Metrics, figures and
tables come from rank 0 only. Batch sizes are per process: W processes train on an effective
batch of W x ``batch_size``.

This page runs everything on **2 CPU processes that talk over gloo**, the same code path as
GPUs over NCCL; the GPU command lines are shown beside each run.
"""

# %%
# A config for the run
# --------------------
# The bundled ``tabular_vae`` config, overridden by a second config: a small data set, 2 epochs,
# validation every epoch and a checkpoint callback, all in a temporary folder.
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt

import lvm
from lvm.data import TabularDataModule

folder = Path(tempfile.mkdtemp(prefix="lvm-ddp-"))
(folder / "run.yaml").write_text(f"""\
data:
  init_args: {{n_train: 2000, n_val: 400, n_test: 1001, batch_size: 100}}
trainer:
  max_epochs: 2
  check_val_every_n_epoch: 1
  enable_progress_bar: false
  default_root_dir: {folder}
  enable_checkpointing: true
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {folder}/checkpoints, filename: last}}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], shown: str) -> str:
    """Run ``cmd`` (what ``shown`` says, with this Python), print its last lines and time; its stdout."""
    print(f"$ {shown}")
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    print(f"  ... exit status 0 after {time.perf_counter() - t:.1f} s")
    return proc.stdout


# torchrun is ``python -m torch.distributed.run``; this Python, so the page uses the lvm it documents
torchrun = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--nproc-per-node",
    "2",
    "--master-port",
    str(free_port()),
]

# %%
# Training on 2 processes
# -----------------------
# ``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``; Lightning
# sees them and launches nothing itself. ``--trainer.devices`` must equal the number of
# processes per node. ``--test_after_fit true`` then evaluates the test set, split across the
# processes: rank r of W takes datapoints r, r + W, ... (no padding), and the means are
# torchmetrics sums reduced across ranks, so ``test/count`` is the test set's size.
#
# On one node with 4 GPUs, Lightning can also start the processes itself:
#
# .. code-block:: bash
#
#    lvm fit --config mnist_vae --config mnist_vae_ddp --trainer.accelerator gpu --trainer.devices 4 --trainer.strategy ddp
#
# Here, 2 CPU processes:
fit = [
    "fit",
    "--config",
    "tabular_vae",
    "--config",
    "run.yaml",
    "--test_after_fit",
    "true",
    "--model.estimators",
    "[{name: importance, num_samples: 100}]",
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "2",
    "--trainer.strategy",
    "ddp",
]
shown = " ".join(f"'{a}'" if " " in a else a for a in fit)
out = run([*torchrun, "-m", "lvm.cli", *fit], f"torchrun --nproc-per-node 2 -m lvm.cli {shown}")
two = {k: float(v) for k, v in re.findall(r"(test/\S+)\s+(-?\d+\.\d+(?:e-?\d+)?)", out)}
ckpt = folder / "checkpoints" / "last.ckpt"
print("checkpoint:", ckpt.relative_to(folder))

# %%
# The same weights on 1 process
# -----------------------------
# The checkpoint loads with Lightning's ``load_from_checkpoint``; testing it in this one process
# gives the numbers the 2 processes logged: each datapoint is counted once, and its noise is
# keyed by (``eval_seed``, dataset index), not by the batch or the rank.
vae = lvm.VAE.load_from_checkpoint(ckpt)
data = TabularDataModule(n_train=2000, n_val=400, n_test=1001, batch_size=100)  # as run.yaml
trainer = L.Trainer(
    accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
)
(one,) = trainer.test(vae, datamodule=data, verbose=False)
keys = ["test/count", "test/elbo", "test/log_px/importance", "test/kl"]
cells = [[k, f"{one[k]:.6f}", f"{two[k]:.6f}"] for k in keys]
for k, a, b in cells:
    print(f"{k:24s} 1 process {a:>12s}   2 processes {b:>12s}")
fig, ax = plt.subplots(figsize=(6.5, 1.5))
ax.axis("off")
ax.table(cellText=cells, colLabels=["test metric", "1 process", "2 processes (gloo)"], loc="center")
ax.set_title("the same weights evaluated on 1 and on 2 processes (1,001 test rows)")
fig.tight_layout()

# %%
# ``lvm compare`` works the same way under torchrun (rank 0 prints the table and writes the
# files):
#
# .. code-block:: bash
#
#    torchrun --nproc-per-node 4 -m lvm.cli compare --ckpt checkpoints/last.ckpt --estimators elbo,importance --num-samples 1,100,5000
#
# Several nodes with torchrun
# ---------------------------
# Run the same command on every node, with ``NODE_RANK`` = 0, 1, ... and ``MASTER_ADDR`` the
# host name of node 0; ``--trainer.num_nodes`` x ``--trainer.devices`` must equal the number
# of processes (here 2 x 8):
#
# .. code-block:: bash
#
#    torchrun --nnodes 2 --nproc-per-node 8 --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port 29500 \
#      -m lvm.cli fit --config experiments/mnist/vae.yaml \
#      --trainer.accelerator gpu --trainer.num_nodes 2 --trainer.devices 8 --trainer.strategy ddp
#
# SLURM
# -----
# One task per GPU, started by ``srun``; Lightning reads SLURM's variables. With ``--signal``,
# Lightning saves ``hpc_ckpt_<n>.ckpt`` shortly before the time limit and requeues the job,
# which resumes from it:
#
# .. code-block:: bash
#
#    #!/bin/bash
#    #SBATCH --job-name=lvm-mnist
#    #SBATCH --nodes=2
#    #SBATCH --ntasks-per-node=4
#    #SBATCH --gpus-per-node=4
#    #SBATCH --cpus-per-task=8
#    #SBATCH --time=24:00:00
#    #SBATCH --signal=SIGUSR1@90
#    #SBATCH --requeue
#    srun lvm fit --config experiments/mnist/vae.yaml \
#      --trainer.accelerator gpu --trainer.num_nodes 2 --trainer.devices 4 --trainer.strategy ddp
#
# ``lvm fit ... --ckpt_path last`` continues from the last checkpoint (the weights, the Adam
# state, the data loader's position and the RNG state), or starts from scratch when there is
# none, so the flag can stay in a job script. A run on W processes trains on other batches than
# a run on 1 process (the shuffled permutation is split across ranks); evaluation of given
# weights does not change, as the table above shows.
