"""A data module that reads the user's own data from .npy, .npz, .pt or .csv files, for the command line."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from lvm.checkpoint import load_torch_file
from lvm.data.base import SPLITS, InMemoryDataModule, Split
from lvm.errors import CorruptFileError

if TYPE_CHECKING:
    from lvm.likelihoods.base import Likelihood

__all__ = ["MISSING", "FileDataModule", "parse_number", "read_table"]

#: Cells read as missing in a CSV (compared in lower case, after stripping blanks).
MISSING = frozenset({"", "na", "nan", "null", "none"})
_SUFFIXES = (".npy", ".npz", ".pt", ".csv")


def _select(names: list[str], wanted: list[str | int] | None, path: Path) -> list[int]:
    """Indices of ``wanted`` columns (names, or integer indices / digit strings) among ``names``."""
    if wanted is None:
        return list(range(len(names)))
    out = []
    for w in wanted:
        if isinstance(w, int) or (isinstance(w, str) and w.isdigit() and w not in names):
            i = int(w)
            if not -len(names) <= i < len(names):
                raise ValueError(f"{path}: column index {i} out of range; the file has {len(names)} columns")
            out.append(i % len(names))
        elif w in names:
            out.append(names.index(w))
        else:
            raise ValueError(f"{path}: no column {w!r}; the header has {', '.join(map(repr, names))}")
    return out


def parse_number(cell: str) -> float:
    """A CSV cell as Python's ``float()`` reads it, but without digit-group underscores (``1_5``).

    Raises:
        ValueError: for anything else, or for a value that is not finite (``inf``).
    """
    if "_" in cell:
        raise ValueError(f"cannot read {cell!r} as a number")
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"cannot read {cell!r} as a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{cell!r} is not a finite number")
    return value


def read_table(
    path: Path,
    columns: list[str | int] | None,
    labels: str | int | None,
    missing: str,
    fill_value: float,
) -> tuple[Tensor, Tensor | None, list[str]]:
    """Read a CSV with a header row into float32 data (N, D), optional int64 labels (N,) and column names.

    Raises:
        ValueError: for a cell that is not a finite number (with file, line and column), a missing
            cell under ``missing="error"``, an unknown column, or a row of the wrong length.
    """
    x, y, names, _ = _read_table(path, columns, labels, missing, fill_value)
    return x, y, names


def _read_table(
    path: Path,
    columns: list[str | int] | None,
    labels: str | int | None,
    missing: str,
    fill_value: float,
) -> tuple[Tensor, Tensor | None, list[str], Tensor]:
    """:func:`read_table`, and the file line of each row read (N,)."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row of column names")
        names = [h.strip() for h in header]
        label_idx = None if labels is None else _select(names, [labels], path)[0]
        if columns is None:
            keep = [i for i in range(len(names)) if i != label_idx]
        else:
            keep = _select(names, columns, path)
        data, ys, lines = [], [], []
        for line, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{path}, line {line}: {len(row)} cells; the header has {len(names)}")
            values, drop = [], False
            for i in keep:
                cell = row[i].strip()
                if cell.lower() in MISSING:
                    if missing == "error":
                        raise ValueError(
                            f"{path}, line {line}, column {names[i]!r}: missing value {cell!r} "
                            f"(missing='drop' skips such rows, missing='fill' uses fill_value)"
                        )
                    drop = drop or missing == "drop"
                    values.append(fill_value)
                    continue
                try:
                    values.append(parse_number(cell))
                except ValueError as err:
                    raise ValueError(f"{path}, line {line}, column {names[i]!r}: {err}") from None
            if drop:
                continue
            if label_idx is not None:
                cell = row[label_idx].strip()
                try:
                    ys.append(int(cell))
                except ValueError:
                    raise ValueError(
                        f"{path}, line {line}, column {names[label_idx]!r}: label {cell!r} is not an integer"
                    ) from None
            data.append(values)
            lines.append(line)
    x = torch.tensor(data, dtype=torch.float32).reshape(len(data), len(keep))
    y = torch.tensor(ys, dtype=torch.int64) if label_idx is not None else None
    return x, y, [names[i] for i in keep], torch.tensor(lines, dtype=torch.int64)


def _read_array(path: Path, key: str | None) -> tuple[Tensor, Tensor | None]:
    """Data and optional labels from .npy (an array), .npz / .pt (an array, or ``x`` and ``y`` entries)."""
    if path.suffix == ".pt":
        obj = load_torch_file(path, "data file")
    else:
        try:
            if path.suffix == ".npy":
                obj = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    obj = {k: z[k] for k in z.files}
        except ValueError as err:
            if "allow_pickle" in str(err):
                raise CorruptFileError(
                    f"data file {path} holds pickled Python objects, which lvm does not load "
                    f"(unpickling can run code): save a numeric array"
                ) from None
            raise CorruptFileError(f"corrupt data file {path}: {err}") from err
        except (OSError, EOFError) as err:
            raise CorruptFileError(f"corrupt data file {path}: {type(err).__name__}: {err}") from err
    if isinstance(obj, dict):
        name = key or ("x" if "x" in obj else next(iter(obj)) if len(obj) == 1 else None)
        if name not in obj:
            raise ValueError(f"{path}: holds {sorted(obj)}; pass key= to choose the data array")
        x, y = obj[name], obj.get("y")
    else:
        x, y = obj, None
    try:
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the data is not a numeric array ({err})") from None
    if x.dim() < 2:
        raise ValueError(
            f"{path}: data must be (N, ...) with one row per datapoint; got shape {tuple(x.shape)}"
        )
    return x.to(torch.float32), None if y is None else torch.as_tensor(np.asarray(y)).to(torch.int64)


class FileDataModule(InMemoryDataModule):
    """Datapoints from files: one per split, or one file split by fractions with a seed.

    Formats, by suffix: ``.npy`` (an array, N x ...), ``.npz`` and ``.pt`` (an array, or a dict
    with ``x`` and optional ``y``), ``.csv`` (a header row of column names, one datapoint per
    row). In a CSV, ``columns`` picks the data columns by name or index (default: all but the
    labels column), ``labels`` names an optional integer labels column, and a missing cell
    (empty, NA, NaN, null) is an error, dropped with its row, or replaced by ``fill_value``.
    A cell that is not a number is reported with its file, line and column; values outside the
    likelihood's support (:meth:`check`, run before training) with their column.

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
        csv_only = {"columns": columns is not None, "labels": labels is not None,
                    "missing": missing != "error", "fill_value": fill_value != 0.0}  # fmt: skip
        for p in self.paths.values():
            given = [name for name, set_ in csv_only.items() if set_]
            if p.suffix != ".csv" and given:
                raise ValueError(
                    f"{given[0]}= applies to .csv files only; {p} is a {p.suffix} file "
                    f"(its arrays are used whole: x, and y for labels)"
                )
            if p.suffix in (".csv", ".npy") and key is not None:
                raise ValueError(f"key= applies to .npz and .pt files only; {p} is a {p.suffix} file")
        self.split_fractions, self.columns, self.labels = split, columns, labels
        self.missing, self.fill_value, self.key = missing, float(fill_value), key
        self.column_names: list[str] | None = None
        self._read: dict[str, Split] | None = None
        self._origin: dict[str, Tensor] = {}  # per split: each datapoint's line (CSV) or row in its file

    def _read_files(self) -> dict[str, Split]:
        if self._read is None:
            out = {}
            for name, p in self.paths.items():
                if p.suffix == ".csv":
                    x, y, self.column_names, rows = _read_table(
                        p, self.columns, self.labels, self.missing, self.fill_value
                    )
                else:
                    x, y = _read_array(p, self.key)
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
