"""DDP on the CPU (2 gloo processes): training runs, each test point is evaluated once, means match 1 process.

``ddp_worker.py`` trains a small VAE for 8 steps on 2 processes, saves the weights and tests them
(1001 test points, 301 validation points: not multiples of 2); a 1-process run (in this process)
tests the same weights. Both report the counts and the dataset means of the ELBO and of every registered
estimator, which must agree to float tolerance.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import ddp_worker
import pytest
from ddp_worker import N_TEST, N_VAL
from offline_wandb import read_run

import lvm

WORKER = Path(__file__).with_name("ddp_worker.py")
TRAIN_STEPS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(tmp: Path, *args: str) -> None:
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **{f"WANDB_{k}_DIR": str(tmp / "wandb-home" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")},
    }
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        env.pop(key, None)  # let Lightning's own launcher start the ranks
    cmd = [sys.executable, str(WORKER), "--workdir", str(tmp), "--weights", str(tmp / "weights.pt"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Train and test on 2 processes, then test the same weights on 1; the folders of both runs."""
    tmp = tmp_path_factory.mktemp("ddp")
    run_worker(tmp, "--devices", "2", "--train_steps", str(TRAIN_STEPS), "--wandb")
    ddp_worker.main(
        ["--devices", "1", "--workdir", str(tmp), "--weights", str(tmp / "weights.pt")]
    )  # in-process
    return {n: tmp / f"devices{n}" for n in (1, 2)}


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def ranks(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


def test_training_runs_under_ddp_and_ranks_agree(runs: dict[int, Path]) -> None:
    r = result(runs[2])
    assert r["world_size"] == 2 and r["global_step"] == TRAIN_STEPS
    (run,) = (runs[2] / "wandb" / "wandb").glob("offline-run-*")
    assert len(read_run(run).rows_with("train/loss")) == TRAIN_STEPS
    sums = [rank["param_sum"] for rank in ranks(runs[2])]
    assert len(sums) == 2 and sums[0] == sums[1]  # DDP kept the replicas identical
    assert ranks(runs[1])[0]["param_sum"] == sums[0]  # and the 1-process run tested those weights


def test_every_test_point_is_evaluated_exactly_once(runs: dict[int, Path]) -> None:
    for n in (1, 2):
        assert result(runs[n])["metrics"]["test/count"] == N_TEST
        seen = [rank["indices"] for rank in ranks(runs[n])]
        assert len(seen) == n
        flat = [i for s in seen for i in s]
        assert sorted(flat) == list(range(N_TEST)), "a test point was dropped or counted twice"
    assert sorted(len(s) for s in (rank["indices"] for rank in ranks(runs[2]))) == [500, 501]


def test_dataset_means_match_one_process_for_the_bound_and_every_estimator(runs: dict[int, Path]) -> None:
    one, two = result(runs[1])["metrics"], result(runs[2])["metrics"]
    keys = ["test/elbo", "test/bound", "test/reconstruction", "test/kl"]
    keys += [f"test/log_px/{name}" for name in lvm.list_estimators()]
    for key in keys:
        assert key in one and key in two, (key, sorted(one))
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-6), key
        stderr = key + "_stderr" if "log_px" in key else ("test/elbo_stderr" if key == "test/elbo" else None)
        if stderr:
            assert two[stderr] == pytest.approx(one[stderr], rel=1e-5, abs=1e-6), stderr
    print("\n" + "\n".join(f"{n} process(es): count={int(m['test/count'])} " + ", ".join(
        f"{k.removeprefix('test/')}={m[k]:.6f}" for k in keys) for n, m in ((1, one), (2, two))))  # fmt: skip


def test_metrics_are_logged_once_and_only_rank_0_writes_files(runs: dict[int, Path]) -> None:
    folder = runs[2]
    runs_written = list((folder / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs_written) == 1, runs_written
    run = read_run(runs_written[0])
    assert [row["test/count"] for row in run.rows_with("test/count")] == [N_TEST]
    assert [row["val/count"] for row in run.rows_with("val/count")] == [N_VAL]  # one validation epoch
    (table,) = [row["test/estimators"] for row in run.rows_with("test/estimators")]
    data = json.loads((run.path / "files" / table["path"]).read_text())
    assert [row[0] for row in data["data"]] == ["elbo", *lvm.list_estimators()]
    assert {row[4] for row in data["data"]} == {N_TEST}
    assert result(folder)["table"] == data["data"]
    # figures: drawn at the end of epoch 0 and of fit, by rank 0 only
    assert sorted(p.name for p in (folder / "figures-rank0").iterdir()) == [
        "interpolations.png",
        "reconstructions.png",
        "samples.png",
    ]
    assert not (folder / "figures-rank1").exists()
    for name in ("samples", "reconstructions", "interpolations"):
        assert len(run.rows_with(f"figures/{name}")) == 2
    assert len(list((run.path / "files" / "media" / "images").rglob("*.png"))) == 6
