"""Third-party likelihoods through the ``lvm.likelihoods`` entry point, mocked and installed for real."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor
from torch.distributions import Distribution

from lvm.likelihoods import LIKELIHOODS, Bernoulli, Likelihood, ParamSpec, create_likelihood, list_likelihoods

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lvm-laplace"


class Laplace(Likelihood):
    """Stand-in for ``lvm_laplace.Laplace``: p(x | z) = prod_j exp(-|x_j - mu_j| / b_j) / (2 b_j)."""

    name: ClassVar[str] = "laplace"
    params: ClassVar[tuple[ParamSpec, ...]] = (ParamSpec("loc"), ParamSpec("scale", "softplus", 1e-3))

    def distribution(self, loc: Tensor, scale: Tensor) -> Distribution:  # type: ignore[override]
        return torch.distributions.Laplace(loc, scale, validate_args=False)


def with_plugins(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    """Make LIKELIHOODS see ``eps`` as its installed entry points; everything is undone after the test."""
    monkeypatch.setattr(LIKELIHOODS, "_entries", dict(LIKELIHOODS._entries))
    monkeypatch.setattr(LIKELIHOODS, "_lazy", {})
    monkeypatch.setattr(LIKELIHOODS, "_scanned", False)
    monkeypatch.setattr(LIKELIHOODS, "_entry_points", lambda: list(eps))


def laplace_reference(raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    d = raw.shape[-1] // 2
    loc, scale = raw[..., :d], np.logaddexp(0.0, raw[..., d:]) + 1e-3
    return stats.laplace.logpdf(x, loc, scale).sum(-1)


RAW = [[0.5, -1.0, 2.0, 0.0, 0.3, -0.7, 1.5, -3.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
X = [[0.1, -2.0, 3.0, 0.0], [1.0, -1.0, 0.5, -0.25]]


# -- a mocked entry point ------------------------------------------------------------------
def test_mocked_entry_point_likelihood_matches_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    with_plugins(
        monkeypatch, EntryPoint(name="laplace", value=f"{__name__}:Laplace", group="lvm.likelihoods")
    )
    assert "laplace" in list_likelihoods()
    assert "laplace (plugin: unknown distribution)" in LIKELIHOODS.describe()

    lk = create_likelihood("laplace", (4,))
    assert type(lk) is Laplace and lk.raw_size == 8
    raw = torch.tensor(RAW, dtype=torch.float64).expand(3, 2, 8)  # (S, B, raw_size)
    lp = lk(raw).log_prob(torch.tensor(X, dtype=torch.float64))
    assert lp.shape == (3, 2)
    np.testing.assert_allclose(lp.numpy(), laplace_reference(raw.numpy(), np.array(X)), rtol=1e-12)
    # configs name it like a built-in
    assert type(create_likelihood({"name": "laplace"}, (4,))) is Laplace
    composite = create_likelihood(
        "composite", (3,), parts=[{"name": "laplace", "columns": [0, 2]}, {"name": "gamma", "columns": [1]}]
    )
    assert composite.raw_size == 4 + 2


def test_entry_point_cannot_shadow_a_builtin_likelihood(monkeypatch: pytest.MonkeyPatch) -> None:
    with_plugins(
        monkeypatch, EntryPoint(name="bernoulli", value=f"{__name__}:Laplace", group="lvm.likelihoods")
    )
    assert list_likelihoods().count("bernoulli") == 1
    assert type(create_likelihood("bernoulli", (4,))) is Bernoulli
    assert LIKELIHOODS.plugin_distribution("bernoulli") is None


def test_broken_likelihood_plugin_does_not_break_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    from lvm.registry import PluginError

    with_plugins(
        monkeypatch, EntryPoint(name="hurdle", value="lvm_no_such_hurdle:Hurdle", group="lvm.likelihoods")
    )
    assert "hurdle" in list_likelihoods()
    assert type(create_likelihood("gaussian", (4,))).__name__ == "Gaussian"
    with pytest.raises(PluginError, match="likelihood plugin 'hurdle'.*lvm_no_such_hurdle"):
        create_likelihood("hurdle", (4,))


# -- the example package -------------------------------------------------------------------
def test_example_uses_only_the_public_api_and_no_registration() -> None:
    source = (EXAMPLE / "lvm_laplace" / "__init__.py").read_text()
    imports = [
        (node.module, [a.name for a in node.names])
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lvm")
    ]
    assert imports == [("lvm.likelihoods", ["Likelihood", "ParamSpec"])]
    assert "register_likelihood" not in source
    assert 'laplace = "lvm_laplace:Laplace"' in (EXAMPLE / "pyproject.toml").read_text()


CHILD = """
import json, sys, torch, lvm
from lvm.likelihoods import LIKELIHOODS
assert "laplace" in lvm.list_likelihoods(), lvm.list_likelihoods()
assert "lvm_laplace" not in sys.modules, "plugin imported before use"
lk = lvm.create_likelihood("laplace", (4,))
assert type(lk).__module__ == "lvm_laplace", type(lk)
raw, x = torch.tensor(json.loads(sys.argv[1]), dtype=torch.float64), torch.tensor(json.loads(sys.argv[2]), dtype=torch.float64)
lk.check(x)
print(json.dumps({"log_prob": lk(raw).log_prob(x).tolist(), "dist": LIKELIHOODS.plugin_distribution("laplace")}))
"""


def install_example(tmp_path: Path) -> tuple[Path, Path]:
    """pip install examples/lvm-laplace from a copy into a fresh folder; (the copy, the folder)."""
    pytest.importorskip("setuptools")
    src, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [*pip, "--disable-pip-version-check", "-q", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return src, target


def test_installed_example_is_discovered_through_its_entry_point(tmp_path: Path) -> None:
    _, target = install_example(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(RAW), json.dumps(X)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["dist"] == "lvm-laplace"
    np.testing.assert_allclose(out["log_prob"], laplace_reference(np.array(RAW), np.array(X)), rtol=1e-12)


def test_installed_example_passes_its_own_tests_with_the_kit(tmp_path: Path) -> None:
    src, target = install_example(tmp_path)
    root = str(Path(__file__).resolve().parents[1])  # this lvm, ahead of any installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), root])}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=src,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "1 passed" in child.stdout, child.stdout
