"""Reading a CSV of the user's own data: numbers as float() reads them, category names as codes,
and every bad cell named by its file, line and column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MISSING", "Table", "parse_number", "read_csv", "read_table"]

#: Cells read as missing in a CSV (compared in lower case, after stripping blanks).
MISSING = frozenset({"", "na", "nan", "null", "none"})


@dataclass(frozen=True)
class Table:
    """A CSV read into tensors.

    Attributes:
        x: Data, (N, D) float32; a categorical column holds its codes 0 .. C-1.
        y: Integer labels (N,), or None.
        names: The D column names.
        lines: The file line of each row (N,), for messages about a row.
        categories: For each categorical column (by name), its category names in code order.
    """

    x: Tensor
    y: Tensor | None
    names: list[str]
    lines: Tensor
    categories: dict[str, list[str]]


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


def read_csv(
    path: Path,
    columns: list[str | int] | None = None,
    labels: str | int | None = None,
    missing: str = "error",
    fill_value: float = 0.0,
    categorical: list[str | int] | None = None,
    categories: dict[str, list[str]] | None = None,
) -> Table:
    """Read a CSV with a header row (a UTF-8 byte-order mark is allowed) into a :class:`Table`.

    Args:
        path: The file.
        columns: Data columns by name or index; default all but ``labels``.
        labels: An integer labels column, or None.
        missing: ``"error"``, ``"drop"`` (skip the row) or ``"fill"`` (use ``fill_value``) for a
            missing cell (empty, NA, NaN, null, none).
        fill_value: The value of a missing cell under ``"fill"``.
        categorical: Data columns whose cells are category names, read as codes 0 .. C-1.
        categories: Known category names per categorical column (from the training file); None
            learns them from this file, in sorted order.

    Raises:
        ValueError: for a cell that is not a finite number or a known category (with file, line
            and column), a missing cell under ``missing="error"``, an unknown column, or a row of
            the wrong length.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row of column names")
        names = [h.strip() for h in header]
        label_idx = None if labels is None else _select(names, [labels], path)[0]
        keep = (
            [i for i in range(len(names)) if i != label_idx]
            if columns is None
            else _select(names, columns, path)
        )
        named = set(_select(names, categorical, path)) if categorical else set()
        if named - set(keep):
            raise ValueError(
                f"{path}: categorical columns {sorted(names[i] for i in named - set(keep))} are not data columns"
            )
        data, ys, lines, cells = [], [], [], {i: [] for i in named}  # type: ignore[var-annotated]
        for line, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{path}, line {line}: {len(row)} cells; the header has {len(names)}")
            values, drop, seen = [], False, {}
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
                elif i in named:
                    seen[i] = cell
                    values.append(math.nan)  # the code, once the categories are known
                else:
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
            for i in named:
                cells[i].append((len(data), line, seen.get(i)))
            data.append(values)
            lines.append(line)
    x = torch.tensor(data, dtype=torch.float32).reshape(len(data), len(keep))
    found = _codes(path, x, keep, names, cells, categories or {})
    y = torch.tensor(ys, dtype=torch.int64) if label_idx is not None else None
    return Table(x, y, [names[i] for i in keep], torch.tensor(lines, dtype=torch.int64), found)


def _codes(
    path: Path,
    x: Tensor,
    keep: list[int],
    names: list[str],
    cells: dict[int, list[tuple[int, int, str | None]]],
    known: dict[str, list[str]],
) -> dict[str, list[str]]:
    """Write each categorical cell's code into ``x``; the category names of each column, in code order."""
    out = {}
    for i, entries in cells.items():
        name = names[i]
        levels = known.get(name) or sorted({c for _, _, c in entries if c is not None})
        code = {c: k for k, c in enumerate(levels)}
        j = keep.index(i)
        for r, line, cell in entries:
            if cell is None:  # a missing cell that missing="fill" filled
                continue
            if cell not in code:
                raise ValueError(
                    f"{path}, line {line}, column {name!r}: category {cell!r} does not occur in the "
                    f"training data; known: {', '.join(map(repr, levels[:10]))}"
                )
            x[r, j] = code[cell]
        out[name] = list(levels)
    return out


def read_table(
    path: Path,
    columns: list[str | int] | None,
    labels: str | int | None,
    missing: str,
    fill_value: float,
) -> tuple[Tensor, Tensor | None, list[str]]:
    """Read a CSV with a header row into float32 data (N, D), optional int64 labels (N,) and column names.

    The numeric part of :func:`read_csv`, kept for callers of lvm 0.1.0.

    Raises:
        ValueError: as :func:`read_csv`.
    """
    t = read_csv(path, columns, labels, missing, fill_value)
    return t.x, t.y, t.names
