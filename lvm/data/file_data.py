"""A data module that reads the user's own data from .csv, .npy, .npz, .pt or .h5ad files, for the command line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lvm.data.array_files import read_anndata, read_array
from lvm.data.base import SPLITS, InMemoryDataModule, Split
from lvm.data.csv_table import MISSING, parse_number, read_csv, read_table

if TYPE_CHECKING:
    from lvm.likelihoods.base import Likelihood

__all__ = ["MISSING", "FileDataModule", "parse_number", "read_table"]  # the last three from csv_table

_SUFFIXES = (".npy", ".npz", ".pt", ".csv", ".h5ad")


class FileDataModule(InMemoryDataModule):
    """Datapoints from files: one per split, or one file split by fractions with a seed.

    Formats, by suffix: ``.npy`` (an array, N x ...), ``.npz`` and ``.pt`` (an array, or a dict
    with ``x`` and optional ``y``; ``.pt`` loads tensors and plain values only), ``.csv`` (a header
    row of column names, one datapoint per row), ``.h5ad`` (AnnData: cells x genes from ``X`` or
    a ``layer``, with the optional ``anndata`` package). In a CSV, ``columns`` picks the data
    columns by name or index (default: all but the labels column), ``labels`` names an optional
    integer labels column, ``categorical`` names columns of category names, read as codes
    0 .. C-1 in sorted order of the training file's names, and a missing cell (empty, NA, NaN,
    null) is an error, dropped with its row, or replaced by ``fill_value``. Counts are numbers
    like any other; a count likelihood's support check rejects a negative or fractional one.
    A cell that is not a finite number or a known category is reported with its file, line and
    column, and so is a value outside the likelihood's support (:meth:`check`, run before
    training), whatever the split's shuffling.

    Args:
        train: The training file (or the only file, with ``split``).
        val: Optional validation file.
        test: Optional test file.
        split: Fractions (train, val, test) summing to 1 to split ``train`` at random (with ``seed``),
            when ``val`` and ``test`` are not given.
        columns: CSV data columns, names or indices; default all but ``labels``.
        labels: CSV labels column (name or index), or None.
        missing: ``"error"`` (default), ``"drop"`` or ``"fill"``.
        fill_value: The value of a missing cell under ``missing="fill"``.
        key: The array to read from an ``.npz`` / ``.pt`` dict (default ``x``).
        categorical: CSV columns (names or indices) that hold category names.
        layer: The AnnData layer of an ``.h5ad`` file (default ``X``), e.g. ``"counts"``.
        batch_size: Training batch size per rank.
        eval_batch_size: Validation/test batch size per rank; defaults to ``batch_size``.
        seed: Seed of the split, the shuffling and the training transform.

    Raises:
        ValueError: for an unknown suffix, a bad ``split`` or ``missing``, or bad file contents.
        FileNotFoundError: for a file that does not exist.
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        *,
        split: list[float] | None = None,
        columns: list[str | int] | None = None,
        labels: str | int | None = None,
        missing: Literal["error", "drop", "fill"] = "error",
        fill_value: float = 0.0,
        key: str | None = None,
        categorical: list[str | int] | None = None,
        layer: str | None = None,
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.save_hyperparameters()  # recorded in checkpoints, so lvm compare rebuilds these splits
        if missing not in ("error", "drop", "fill"):
            raise ValueError(f"missing must be 'error', 'drop' or 'fill'; got {missing!r}")
        if split is not None:
            if val is not None or test is not None:
                raise ValueError("give either split= (fractions of one file) or val=/test= files, not both")
            if len(split) != 3 or min(split) < 0 or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
                raise ValueError(f"split must be 3 fractions (train, val, test) summing to 1; got {split!r}")
        self.paths = {name: Path(p) for name, p in zip(SPLITS, (train, val, test)) if p is not None}
        for p in self.paths.values():
            if p.suffix not in _SUFFIXES:
                raise ValueError(
                    f"{p}: unknown file type {p.suffix!r}; expected one of {', '.join(_SUFFIXES)}"
                )
            if p.is_dir():
                raise IsADirectoryError(f"data file {p} is a folder")
            if not p.is_file():
                raise FileNotFoundError(f"data file {p} does not exist")
        applies = {"columns": (columns, (".csv",)), "labels": (labels, (".csv",)),
                   "categorical": (categorical, (".csv",)), "missing": (None if missing == "error" else missing, (".csv",)),
                   "fill_value": (fill_value or None, (".csv",)), "key": (key, (".npz", ".pt")),
                   "layer": (layer, (".h5ad",))}  # fmt: skip
        for p in self.paths.values():
            for option, (value, suffixes) in applies.items():
                if value is not None and p.suffix not in suffixes:
                    raise ValueError(
                        f"{option}= applies to {' and '.join(suffixes)} files only; {p} is a {p.suffix} file"
                    )
        self.split_fractions, self.columns, self.labels = split, columns, labels
        self.missing, self.fill_value, self.key = missing, float(fill_value), key
        self.categorical, self.layer = categorical, layer
        self.column_names: list[str] | None = None
        #: For each categorical column, its category names in code order (after reading).
        self.categories: dict[str, list[str]] = {}
        self._read: dict[str, Split] | None = None
        self._origin: dict[str, Tensor] = {}  # per split: each datapoint's line (CSV) or row in its file

    def _read_files(self) -> dict[str, Split]:
        if self._read is None:
            out = {}
            for name, p in self.paths.items():
                if p.suffix == ".csv":  # train first: its categories fix the codes of val and test
                    t = read_csv(p, self.columns, self.labels, self.missing, self.fill_value,
                                 self.categorical, self.categories or None)  # fmt: skip
                    x, y, self.column_names, rows = t.x, t.y, t.names, t.lines
                    self.categories = self.categories or t.categories
                elif p.suffix == ".h5ad":
                    (x, self.column_names), y = read_anndata(p, self.layer), None
                    rows = torch.arange(x.shape[0])
                else:
                    x, y = read_array(p, self.key)
                    rows = torch.arange(x.shape[0])
                if x.shape[0] == 0:
                    raise ValueError(f"{p}: no datapoints")
                out[name], self._origin[name] = Split(x, y), rows
            if self.split_fractions is not None:
                out = self._split(out["train"])
            self._read = out
        return self._read

    def _split(self, s: Split) -> dict[str, Split]:
        n = s.x.shape[0]
        rows = self._origin.pop("train")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val = round(self.split_fractions[1] * n)
        n_test = round(self.split_fractions[2] * n)
        bounds = {
            "train": (0, n - n_val - n_test),
            "val": (n - n_val - n_test, n - n_test),
            "test": (n - n_test, n),
        }
        out = {}
        for name, (a, b) in bounds.items():
            idx = perm[a:b]
            if len(idx) or name == "train":
                out[name] = Split(s.x[idx], None if s.y is None else s.y[idx])
                self._origin[name] = rows[idx]
        return out

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one row of the training file (read on first use)."""
        return tuple(self._read_files()["train"].x.shape[1:])

    def _load(self) -> dict[str, Split]:
        return dict(self._read_files())

    def check(self, likelihood: Likelihood) -> None:
        """As :meth:`InMemoryDataModule.check`, naming the file, line (or row) and column of the
        first value that is not finite or leaves the likelihood's support."""
        self.setup()
        for name in SPLITS:
            s = self.split(name)
            if s is None or s.x.shape[0] == 0:
                continue
            try:
                likelihood.check(s.x)
            except ValueError as err:
                where = self._locate(likelihood, name, s.x)
                raise ValueError(f"{type(self).__name__} {name} split: {where}{err}") from err

    def _locate(self, likelihood: Likelihood, split: str, x: Tensor) -> str:
        """``"<file>, line L, column 'c' (index j): value v: "`` of the first bad value, or ``""``."""
        if x.shape[1:] != likelihood.event_shape:
            return ""
        flat = x.reshape(len(x), -1)
        finite = torch.isfinite(flat)
        if not finite.all():
            r = int((~finite.all(1)).nonzero()[0])
            j = int((~finite[r]).nonzero()[0])
        else:  # first bad row by bisection on prefixes; then the column that alone breaks it
            lo, hi = 0, len(x)  # x[:lo] is valid, x[:hi] is not
            if likelihood.support_violation(x) is None:
                return ""
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if likelihood.support_violation(x[:mid]) is None else (lo, mid)
            r, j = hi - 1, self._bad_column(likelihood, x, hi - 1)
            if j is None:
                return ""
        path = self.paths.get(split, self.paths["train"])
        origin = int(self._origin[split][r])
        row = f"line {origin}" if path.suffix == ".csv" else f"row {origin}"
        label = self.column_names[j] if self.column_names and x.dim() == 2 else None
        column = f"column {label!r} (index {j})" if label else f"element {j}"
        return f"{path}, {row}, {column}: value {flat[r, j].item():g}: "

    @staticmethod
    def _bad_column(likelihood: Likelihood, x: Tensor, r: int) -> int | None:
        """The first element of datapoint ``r`` whose value alone breaks the support, given a valid datapoint."""
        ok = next((i for i in range(len(x)) if likelihood.support_violation(x[i : i + 1]) is None), None)
        if ok is None:
            return None
        base, bad = x[ok].reshape(-1), x[r].reshape(-1)
        for j in range(base.numel()):
            probe = base.clone()
            probe[j] = bad[j]
            if likelihood.support_violation(probe.reshape(1, *x.shape[1:])) is not None:
                return j
        return None
