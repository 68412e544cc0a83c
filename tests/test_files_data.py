"""FileDataModule: .npy/.npz/.pt/.csv files, column choice, missing values, splits, and errors that name the place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lvm.data import FileDataModule
from lvm.errors import CorruptFileError
from lvm.likelihoods import create_likelihood

ROWS = [[1.0, 2.0, 0], [3.0, 4.0, 1], [5.0, 6.0, 0], [7.0, 8.0, 1]]


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_csv_columns_by_name_and_index_and_labels(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "d.csv", "a,b,y\n" + "".join(f"{a},{b},{y}\n" for a, b, y in ROWS))
    dm = FileDataModule(f, f, columns=["b", 0], labels="y", batch_size=2)
    dm.setup()
    assert dm.data_shape == (2,)
    assert torch.equal(dm.train, torch.tensor([[r[1], r[0]] for r in ROWS]))
    assert torch.equal(dm.split("train").y, torch.tensor([0, 1, 0, 1]))
    assert dm.column_names == ["b", "a"]
    dm = FileDataModule(f, labels=2)  # default columns: all but the labels
    assert torch.equal(dm._load()["train"].x, torch.tensor([r[:2] for r in ROWS]))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("drop", [[1.0, 2.0], [5.0, 6.0]]), ("fill", [[1.0, 2.0], [-1.0, 4.0], [5.0, 6.0]])],
)
def test_missing_value_policies(tmp_path: Path, policy: str, expected: list) -> None:
    f = write_csv(tmp_path / "d.csv", "a,b\n1,2\nNA,4\n5,6\n")
    assert torch.equal(
        FileDataModule(f, missing=policy, fill_value=-1)._load()["train"].x, torch.tensor(expected)
    )
    with pytest.raises(ValueError, match=r"d\.csv, line 3, column 'a': missing value 'NA'"):
        FileDataModule(f).setup()


def test_bad_cell_is_named_with_file_line_and_column(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "d.csv", "a,b\n1,2\n3,4\n5,six\n")
    with pytest.raises(ValueError, match=r"d\.csv, line 4, column 'b': cannot read 'six' as a number"):
        FileDataModule(f).setup()
    with pytest.raises(ValueError, match=r"no column 'c'; the header has 'a', 'b'"):
        FileDataModule(f, columns=["c"]).setup()


def test_support_violation_names_the_column(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "d.csv", "p,q,r\n" + "0.5,0.5,0.5\n" * 4 + "0.5,0.5,1.5\n")
    with pytest.raises(ValueError, match=r"FileDataModule train split: bernoulli.*column 'r' \(index 2\)"):
        FileDataModule(f).check(create_likelihood("bernoulli", event_shape=(3,)))
    comp = create_likelihood({"name": "composite", "parts": [{"name": "gamma", "columns": [0, 1]},
                                                            {"name": "gaussian", "columns": [2]}]}, event_shape=(3,))  # fmt: skip
    g = write_csv(tmp_path / "g.csv", "p,q,r\n" + "1,1,-3\n" * 4 + "1,0,-3\n")
    with pytest.raises(ValueError, match=r"column 'q' \(index 1\)"):
        FileDataModule(g).check(comp)


def test_one_file_split_by_fractions_with_a_seed(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.save(tmp_path / "x.npy", x)
    dm = FileDataModule(str(tmp_path / "x.npy"), split=[0.5, 0.25, 0.25], seed=3)
    dm.setup()
    sizes = [dm.split(s).x.shape[0] for s in ("train", "val", "test")]
    assert sizes == [10, 5, 5]
    together = torch.cat([dm.train, dm.val, dm.test]).sort(0).values
    assert torch.equal(together, torch.from_numpy(x))  # a partition: every row once
    again = FileDataModule(str(tmp_path / "x.npy"), split=[0.5, 0.25, 0.25], seed=3)
    again.setup()
    assert torch.equal(again.train, dm.train)
    with pytest.raises(ValueError, match="summing to 1"):
        FileDataModule(str(tmp_path / "x.npy"), split=[0.5, 0.25])


def test_npz_and_pt_with_labels(tmp_path: Path) -> None:
    x, y = np.ones((6, 2, 2), np.float32), np.arange(6)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "d.pt")
    for name in ("d.npz", "d.pt"):
        dm = FileDataModule(str(tmp_path / name))
        dm.setup()
        assert dm.data_shape == (2, 2) and torch.equal(dm.split("train").y, torch.arange(6))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data file .*none.csv does not exist"):
        FileDataModule(str(tmp_path / "none.csv"))
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        FileDataModule(str(tmp_path / "a.txt"))
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptFileError, match="corrupt file .*bad.npy"):
        FileDataModule(str(tmp_path / "bad.npy")).setup()
