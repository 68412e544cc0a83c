"""experiments/gradients: the seed summary (mean and sd over seeds, the paired difference) and its errors."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(rel: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


summarize = _load("experiments/gradients/summarize.py", "gradients_summarize")
NLL = {("reparam", 0): 100.4, ("reparam", 1): 100.9, ("reparam", 2): 100.5, ("dreg", 0): 100.1,
       ("dreg", 1): 100.2, ("dreg", 2): 100.6}  # fmt: skip
GRADIENTS = ("reparam", "dreg")


def _write(folder: Path) -> None:
    (folder / "runs").mkdir(parents=True)
    snr = []
    for (g, s), nll in NLL.items():
        run = {"gradient": g, "seed": s, "k": 64, "epochs": 3, "test_images": 100, "eval_K": 5000,
               "test_nll": nll, "test_nll_stderr": 0.5, "train_seconds": 10.0,
               "curve": {"elbo": [[0, -110.0]], "bound": [[0, -105.0], [2, -101.0 - s]]}}  # fmt: skip
        (folder / "runs" / f"{g}_seed{s}.json").write_text(json.dumps(run))
        snr += [
            {"trained_with": g, "gradient": e, "seed": s, "encoder": 0.1 * s + (e == "dreg")}
            for e in GRADIENTS
        ]
    (folder / "snr_runs.json").write_text(json.dumps({"rows": snr}))


def test_summary_is_mean_and_sd_over_seeds_with_the_paired_difference(tmp_path: Path) -> None:
    _write(tmp_path)
    assert summarize.main(["--results", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "summary.json").read_text())
    rep = out["by_training_gradient"]["reparam"]
    values = [NLL["reparam", s] for s in (0, 1, 2)]
    assert rep["test_nll"]["mean"] == pytest.approx(statistics.mean(values))
    assert rep["test_nll"]["sd"] == pytest.approx(statistics.stdev(values))
    assert rep["final_val_bound"]["values"] == [-101.0, -102.0, -103.0]
    assert rep["encoder_snr"]["dreg"]["mean"] == pytest.approx(1.1)
    diffs = [NLL["reparam", s] - NLL["dreg", s] for s in (0, 1, 2)]
    assert out["nll_reparam_minus_dreg_per_seed"]["values"] == pytest.approx(diffs)
    assert "| reparam | **100.60 ± 0.26** |" in (tmp_path / "results.md").read_text()


def test_summary_without_runs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as err:
        summarize.main(["--results", str(tmp_path)])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no evaluated runs under" in lines[0]
