"""Tests of lvm.data on tiny fake files in tmp_path: no network, nothing read from shared folders."""

from __future__ import annotations

import gzip
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torchvision.datasets
import torchvision.datasets.utils
from scipy import stats

import lvm
import lvm.data.loader as loader_mod
from lvm.data import (
    DATAMODULES,
    BinarizedMNISTDataModule,
    InMemoryLoader,
    MNISTDataModule,
    TabularDataModule,
    TensorDataModule,
    read_idx,
    tabular_log_density,
)
from lvm.registry import UnknownNameError

IDX_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def write_idx(path: Path, arr: np.ndarray, dtype: str = "u1", gz: bool = True) -> None:
    header = bytes([0, 0, IDX_CODES[dtype], arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    raw = header + arr.astype(dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def fake_mnist(
    root: Path, n_train: int = 20, n_test: int = 6, folder: str = "MNIST", grey: int | None = None
):
    """Write the four IDX files; return (train images, train labels, test images, test labels)."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = []
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            if grey is None
            else np.full((n, 28, 28), grey, np.uint8)
        )
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte", labels, gz=False)  # plain, as torchvision extracts
        out += [images, labels]
    return out


def fake_world(monkeypatch: pytest.MonkeyPatch, world: int, rank: int) -> None:
    monkeypatch.setattr(loader_mod, "dist_info", lambda: (world, rank))


def epoch_indices(loader: InMemoryLoader) -> list[int]:
    return torch.cat([b["index"] for b in loader]).tolist()


# -- IDX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f8"])
def test_idx_round_trip_exact(tmp_path: Path, gz: bool, dtype: str) -> None:
    values = np.arange(60).reshape(3, 4, 5) * 7 - 50  # includes negatives for the signed types
    arr = (values % 256 if dtype == "u1" else values * (1.5 if dtype == ">f8" else 1)).astype(dtype)
    write_idx(tmp_path / "a.idx", arr, dtype, gz)
    out = read_idx(tmp_path / "a.idx")
    assert out.shape == (3, 4, 5) and out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable copy


def test_idx_rejects_bad_magic_and_size(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic bytes 01000801"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros(5, np.uint8), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        read_idx(tmp_path / "short")


# -- MNIST ------------------------------------------------------------------------------------
def test_mnist_splits_values_and_labels(tmp_path: Path) -> None:
    tr_x, tr_y, te_x, te_y = fake_mnist(tmp_path)
    dm = MNISTDataModule(str(tmp_path), binarize="none", val_size=5, flatten=False)
    assert dm.data_shape == (1, 28, 28)
    dm.prepare_data()
    dm.setup("fit")
    expect = torch.from_numpy(tr_x).float().div(255).reshape(-1, 1, 28, 28)
    torch.testing.assert_close(dm.train, expect[:15], rtol=0, atol=0)
    torch.testing.assert_close(dm.val, expect[15:], rtol=0, atol=0)
    torch.testing.assert_close(dm.test, torch.from_numpy(te_x).float().div(255).reshape(-1, 1, 28, 28))
    assert dm.split("train").y.tolist() == tr_y[:15].tolist()
    assert dm.split("test").y.tolist() == te_y.tolist()
    batch = next(iter(dm.val_dataloader()))
    assert batch["index"].tolist() == list(range(5)) and batch["y"].tolist() == tr_y[15:].tolist()


def test_mnist_env_dir_val_size_zero_and_cached_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mnist(tmp_path, folder="FashionMNIST")
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path))
    dm = MNISTDataModule(dataset="fashion_mnist", val_size=0)
    assert dm.folder == tmp_path / "FashionMNIST" / "raw" and dm.data_shape == (784,)
    dm.setup()
    train = dm.train
    dm.setup()
    assert dm.train is train and train.shape == (20, 784) and dm.val is None
    assert dm.val_dataloader() == [] and len(dm.test_dataloader()) == 1


def test_mnist_missing_files_error_names_folder_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    dm = MNISTDataModule(str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        dm.prepare_data()
    msg = str(info.value)
    assert str((tmp_path / "MNIST" / "raw").resolve()) in msg and "no network" in msg
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "LVM_DATA_DIR"):
        assert name in msg
    with pytest.raises(FileNotFoundError, match="4 file"):
        dm.setup()


def test_dynamic_binarisation(tmp_path: Path) -> None:
    fake_mnist(tmp_path, n_train=60, n_test=20, grey=77)  # p = 77/255 = 0.302
    dm = MNISTDataModule(str(tmp_path), val_size=20, batch_size=40)
    dm.setup()
    torch.testing.assert_close(dm.train_mean(), torch.full((784,), 77 / 255))
    loader = dm.train_dataloader()
    first = torch.cat([b["x"][b["index"].argsort()] for b in loader])
    second = torch.cat([b["x"][b["index"].argsort()] for b in loader])
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert abs(first.mean().item() - 77 / 255) < 0.01  # 31360 pixels: sd 0.0026
    assert not torch.equal(first, second)  # re-binarised each epoch
    other = MNISTDataModule(str(tmp_path), val_size=20, seed=5)
    other.setup()
    assert set(dm.val.unique().tolist()) == set(dm.test.unique().tolist()) == {0.0, 1.0}
    assert abs(dm.test.mean().item() - 77 / 255) < 0.02
    assert torch.equal(dm.val, other.val) and torch.equal(dm.test, other.test)
    assert not torch.equal(dm.val, dm.test)


def test_static_binarisation_is_fixed(tmp_path: Path) -> None:
    fake_mnist(tmp_path, n_train=30, n_test=5, grey=128)
    a, b = (
        MNISTDataModule(str(tmp_path), binarize="static", val_size=10),
        MNISTDataModule(str(tmp_path), binarize="static", val_size=10, seed=1),
    )
    a.setup(), b.setup()
    assert a.train_transform is None and set(a.train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)


# -- binarized MNIST --------------------------------------------------------------------------
def write_amat(path: Path, bits: np.ndarray, gz: bool) -> None:
    text = "".join(" ".join(map(str, row)) + "\n" for row in bits).encode()
    path.write_bytes(gzip.compress(text) if gz else text)


def test_binarized_mnist_amat_and_packed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    bits = {
        s: rng.integers(0, 2, (n, 784), dtype=np.uint8) for s, n in (("train", 7), ("valid", 3), ("test", 4))
    }
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for i, (s, b) in enumerate(bits.items()):
        write_amat(folder / f"binarized_mnist_{s}.amat{'.gz' if i % 2 else ''}", b, gz=bool(i % 2))
    dm = BinarizedMNISTDataModule(str(tmp_path), flatten=False)
    dm.setup()
    assert dm.train.shape == (7, 1, 28, 28)
    for name, s in (("train", "train"), ("val", "valid"), ("test", "test")):
        np.testing.assert_array_equal(dm.split(name).x.reshape(-1, 784).numpy(), bits[s])
    flipped = {s: 1 - b for s, b in bits.items()}
    np.savez_compressed(
        folder / "binarized_mnist_packed.npz", **{s: np.packbits(b, axis=1) for s, b in flipped.items()}
    )
    packed = BinarizedMNISTDataModule(str(tmp_path))
    packed.setup()
    np.testing.assert_array_equal(packed.test.numpy(), flipped["test"])  # the npz is preferred


def test_binarized_mnist_missing_and_bad_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", no_network)
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    write_amat(folder / "binarized_mnist_train.amat", np.zeros((2, 784), np.uint8), gz=False)
    dm = BinarizedMNISTDataModule(str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        dm.prepare_data()
    msg = str(info.value)
    assert (
        "binarized_mnist_valid.amat" in msg
        and "binarized_mnist_test.amat" in msg
        and str(folder.resolve()) in msg
    )
    assert "binarized_mnist_train.amat," not in msg
    write_amat(folder / "binarized_mnist_valid.amat", np.full((1, 784), 2, np.uint8), gz=False)
    write_amat(folder / "binarized_mnist_test.amat", np.zeros((1, 784), np.uint8), gz=False)
    with pytest.raises(ValueError, match="values in"):
        dm.setup()


# -- loader -----------------------------------------------------------------------------------
def test_loader_visits_every_index_once_with_matching_data() -> None:
    x = torch.arange(23 * 2, dtype=torch.int64).reshape(23, 2)
    y = torch.arange(23) * 10
    loader = InMemoryLoader(x, labels=y, batch_size=5, shuffle=True, drop_last=False, seed=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 5 and [len(b["index"]) for b in batches] == [5, 5, 5, 5, 3]
    idx = torch.cat([b["index"] for b in batches])
    assert sorted(idx.tolist()) == list(range(23)) and idx.tolist() != list(range(23))
    for b in batches:
        assert b["x"].dtype == torch.float32 and b["index"].dtype == torch.int64
        assert torch.equal(b["x"], x[b["index"]].float()) and torch.equal(b["y"], y[b["index"]])
    dropped = InMemoryLoader(x, batch_size=5, shuffle=False, drop_last=True)
    assert len(dropped) == 4 and epoch_indices(dropped) == list(range(20))


@pytest.mark.parametrize("world", [2, 3])
def test_eval_sharding_covers_each_index_exactly_once(monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    x = torch.randn(10, 3)
    seen = []
    for rank in range(world):
        fake_world(monkeypatch, world, rank)
        loader = InMemoryLoader(x, batch_size=2, shuffle=False, drop_last=False, shard="eval")
        idx = epoch_indices(loader)
        assert idx == list(range(rank, 10, world)) and len(loader) == -(-len(idx) // 2)
        seen += idx
    assert sorted(seen) == list(range(10))


def test_train_sharding_gives_equal_batch_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(10, 3)
    seen, lengths = [], set()
    for rank in range(3):
        fake_world(monkeypatch, 3, rank)
        loader = InMemoryLoader(x, batch_size=2, shuffle=True, drop_last=False, shard="train", seed=1)
        batches = list(loader)
        lengths.add((len(loader), len(batches)))
        seen += torch.cat([b["index"] for b in batches]).tolist()
    assert lengths == {(2, 2)}  # 3 points per rank, one of 10 dropped
    assert len(seen) == 9 and len(set(seen)) == 9


def test_loader_reproducible_epochs() -> None:
    x = torch.randn(50, 2)
    a = InMemoryLoader(x, batch_size=8, shuffle=True, drop_last=False, seed=7)
    b = InMemoryLoader(x, batch_size=8, shuffle=True, drop_last=False, seed=7)
    it = iter(a)  # creating an iterator alone must not advance the epoch
    del it
    a0, a1 = epoch_indices(a), epoch_indices(a)
    assert a0 == epoch_indices(b) and a1 == epoch_indices(b) and a0 != a1 and a.epoch == 1
    a.set_epoch(0)
    assert epoch_indices(a) == a0 and epoch_indices(a) == a1
    c = InMemoryLoader(x, batch_size=8, shuffle=True, drop_last=False, seed=8)
    assert epoch_indices(c) != a0


def test_loader_transform_generator_depends_on_epoch() -> None:
    x = torch.full((40, 5), 0.5)
    loader = InMemoryLoader(
        x, batch_size=40, shuffle=False, drop_last=False, transform=lvm.data.binarize_batch, seed=2
    )
    e0, e1 = next(iter(loader))["x"], next(iter(loader))["x"]
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))["x"], e0) and not torch.equal(e0, e1)


def test_loader_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="got 0"):
        InMemoryLoader(torch.zeros(3, 1), batch_size=0, shuffle=False, drop_last=False)
    with pytest.raises(ValueError, match="'sideways'"):
        InMemoryLoader(torch.zeros(3, 1), batch_size=1, shuffle=False, drop_last=False, shard="sideways")
    with pytest.raises(ValueError, match="got 2 labels"):
        InMemoryLoader(torch.zeros(3, 1), batch_size=1, shuffle=False, drop_last=False, labels=torch.zeros(2))


# -- tabular ----------------------------------------------------------------------------------
def test_tabular_moments() -> None:
    k0, theta0, mu0, sigma0 = 4.0, 0.75, 1.0, 2.0
    dm = TabularDataModule(n_train=20000, n_val=10, n_test=10, k0=k0, theta0=theta0, mu0=mu0, sigma0=sigma0)
    dm.setup()
    x = dm.train.double()
    assert dm.data_shape == (3,) and x.shape == (20000, 3) and (x[:, 0] > 0).all()
    assert abs(x[:, 0].mean() - k0 * theta0) < 0.05  # sd of the mean 0.011
    assert abs(x[:, 0].var() - k0 * theta0**2) < 0.15  # sd of the variance 0.03
    assert abs(x[:, 1].mean() - mu0) < 0.07 and abs(x[:, 1].std() - sigma0) < 0.05
    z = (x[:, 2] - x[:, 1]) / x[:, 0]  # standard normal if x3 ~ N(x2, x1)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.03
    again = TabularDataModule(
        n_train=20000, n_val=10, n_test=10, k0=k0, theta0=theta0, mu0=mu0, sigma0=sigma0
    )
    again.setup()
    assert torch.equal(again.train, dm.train)
    bigger = TabularDataModule(n_train=50, n_val=10, n_test=10, k0=k0, theta0=theta0, mu0=mu0, sigma0=sigma0)
    bigger.setup()
    assert torch.equal(bigger.test, dm.test) and not torch.equal(bigger.train, dm.train[:50])


def test_tabular_log_density_matches_scipy() -> None:
    k0, theta0, mu0, sigma0 = 2.5, 1.5, -0.5, 0.7
    x = torch.tensor([[0.3, 0.1, -0.2], [2.0, -1.0, 1.5], [5.5, 0.8, 0.8]], dtype=torch.float64)
    got = tabular_log_density(x, k0, theta0, mu0, sigma0)
    x1, x2, x3 = x.numpy().T
    want = (
        stats.gamma.logpdf(x1, a=k0, scale=theta0)
        + stats.norm.logpdf(x2, loc=mu0, scale=sigma0)
        + stats.norm.logpdf(x3, loc=x2, scale=x1)
    )
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    dm = TabularDataModule(k0=k0, theta0=theta0, mu0=mu0, sigma0=sigma0)
    np.testing.assert_allclose(dm.log_density(x).numpy(), want, rtol=1e-12)


# -- check, tensor module, registry, Lightning ------------------------------------------------
def test_check_raises_for_bad_data_and_passes_good_data() -> None:
    good = torch.rand(20, 3)
    TensorDataModule(good, good[:5], batch_size=4).check(lvm.create_likelihood("bernoulli", (3,)))
    bad_val = good[:5].clone()
    bad_val[2, 1] = float("nan")
    dm = TensorDataModule(good, bad_val, batch_size=4)
    with pytest.raises(ValueError, match="val split.*non-finite"):
        dm.check(lvm.create_likelihood("bernoulli", (3,)))
    with pytest.raises(ValueError, match="train split.*<= 0"):
        TabularDataModule(n_train=100, n_val=0, n_test=0).check(lvm.create_likelihood("gamma", (3,)))
    nan_transform = TensorDataModule(good, batch_size=4, transform=lambda x, g: x * float("nan"))
    with pytest.raises(ValueError, match="train split.*non-finite"):  # train is checked as the model sees it
        nan_transform.check(lvm.create_likelihood("bernoulli", (3,)))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        dm.check(lvm.create_likelihood("gamma", (4,)))


def test_tensor_module_shapes_and_errors() -> None:
    dm = TensorDataModule(
        torch.zeros(6, 2, 3), test=torch.ones(4, 2, 3), train_labels=torch.arange(6), batch_size=4
    )
    assert dm.data_shape == (2, 3) and DATAMODULES.get("tensor") is TensorDataModule
    dm.setup()
    assert dm.val is None and dm.val_dataloader() == [] and len(dm.train_dataloader()) == 2
    assert torch.equal(dm.train_mean(), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"shape \(3,\); train's are \(2, 3\)"):
        TensorDataModule(torch.zeros(6, 2, 3), val=torch.zeros(2, 3))
    with pytest.raises(UnknownNameError, match="Did you mean 'tabular'"):
        DATAMODULES.create("tabluar")
    dm = DATAMODULES.create({"name": "tabular", "n_train": 5}, n_val=3)
    assert isinstance(dm, TabularDataModule) and (dm.sizes["train"], dm.sizes["val"]) == (5, 3)


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.train_idx: list[list[int]] = []
        self.val_idx: list[int] = []

    def on_train_epoch_start(self) -> None:
        self.train_idx.append([])

    def training_step(self, batch, batch_idx):
        self.train_idx[-1] += batch["index"].tolist()
        return (self.w * batch["x"].sum()) ** 2

    def validation_step(self, batch, batch_idx):
        self.val_idx += batch["index"].tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_accepts_loaders(tmp_path: Path) -> None:
    dm = TensorDataModule(torch.rand(13, 2), torch.rand(7, 2), batch_size=4, eval_batch_size=3)
    model = _Recorder()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert [sorted(e) for e in model.train_idx] == [list(range(13))] * 2 and model.train_idx[
        0
    ] != model.train_idx[1]
    assert sorted(model.val_idx) == sorted(list(range(7)) * 2)
