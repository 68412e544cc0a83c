"""FileDataModule: .npy/.npz/.pt/.csv files, column choice, missing values, splits, and errors that name the place."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lvm.data import FileDataModule
from lvm.errors import CorruptFileError, UnsafeFileError
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
    with pytest.raises(
        ValueError, match=r"train split: .*d\.csv, line 6, column 'r' \(index 2\): value 1\.5: bernoulli"
    ):
        FileDataModule(f).check(create_likelihood("bernoulli", event_shape=(3,)))
    comp = create_likelihood({"name": "composite", "parts": [{"name": "gamma", "columns": [0, 1]},
                                                            {"name": "gaussian", "columns": [2]}]}, event_shape=(3,))  # fmt: skip
    g = write_csv(tmp_path / "g.csv", "p,q,r\n" + "1,1,-3\n" * 4 + "1,0,-3\n")
    with pytest.raises(ValueError, match=r"g\.csv, line 6, column 'q' \(index 1\): value 0:"):
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
    with pytest.raises(CorruptFileError, match="corrupt data file .*bad.npy"):
        FileDataModule(str(tmp_path / "bad.npy")).setup()


def test_cells_parse_as_float_without_underscores_and_must_be_finite(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "d.csv", "a,b\n1,2\n1_5,4\n")
    with pytest.raises(ValueError, match=r"d\.csv, line 3, column 'a': cannot read '1_5' as a number"):
        FileDataModule(f).setup()
    g = write_csv(tmp_path / "g.csv", "a,b\n1,2\n3,-inf\n")
    with pytest.raises(ValueError, match=r"g\.csv, line 3, column 'b': '-inf' is not a finite number"):
        FileDataModule(g).setup()
    h = write_csv(tmp_path / "h.csv", "a,b\n 1e-3 ,+2.5\n-.5,7\n")  # what float() reads, blanks stripped
    assert torch.equal(FileDataModule(h)._load()["train"].x, torch.tensor([[1e-3, 2.5], [-0.5, 7.0]]))


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffa,b\n1,2\n".encode())
    dm = FileDataModule(str(path), columns=["a"])
    assert torch.equal(dm._load()["train"].x, torch.tensor([[1.0]]))


def test_non_finite_and_support_errors_name_the_file_row_after_a_shuffled_split(tmp_path: Path) -> None:
    rows = "".join(f"0.{i % 9 + 1},0.5\n" for i in range(40))
    lines = rows.splitlines()
    lines[30] = "0.5,1.5"  # file line 32: header is line 1
    f = write_csv(tmp_path / "d.csv", "p,q\n" + "\n".join(lines) + "\n")
    dm = FileDataModule(f, split=[0.5, 0.25, 0.25], seed=1)
    with pytest.raises(ValueError, match=r"d\.csv, line 32, column 'q' \(index 1\): value 1\.5"):
        dm.check(create_likelihood("bernoulli", event_shape=(2,)))
    x = np.full((30, 2), 0.5, dtype=np.float32)
    x[17, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    dm = FileDataModule(str(tmp_path / "x.npy"), split=[0.5, 0.25, 0.25], seed=2)
    with pytest.raises(ValueError, match=r"x\.npy, row 17, element 1: value nan"):
        dm.check(create_likelihood("bernoulli", event_shape=(2,)))


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [("columns", ["a"], "columns= applies to .csv files only"), ("labels", "y", "labels= applies to .csv"),
     ("missing", "drop", "missing= applies to .csv"), ("fill_value", 1.0, "fill_value= applies to .csv")],
)  # fmt: skip
def test_options_that_do_not_apply_to_the_format_are_errors(
    tmp_path: Path, option: str, value: object, words: str
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=words):
        FileDataModule(str(tmp_path / "x.npy"), **{option: value})
    f = write_csv(tmp_path / "d.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match="key= applies to .npz and .pt files only"):
        FileDataModule(f, key="x")


def test_pickles_are_refused_with_what_they_are(tmp_path: Path) -> None:
    import pickle

    class Payload:
        def __reduce__(self):  # would write a file if unpickled
            return (open, (str(tmp_path / "ran"), "w"))

    torch.save({"x": torch.zeros(3, 2), "y": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match=r"refused to load data file .*evil\.pt: it asks to unpickle"):
        FileDataModule(str(tmp_path / "evil.pt")).setup()
    with open(tmp_path / "raw.pt", "wb") as fh:
        pickle.dump({"x": [[1.0, 2.0]]}, fh)
    with pytest.raises(CorruptFileError, match=r"raw\.pt is a plain Python pickle"):
        FileDataModule(str(tmp_path / "raw.pt")).setup()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptFileError, match=r"obj\.npy holds pickled Python objects"):
        FileDataModule(str(tmp_path / "obj.npy")).setup()
    assert not (tmp_path / "ran").exists()


def test_categorical_columns_are_codes_fixed_by_the_training_file(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", "colour,size\nred,1\nblue,2\ngreen,3\nred,4\n")
    test = write_csv(tmp_path / "test.csv", "colour,size\ngreen,5\nblue,6\n")
    dm = FileDataModule(train, test=test, categorical=["colour"])
    dm.setup()
    assert dm.categories == {"colour": ["blue", "green", "red"]}
    assert torch.equal(dm.train, torch.tensor([[2.0, 1], [0, 2], [1, 3], [2, 4]]))
    assert torch.equal(dm.test, torch.tensor([[1.0, 5], [0, 6]]))
    bad = write_csv(tmp_path / "bad.csv", "colour,size\ngreen,5\npurple,6\n")
    with pytest.raises(
        ValueError, match=r"bad\.csv, line 3, column 'colour': category 'purple' does not occur"
    ):
        FileDataModule(train, test=bad, categorical=["colour"]).setup()
    with pytest.raises(ValueError, match="categorical= applies to .csv files only"):
        np.save(tmp_path / "x.npy", np.zeros((2, 2), dtype=np.float32))
        FileDataModule(str(tmp_path / "x.npy"), categorical=[0])


def test_anndata_counts_from_x_or_a_layer(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    from scipy import sparse

    counts = np.array([[0, 3, 1], [2, 0, 0], [5, 1, 0], [0, 0, 7]], dtype=np.float32)
    adata = anndata.AnnData(X=sparse.csr_matrix(counts / 2), layers={"counts": sparse.csr_matrix(counts)})
    adata.var_names = ["g1", "g2", "g3"]
    adata.write_h5ad(tmp_path / "cells.h5ad")
    dm = FileDataModule(str(tmp_path / "cells.h5ad"), layer="counts")
    dm.setup()
    assert torch.equal(dm.train, torch.from_numpy(counts)) and dm.column_names == ["g1", "g2", "g3"]
    assert torch.equal(
        FileDataModule(str(tmp_path / "cells.h5ad"))._load()["train"].x, torch.from_numpy(counts / 2)
    )
    with pytest.raises(ValueError, match=r"cells\.h5ad: no layer 'raw'; it has 'counts'"):
        FileDataModule(str(tmp_path / "cells.h5ad"), layer="raw").setup()
    positive = counts + 1
    positive[2, 1] = -1  # a bad value: named by file, row and gene after the likelihood's support check
    adata = anndata.AnnData(X=positive)
    adata.var_names = ["g1", "g2", "g3"]
    adata.write_h5ad(tmp_path / "neg.h5ad")
    with pytest.raises(ValueError, match=r"neg\.h5ad, row 2, column 'g2' \(index 1\): value -1"):
        FileDataModule(str(tmp_path / "neg.h5ad")).check(create_likelihood("gamma", event_shape=(3,)))


@pytest.mark.parametrize(
    ("cell", "words"),
    [("2.5", "line 4, column 'g2' (index 1): value 2.5"), ("-1", "line 4, column 'g2' (index 1): value -1")],
)
def test_a_float_or_negative_count_is_named_by_file_line_and_column(
    tmp_path: Path, cell: str, words: str
) -> None:
    f = write_csv(tmp_path / "counts.csv", f"g1,g2,g3\n0,3,1\n2,0,0\n5,{cell},0\n0,0,7\n")
    with pytest.raises(
        ValueError, match=rf"counts\.csv, {re.escape(words)}: poisson likelihood expects x in \{{0, 1, 2"
    ):
        FileDataModule(f).check(create_likelihood("poisson", event_shape=(3,)))


def test_a_category_code_out_of_range_is_named_by_file_line_and_column(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "mixed.csv", "colour,height\n0,1.5\n2,1.7\n3,1.6\n")
    lik = create_likelihood({"name": "composite", "parts": [{"name": "categorical", "columns": [0], "num_categories": 3},
                                                            {"name": "gaussian", "columns": [1]}]}, event_shape=(2,))  # fmt: skip
    with pytest.raises(
        ValueError, match=r"mixed\.csv, line 4, column 'colour' \(index 0\): value 3: .*categorical"
    ):
        FileDataModule(f).check(lik)
    g = write_csv(tmp_path / "named.csv", "colour,height\nred,1.5\nblue,1.7\ngreen,1.6\n")
    dm = FileDataModule(g, categorical=["colour"])
    dm.check(lik)  # names read as codes 0..2: inside the support
    assert dm.categories == {"colour": ["blue", "green", "red"]}
