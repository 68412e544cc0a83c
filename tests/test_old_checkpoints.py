"""Checkpoints written by released lvm versions load, evaluate to their pinned numbers and resume their fit."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch

from lvm.checkpoint import read_checkpoint

HERE = Path(__file__).resolve().parent / "checkpoints"
PINNED = sorted(HERE.glob("lvm-*.json"))
_spec = importlib.util.spec_from_file_location("old_checkpoint", HERE / "old_checkpoint.py")
old = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(old)  # type: ignore[union-attr]


def _pinned(path: Path) -> tuple[Path, dict]:
    return path.with_suffix(".ckpt"), json.loads(path.read_text())


def test_the_0_1_0_checkpoint_is_committed() -> None:
    assert HERE / "lvm-0.1.0.json" in PINNED and (HERE / "lvm-0.1.0.ckpt").is_file()


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.stem)
def test_old_checkpoint_loads_and_evaluates_to_its_pinned_numbers(pinned: Path) -> None:
    ckpt, want = _pinned(pinned)
    assert read_checkpoint(ckpt)["hyper_parameters"]["latent_dim"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        got = old.evaluate(ckpt)
    for key, value in want["evaluation"].items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.stem)
def test_old_checkpoint_resumes_its_fit_as_it_did_when_written(pinned: Path, tmp_path: Path) -> None:
    """Weights, Adam's moments, the scheduler, the loader position and the RNG state all come back:
    the resumed run ends where the version that wrote the checkpoint ended."""
    ckpt, want = _pinned(pinned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = old.resume(ckpt, tmp_path)
    want = want["resumed"]
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    assert got["adam_steps"] == want["adam_steps"]
    assert got["lr"] == pytest.approx(want["lr"], rel=1e-6)
    assert got["parameter_abs_sum"] == pytest.approx(want["parameter_abs_sum"], rel=1e-4)
    for key, value in want["evaluation"].items():
        assert got["evaluation"][key] == pytest.approx(value, rel=1e-4), key
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == want["global_step"]
