"""lvm.evaluate.restore: a checkpoint's data module, looked up in the registry before any import, refused when its file changed."""

from __future__ import annotations

import hashlib
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import tabular_vae

from lvm.cli import main as lvm_main
from lvm.data import DATAMODULES, FileDataModule, TabularDataModule
from lvm.evaluate.restore import data_module_class, load_datamodule
from lvm.evaluation import DATAMODULE_KEY, check_data_provenance

PROBE = """
import pathlib
pathlib.Path(__file__).with_name("imported.txt").write_text("the module ran")
class DataModule:
    pass
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on the path that, imported, writes ``imported.txt`` beside itself: the file it would write."""
    (tmp_path / "lvm_probe_module.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "imported.txt"
    sys.modules.pop("lvm_probe_module", None)


def compare(ckpt: Path, out: Path, *extra: str) -> int:
    return lvm_main(["compare", "--ckpt", str(ckpt), "--estimators", "elbo", "--num-samples", "1",
                     "--no-progress", "--device", "cpu", "--out", str(out), *extra])  # fmt: skip


# -- the class path: from the registry, never imported from a name in a file ---------------------------
@pytest.mark.parametrize("class_path", ["lvm_probe_module.DataModule", "this.Zen"])
def test_a_recorded_class_path_outside_the_registry_is_refused_before_it_is_imported(
    class_path: str, checkpoint: Path, probe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt[DATAMODULE_KEY] = {"class_path": class_path, "init_args": {}}
    path = tmp_path / "foreign.ckpt"
    torch.save(ckpt, path)
    module = class_path.partition(".")[0]
    imported_before = module in sys.modules
    assert compare(path, tmp_path / "out") == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert lines[0].startswith(
        f"lvm compare: error: checkpoint {path}: data module {class_path!r} is not registered in lvm.data.DATAMODULES"
    )
    assert not probe.exists() and "Beautiful is better than ugly" not in out + err  # `import this` prints it
    assert (module in sys.modules) == imported_before
    cfg = tmp_path / "data.yaml"  # the same from a data config
    cfg.write_text(yaml.safe_dump({"data": {"class_path": class_path}}))
    assert compare(path, tmp_path / "out", "--data-config", str(cfg)) == 2
    assert f"data config {cfg}: data module {class_path!r} is not registered" in capsys.readouterr().err
    assert not probe.exists() and (module in sys.modules) == imported_before


def test_registered_names_and_the_paths_of_registered_classes_are_accepted() -> None:
    for path in ("tabular", "lvm.data.TabularDataModule", "lvm.data.tabular.TabularDataModule"):
        assert data_module_class(path, "here") is TabularDataModule
    with pytest.raises(ValueError, match=r"^here: data module 'lvm.data.TabularDataModul' is not registered .*"
                       r"Did you mean 'lvm.data.TabularDataModule'\? Registered: binarized_mnist "
                       r"\(lvm.data.BinarizedMNISTDataModule\), files \(lvm.data.FileDataModule\)"):  # fmt: skip
        data_module_class("lvm.data.TabularDataModul", "here")
    with pytest.raises(ValueError, match="'lvm.vae.VAE' is not registered"):
        data_module_class("lvm.vae.VAE", "here")


class PluginDataModule(TabularDataModule):
    """A data module a plugin declares through an entry point."""


def test_a_plugin_data_module_is_found_by_the_path_lvm_fit_records(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="probe_tabular", value=f"{__name__}:PluginDataModule", group="lvm.datamodules")
    monkeypatch.setattr(DATAMODULES, "_entry_points", lambda: [ep])
    DATAMODULES.rescan()
    try:
        assert data_module_class(f"{__name__}.PluginDataModule", "here") is PluginDataModule
        assert data_module_class("probe_tabular", "here") is PluginDataModule
        with pytest.raises(ValueError, match=f"'{__name__}.TabularDataModule' is not registered"):
            data_module_class(
                f"{__name__}.TabularDataModule", "here"
            )  # a re-export the plugin does not declare
    finally:
        DATAMODULES.remove("probe_tabular")
        monkeypatch.undo()
        DATAMODULES.rescan()


# -- data provenance: the file a checkpoint was trained on ------------------------------------------------
def fit_on_csv(folder: Path) -> tuple[Path, Path]:
    """A checkpoint after one step on 40 rows of a CSV split 0.5 / 0.25 / 0.25 with seed 3, and the CSV."""
    rows = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)).tolist()
    data = folder / "rows.csv"
    data.write_text("a,b,c\n" + "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rows))
    dm = FileDataModule(str(data), split=[0.5, 0.25, 0.25], batch_size=8, seed=3)
    torch.manual_seed(0)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)  # fmt: skip
    trainer.fit(tabular_vae(), datamodule=dm)
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder / "model.ckpt", data


def test_a_changed_data_file_is_one_line_unless_the_data_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, data = fit_on_csv(tmp_path)
    record = torch.load(ckpt, weights_only=True)[DATAMODULE_KEY]
    old = hashlib.sha256(data.read_bytes()).hexdigest()
    assert record["files"] == {"train": {"path": str(data), "bytes": data.stat().st_size, "sha256": old}}
    assert (record["init_args"]["split"], record["init_args"]["seed"]) == ([0.5, 0.25, 0.25], 3)
    assert compare(ckpt, tmp_path / "same") == 0  # unchanged: 10 test rows of 40
    assert (tmp_path / "same" / "compare.json").read_text().count(old) == 1  # the report names the data
    capsys.readouterr()
    with data.open("a") as f:
        f.write("0.1,0.2,0.3\n" * 20)
    new = hashlib.sha256(data.read_bytes()).hexdigest()
    assert compare(ckpt, tmp_path / "changed") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0] == (
        f"lvm compare: error: data file {data} has changed since checkpoint {ckpt} was written: sha256 "
        f"{old} ({record['files']['train']['bytes']} bytes) then, {new} ({data.stat().st_size} bytes) now; "
        "to evaluate on the file as it is, pass the data explicitly (--data-config)"
    )
    assert not (tmp_path / "changed").exists()
    cfg = tmp_path / "data.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"class_path": record["class_path"], "init_args": record["init_args"]}})
    )
    assert compare(ckpt, tmp_path / "given", "--data-config", str(cfg)) == 0
    assert '"num_datapoints": 15' in (tmp_path / "given" / "compare.json").read_text()  # 60 rows now


def test_check_data_provenance_and_records_without_files(tmp_path: Path) -> None:
    ckpt, data = fit_on_csv(tmp_path)
    checkpoint = torch.load(ckpt, weights_only=True)
    dm, spec = load_datamodule(checkpoint, source="here")
    assert spec == checkpoint[DATAMODULE_KEY] and isinstance(dm, FileDataModule)
    data.write_text(data.read_text().replace("a,b,c", "a,b,d"))  # same size, other content
    with pytest.raises(ValueError, match=rf"^data file {data} has changed since here was written: sha256 "):
        check_data_provenance(checkpoint[DATAMODULE_KEY], dm, "here")
    del checkpoint[DATAMODULE_KEY]["files"]  # a record written before lvm kept the files' hashes
    dm, spec = load_datamodule(checkpoint, source="here")
    assert "files" not in spec and isinstance(dm, FileDataModule)
