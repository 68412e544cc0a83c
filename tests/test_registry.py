"""The generic Registry: names, errors, duplicates, lazily loaded entry-point plugins, renamed names."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path

import pytest

from lvm.deprecation import LVMDeprecationWarning
from lvm.likelihoods import Gaussian, create_likelihood, list_likelihoods, register_likelihood
from lvm.registry import PluginError, Registry, UnknownNameError, require_plugins

GROUP = "lvm.encoders"


class MLP:
    def __init__(self, width: int = 8) -> None:
        self.width = width


class Conv:
    pass


@pytest.fixture
def reg() -> Registry:
    r: Registry = Registry("encoder", GROUP)
    r.add("mlp", MLP)
    r.add("conv", Conv)
    return r


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)  # .dist is None


def use_entry_points(monkeypatch: pytest.MonkeyPatch, reg: Registry, *eps: EntryPoint) -> None:
    monkeypatch.setattr(reg, "_entry_points", lambda: list(eps))


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], str]]:
    """Writes an importable module ``name`` with ``source``; forgets it afterwards."""
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        written.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


# -- names and errors ----------------------------------------------------------------------
def test_unknown_name_lists_known_and_suggests_closest(reg: Registry) -> None:
    with pytest.raises(UnknownNameError) as err:
        reg.get("mpl")
    msg = str(err.value)
    assert "unknown encoder 'mpl'" in msg
    assert "Did you mean 'mlp'?" in msg
    assert "Known encoders: conv, mlp" in msg
    assert GROUP in msg  # says where a plugin would have to register
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)


def test_unknown_name_without_a_close_match_still_lists_known(reg: Registry) -> None:
    with pytest.raises(UnknownNameError, match="Known encoders: conv, mlp") as err:
        reg.get("transformer")
    assert "Did you mean" not in str(err.value)


def test_unknown_likelihood_suggests_the_builtin() -> None:
    with pytest.raises(
        ValueError,
        match=r"Did you mean 'bernoulli'\?.*Known likelihoods: .*bernoulli, beta, categorical, composite, "
        r"continuous_bernoulli, discretized_logistic, gamma, gaussian, negative_binomial, poisson, student_t, zinb, zip",
    ):
        create_likelihood("bernouli", (3,))


def test_builtin_likelihoods_are_listed() -> None:
    assert {"bernoulli", "gaussian", "gamma", "composite"} <= set(list_likelihoods())


def test_duplicate_is_an_error_unless_override(reg: Registry) -> None:
    with pytest.raises(ValueError, match=r"encoder 'mlp' is already registered.*override=True"):
        reg.add("mlp", Conv)
    assert reg.get("mlp") is MLP
    reg.add("mlp", Conv, override=True)
    assert reg.get("mlp") is Conv


def test_register_decorator_uses_name_attribute_or_class_name(reg: Registry) -> None:
    @reg.register()
    class Named:
        name = "named"

    @reg.register()
    class Plain:
        pass

    assert reg.get("named") is Named and reg.get("Plain") is Plain
    with pytest.raises(ValueError, match="already registered"):
        reg.register("conv")(Plain)


def test_duplicate_builtin_likelihood_is_refused() -> None:
    with pytest.raises(ValueError, match="likelihood 'gaussian' is already registered"):

        @register_likelihood("gaussian")
        class Other(Gaussian):
            pass

    assert create_likelihood("gaussian", 3).__class__ is Gaussian


@pytest.mark.parametrize("bad", ["", None])
def test_empty_name_is_refused(reg: Registry, bad: str | None) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add(bad, MLP)  # type: ignore[arg-type]


def test_create_passes_kwargs(reg: Registry) -> None:
    assert reg.create("mlp", width=3).width == 3


def test_create_takes_a_name_or_a_dict_spec(reg: Registry) -> None:
    assert reg.create({"name": "mlp", "width": 3}).width == 3
    assert reg.create({"name": "mlp", "width": 3}, width=5).width == 5  # keyword arguments win
    with pytest.raises(ValueError, match=r"encoder spec needs a 'name' key; got \{'width': 3\}"):
        reg.create({"width": 3})
    with pytest.raises(ValueError, match="a name or a dict with a 'name' key; got 7"):
        reg.create(7)  # type: ignore[arg-type]


def test_create_likelihood_from_dict_spec() -> None:
    lk = create_likelihood({"name": "gaussian", "scale": "fixed", "init_scale": 0.5}, (3,))
    assert isinstance(lk, Gaussian) and lk.scale_mode == "fixed" and lk.init_scale == 0.5
    # keyword arguments win over the dict
    assert (
        create_likelihood({"name": "gaussian", "scale": "fixed"}, (3,), scale="shared").scale_mode == "shared"
    )
    with pytest.raises(ValueError, match="needs a 'name' key"):
        create_likelihood({"scale": "fixed"}, (3,))


# -- entry-point plugins -------------------------------------------------------------------
def test_plugin_is_listed_without_import_and_imported_on_get(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, plugin_module: Callable[[str, str], str]
) -> None:
    mod = plugin_module("lvm_test_lazy_plugin", "class Transformer:\n    pass\n")
    use_entry_points(monkeypatch, reg, ep("transformer", f"{mod}:Transformer"))
    assert reg.names() == ["conv", "mlp", "transformer"]
    assert "transformer" in reg and list(reg) == reg.names()
    assert mod not in sys.modules
    assert reg.describe() == "conv, mlp, transformer (plugin: unknown distribution)"

    cls = reg.get("transformer")
    assert mod in sys.modules
    assert cls is sys.modules[mod].Transformer
    assert reg.get("transformer") is cls  # loaded once
    assert reg.plugin_distribution("transformer") == "unknown distribution"
    assert reg.plugin_distribution("mlp") is None


def test_plugin_typo_is_suggested(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, reg, ep("transformer", "nowhere:Transformer"))
    with pytest.raises(UnknownNameError, match=r"Did you mean 'transformer'\?.*conv, mlp, transformer"):
        reg.get("transfomer")


@pytest.mark.parametrize(
    ("source", "value", "needles"),
    [
        ("raise RuntimeError('plugin is broken')\n", "{mod}:Encoder", ["RuntimeError: plugin is broken"]),
        (
            "import lvm_no_such_dependency\n",
            "{mod}:Encoder",
            ["ModuleNotFoundError", "lvm_no_such_dependency"],
        ),
        ("class Other:\n    pass\n", "{mod}:Encoder", ["AttributeError", "Encoder"]),
        (None, "lvm_no_such_plugin_module:Encoder", ["ModuleNotFoundError", "lvm_no_such_plugin_module"]),
    ],
    ids=["raises-on-import", "missing-dependency", "missing-attribute", "missing-module"],
)
def test_broken_plugin_fails_on_use_not_on_listing(
    reg: Registry,
    monkeypatch: pytest.MonkeyPatch,
    plugin_module: Callable[[str, str], str],
    source: str | None,
    value: str,
    needles: list[str],
) -> None:
    mod = plugin_module("lvm_test_broken_plugin", source) if source is not None else ""
    use_entry_points(monkeypatch, reg, ep("broken", value.format(mod=mod)), ep("mlp", "nowhere:X"))
    assert reg.names() == ["broken", "conv", "mlp"]  # listing works
    assert reg.get("mlp") is MLP and reg.get("conv") is Conv  # other names still work

    with pytest.raises(PluginError) as err:
        reg.get("broken")
    msg = str(err.value)
    assert "encoder plugin 'broken'" in msg
    assert "distribution 'unknown distribution'" in msg  # EntryPoint.dist is None here
    assert value.format(mod=mod) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert isinstance(err.value, ImportError) and err.value.__cause__ is not None
    assert "broken" in reg.names()  # still listed; fails again on the next use
    with pytest.raises(PluginError):
        reg.create("broken")


def dist_info_entry_points(folder: Path, dist: str, line: str) -> list:
    """The entry points of an installed-looking distribution ``dist`` declaring ``line`` in GROUP."""
    info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{line}\n")
    return list(PathDistribution(info).entry_points)


def test_broken_plugin_message_names_its_distribution(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Entry points read from a real dist-info carry their distribution; the error names it."""
    eps = dist_info_entry_points(tmp_path, "lvm-bad-encoder", "bad = lvm_no_such_plugin_module:Bad")
    assert eps[0].dist is not None
    use_entry_points(monkeypatch, reg, *eps)

    assert "bad" in reg.names()
    assert reg.plugin_distribution("bad") == "lvm-bad-encoder"
    assert "bad (plugin: lvm-bad-encoder)" in reg.describe()
    with pytest.raises(
        PluginError, match=r"encoder plugin 'bad' .*distribution 'lvm-bad-encoder'.*uninstall"
    ):
        reg.get("bad")


def test_plugin_cannot_shadow_a_builtin(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, plugin_module: Callable[[str, str], str]
) -> None:
    mod = plugin_module("lvm_test_shadow_plugin", "class MLP:\n    pass\n")
    use_entry_points(monkeypatch, reg, ep("mlp", f"{mod}:MLP"))
    assert reg.names() == ["conv", "mlp"]
    assert reg.get("mlp") is MLP
    assert reg.plugin_distribution("mlp") is None
    assert mod not in sys.modules  # never imported


def test_rescan_finds_a_plugin_installed_later(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, reg)
    assert reg.names() == ["conv", "mlp"]
    use_entry_points(monkeypatch, reg, ep("late", "nowhere:Late"))
    assert reg.names() == ["conv", "mlp"]  # entry points are read once
    reg.rescan()
    assert reg.names() == ["conv", "late", "mlp"]


def test_registering_a_plugin_name_replaces_the_lazy_entry(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_entry_points(monkeypatch, reg, ep("late", "nowhere:Late"))
    assert "late" in reg.names()
    reg.add("late", Conv)
    assert reg.get("late") is Conv  # no PluginError from the unimportable entry point
    reg.remove("late")
    assert "late" not in reg.names()


def test_distributions_name_plugin_parts_and_require_plugins_says_what_to_install(
    reg: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_entry_points(
        monkeypatch, reg, *dist_info_entry_points(tmp_path, "lvm-laplace", "laplace = nowhere:Laplace")
    )
    spec = {"name": "mlp", "parts": [{"name": "conv"}, {"name": "x", "parts": ["laplace"]}]}
    assert reg.distributions(spec) == {"laplace": "lvm-laplace"}
    assert reg.distributions("mlp") == {}
    with pytest.raises(
        UnknownNameError, match=r"plugin 'gone' from distribution 'lvm-gone'.*pip install lvm-gone"
    ):
        with require_plugins({"gone": "lvm-gone"}):
            reg.get("gone")
    with pytest.raises(UnknownNameError) as err, require_plugins({"gone": "lvm-gone"}):
        reg.get("other")
    assert "pip install" not in str(err.value) and err.value.name == "other"


# -- renamed names (timm's register_model_deprecations) --------------------------------------------
def test_renamed_name_resolves_to_the_new_one_with_a_warning_naming_it(reg: Registry) -> None:
    reg.register_deprecations({"multilayer": "mlp"})
    with pytest.warns(
        LVMDeprecationWarning, match=r"encoder 'multilayer' was renamed 'mlp'.*write 'mlp'"
    ) as w:
        obj = reg.create({"name": "multilayer", "width": 3})
    assert len(w) == 1 and isinstance(obj, MLP) and obj.width == 3
    assert (
        "multilayer" in reg
        and "multilayer" not in reg.names()
        and reg.deprecations() == {"multilayer": "mlp"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.get("mlp") is MLP  # the new name: silent


def test_an_alias_cannot_hide_a_registered_name(reg: Registry) -> None:
    with pytest.raises(ValueError, match="'conv' is registered by .*it cannot be an alias"):
        reg.register_deprecations({"conv": "mlp"})
    with pytest.raises(ValueError, match="renames must map names to names"):
        reg.register_deprecations({"old": ""})
    reg.register_deprecations({"old": "gone"})
    with pytest.warns(LVMDeprecationWarning), pytest.raises(UnknownNameError, match="unknown encoder 'gone'"):
        reg.get("old")


def test_renamed_likelihood_in_an_old_checkpoint_loads_with_one_warning(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint that stored the old name of a renamed part loads, with one warning naming the new name."""
    import torch

    import lvm
    from lvm.evaluate.restore import load_vae
    from lvm.likelihoods import LIKELIHOODS

    monkeypatch.setattr(LIKELIHOODS, "_deprecated", {"normal": "gaussian"})
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["hyper_parameters"]["likelihood"] == "gaussian"
    ckpt["hyper_parameters"]["likelihood"] = "normal"  # as a version before the rename wrote it
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    for load in (lambda: lvm.VAE.load_from_checkpoint(old, weights_only=True), lambda: load_vae(old)[0]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vae = load()
        ours = [w for w in caught if issubclass(w.category, LVMDeprecationWarning)]
        assert len(ours) == 1 and "'normal' was renamed 'gaussian'" in str(ours[0].message), [
            str(w.message) for w in caught
        ]
        assert type(vae.model.likelihood) is Gaussian
        torch.testing.assert_close(vae.state_dict(), ckpt["state_dict"])
