"""Sphinx extension of lvm's docs: API pages from a list of modules, ``--help`` rendered, references by object.

- ``lvm_api_modules`` (conf.py) lists the public modules; each gets a page ``api/<module>.rst``
  (generated at every build, git-ignored) with its ``__all__`` documented by autodoc, and
  ``api/index.rst`` lists them. An object in several modules' ``__all__`` is documented once, on the
  first page that lists it; the top-level ``lvm`` page documents what no subpackage does and
  links every other name of ``lvm.__all__`` to its page.
- ``.. lvm-help:: SUBCOMMAND`` renders ``lvm SUBCOMMAND --help`` as printed at build time.
- A reference to an lvm object through another path (its defining module, ``lvm.X`` for a name
  documented in a subpackage, or a bare name from a ``TYPE_CHECKING`` annotation) resolves to
  the page that documents the same object, so moving code between private modules does not break
  the docs. A name of ``lvm.__all__`` that no page documents is a warning (an error under -W).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: ``lvm`` subcommands whose ``--help`` the CLI page renders; ``configs`` takes no options, so its output.
HELP_COMMANDS = ("", "fit", "validate", "test", "compare", "bdmc", "configs")
_help_cache: dict[str, str] = {}


# -- objects and where they are documented ------------------------------------------------------
def _import(path: str) -> Any:
    """The object at dotted ``path`` (longest importable module prefix, then attributes), or None."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _identity(obj: Any) -> bool:
    """Whether ``obj`` is one thing by identity (a class, function, registry...), not a shared constant."""
    return not isinstance(obj, int | float | str | bytes | bool | tuple | frozenset | type(None))


def _owners(modules: list[str]) -> dict[str, list[str]]:
    """For each module, the names of its ``__all__`` that its page documents (first listing wins)."""
    seen: set[int] = set()
    out: dict[str, list[str]] = {}
    order = [m for m in modules if m != "lvm"] + (["lvm"] if "lvm" in modules else [])
    for name in order:
        mod = importlib.import_module(name)
        names = []
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if _identity(obj):
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
            names.append(attr)
        out[name] = names
    return out


def _title(module: str) -> str:
    mod = importlib.import_module(module)
    first = (mod.__doc__ or module).strip().splitlines()[0].rstrip(".")
    first = first.removeprefix(f"{module.rsplit('.', 1)[-1]}: ")  # "lvm: latent ..." on the lvm page
    word = first.split()[0]
    keep = len(word) > 1 and word.isupper()  # an acronym ("SNR of ...") keeps its case; "A kit" does not
    return f"``{module}``: {first if keep else first[0].lower() + first[1:]}"


def _attr_doc(module: str, name: str) -> list[str]:
    """The ``#:`` comment of data ``name`` re-exported by ``module``, read from the module defining it."""
    from sphinx.pycode import ModuleAnalyzer

    obj = getattr(importlib.import_module(module), name)
    homes = [m for m, mod in sorted(sys.modules.items()) if (m == module or m.startswith(module + "."))
             and mod is not None and getattr(mod, name, None) is obj]  # fmt: skip
    for home in homes:
        try:
            doc = ModuleAnalyzer.for_module(home).find_attr_docs().get(("", name))
        except Exception:  # noqa: BLE001 - no source: no comment
            doc = None
        if doc:
            return [line for line in doc if line is not None]
    return []


def _member(module: str, name: str) -> list[str]:
    """The directive that documents ``module.name``: autoclass, autofunction, or data with its comment."""
    obj = getattr(importlib.import_module(module), name)
    if isinstance(obj, type):
        return [f".. autoclass:: {name}", ""]
    if inspect.isroutine(obj):
        return [f".. autofunction:: {name}", ""]
    doc = _attr_doc(module, name)
    return [f".. py:data:: {name}", "", *(f"   {line}" for line in doc), ""]


def _page(module: str, documented: list[str], everything: list[str]) -> str:
    title = _title(module)
    lines = [title, "=" * len(title), "", f".. automodule:: {module}", "   :no-members:", ""]
    if module == "lvm":
        lines += [
            "Every name in ``lvm.__all__``, with the page that documents it:",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 70",
            "",
            "   * - name",
            "     - documented as",
        ]
        for attr in everything:
            lines += [f"   * - ``lvm.{attr}``", f"     - :py:obj:`lvm.{attr}`"]
        lines += ["", "Documented here", "---------------", ""]
    for name in documented:
        lines += _member(module, name)
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Write only on change, so Sphinx re-reads only what changed."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def generate_api_pages(app: Sphinx) -> None:
    modules = list(app.config.lvm_api_modules)
    owners = _owners(modules)
    folder = Path(app.srcdir) / "api"
    everything = list(importlib.import_module("lvm").__all__)
    for module in modules:
        _write(folder / f"{module}.rst", _page(module, owners[module], everything))
    index = [
        "API reference",
        "=============",
        "",
        "The public modules of lvm, each with the names of its ``__all__``. Types in signatures "
        "link to the documentation of PyTorch, Lightning and torchmetrics.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
        *(f"   {m}" for m in modules),
        "",
    ]
    _write(folder / "index.rst", "\n".join(index))


class _Index:
    """Documented lvm objects by identity and by last name component, built once per build."""

    def __init__(self, env: Any) -> None:
        self.by_id: dict[int, str] = {}
        self.names: list[str] = []
        for name, entry in env.domains.python_domain.objects.items():
            if not name.startswith("lvm.") or entry.aliased or entry.objtype == "module":
                continue
            obj = _import(name)
            if obj is not None and _identity(obj):
                self.by_id.setdefault(id(obj), name)
            self.names.append(name)

    def by_suffix(self, target: str) -> list[str]:
        """Documented names equal to ``target`` or ending in ``.target``."""
        return [n for n in self.names if n == target or n.endswith("." + target)]


_INDEX: list[_Index] = []  # this process's index (ids are not stable across processes: never pickled)


def _index(env: Any) -> _Index:
    if not _INDEX:
        _INDEX.append(_Index(env))
    return _INDEX[0]


#: Names that annotations carry without their public module (``torch._C.Generator``), or as written
#: under ``TYPE_CHECKING`` (``L.LightningDataModule``): the inventory name they stand for.
EXTERNAL_ALIASES = {
    "Tensor": "torch.Tensor",
    "torch._C.Generator": "torch.Generator",
    "L.LightningDataModule": "lightning.pytorch.core.LightningDataModule",
    "L.LightningModule": "lightning.pytorch.core.LightningModule",
    "L.Trainer": "lightning.pytorch.trainer.trainer.Trainer",
}


def _lvm_object(path: str) -> bool:
    """Whether ``path`` imports to an object defined in lvm (or is a field of an lvm dataclass)."""
    obj = _import(path)
    if obj is None:
        return _dataclass_field(path)
    return str(getattr(obj, "__module__", None) or "lvm").startswith("lvm")


def _exists_in_lvm(target: str, context: str | None, cls: str | None = None) -> bool:
    """Whether ``target`` names an lvm object (a private one too): an lvm path, or a name in an lvm module."""
    if target.startswith("lvm."):
        return _lvm_object(target)
    head = target.split(".")[0]
    if context and cls and _lvm_object(f"{context}.{cls}.{target}"):
        return True
    modules = [context] if context else []
    modules += [m for m in sorted(sys.modules) if m == "lvm" or m.startswith("lvm.")]
    return any(
        hasattr(sys.modules.get(m), head) and _lvm_object(f"{m}.{target}")
        for m in modules
        if sys.modules.get(m)
    )


def _dataclass_field(path: str) -> bool:
    owner, _, field = path.rpartition(".")
    cls = _import(owner)
    return field in getattr(cls, "__dataclass_fields__", {})


def resolve_by_object(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to an lvm object through another path; unlinked code for an undocumented one.

    Order: an alias of an external name (then intersphinx); an lvm path whose object is documented
    elsewhere (by identity); a bare or partial name documented under exactly one full name; an
    lvm object that exists but is not public (private helper, ``_method``): plain code, no link.
    Anything else stays unresolved, and -W fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if target in EXTERNAL_ALIASES:
        from sphinx.ext.intersphinx import missing_reference

        node["reftarget"] = EXTERNAL_ALIASES[target]
        return missing_reference(app, env, node, contnode)
    index = _index(env)
    documented = None
    if target.startswith("lvm."):
        obj = _import(target)
        if obj is not None and _identity(obj):
            documented = index.by_id.get(id(obj))
    else:
        candidates = index.by_suffix(target)
        documented = candidates[0] if len(candidates) == 1 else None
    domain = env.domains.python_domain
    if documented is not None and documented != target:
        ref = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode
        )
        if ref is not None:
            return ref
    if _exists_in_lvm(target, node.get("py:module"), node.get("py:class")):
        return contnode  # a real lvm object without a public page: shown as code, not a broken link
    return None


def check_coverage(app: Sphinx, env: Any) -> None:
    """Every name of ``lvm.__all__`` is documented on some page."""
    _INDEX.clear()
    index = _index(env)
    lvm = importlib.import_module("lvm")
    for attr in lvm.__all__:
        obj = getattr(lvm, attr)
        if f"lvm.{attr}" in env.domains.python_domain.objects:
            continue
        if _identity(obj) and id(obj) in index.by_id:
            continue
        logger.warning(
            f"lvm.{attr} is in lvm.__all__ but no API page documents it: add its module to "
            f"lvm_api_modules in docs/conf.py",
            type="lvm",
        )


# -- docstrings: plain-text maths that reST would misread ------------------------------------------
_LITERAL = re.compile(
    r"(``.+?``|:[\w:]+:`[^`]+`|`[^`]+`_?"  # literals, roles, links
    r"|(?<![\w*])\*{1,2}[^\s*][^*]*?(?<![\s\\])\*{1,2}(?![\w*]))"  # *emphasis*, **strong**
)
_STAR = re.compile(r"(?<![\w*\\])(\*{1,2})(?=[\w(])")
_BAR = re.compile(r"(?<!\\)\|")


def _escape(text: str) -> str:
    """Escape ``*`` starting a token (``(B, *event)``, ``**kwargs``) and ``|x|``, outside literals and roles."""
    parts = _LITERAL.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = _BAR.sub(r"\\|", _STAR.sub(lambda m: "\\*" * len(m.group(1)), parts[i]))
    return "".join(parts)


def preprocess_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """lvm's docstrings write maths in plain text: keep reST from reading it as markup.

    Runs before napoleon. Emphasis-like ``*`` and ``|`` are escaped (not in literals or roles,
    nor in ``>>>`` examples). An attribute's or property's docstring is kept from napoleon
    (:func:`restore_attribute_docstring`), which would take the text before its first colon,
    such as ``upper - lower, (N,)``, for a type.
    """
    in_example = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            in_example = True
        elif not stripped:
            in_example = False
        if not in_example and not stripped.startswith(("..", ">>>")):
            lines[i] = _escape(line)
    if what in _ATTRIBUTES:
        _kept[name] = list(lines)


_ATTRIBUTES = ("attribute", "data", "property")
_kept: dict[str, list[str]] = {}


def restore_attribute_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Undo napoleon on an attribute's docstring: lvm writes no ``type: description`` there."""
    if what in _ATTRIBUTES and name in _kept:
        lines[:] = _kept.pop(name)


def skip_foreign_member(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skip a method that a dependency put on an lvm class; its docs belong to the dependency's site.

    torch's ``Optimizer.__init__`` wraps ``step`` and sets it on the subclass of its first
    instance, so once a tutorial (run in this process) has trained, :class:`lvm.optim.Adam` has
    a ``step`` of its own whose code and docstring are torch's. None leaves the decision to autodoc.
    """
    if what == "class" and inspect.isroutine(obj):
        module = getattr(inspect.unwrap(obj), "__module__", None) or ""
        if module and module != "lvm" and not module.startswith("lvm."):
            return True
    return None


# -- lvm SUBCOMMAND --help --------------------------------------------------------------------
def _run_help(sub: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "LVM_DEBUG": ""}
    cmd = [
        sys.executable,
        "-m",
        "lvm.cli",
        *([sub] if sub else []),
        *([] if sub == "configs" else ["--help"]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    if sub == "configs":  # the paths of this machine's installation, shortened
        return re.sub(r"\t\S*?(lvm/configs/)", r"  .../\1", proc.stdout)
    return proc.stdout


def prefetch_help(app: Sphinx) -> None:
    """Run the ``--help`` commands side by side (each imports lvm, Lightning for fit/validate/test)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        for sub, text in zip(HELP_COMMANDS, pool.map(_run_help, HELP_COMMANDS), strict=True):
            _help_cache[sub] = text


class LvmHelp(SphinxDirective):
    """``.. lvm-help:: fit``: the output of ``lvm fit --help`` at build time, as a literal block."""

    optional_arguments = 1
    option_spec = {"caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        sub = self.arguments[0] if self.arguments else ""
        text = _help_cache.get(sub) or _run_help(sub)
        text = re.sub(r"[ \t]+\n", "\n", text).rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class LvmRun(SphinxDirective):
    """``.. lvm-run:: ARGS``: ``$ lvm ARGS``, then what it printed (stdout and stderr) and its exit status."""

    required_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        args = self.arguments[0].split()
        env = {**os.environ, "COLUMNS": "100", "LVM_DEBUG": ""}
        proc = subprocess.run([sys.executable, "-m", "lvm.cli", *args], capture_output=True, text=True,
                              env=env, timeout=300)  # fmt: skip
        text = f"$ lvm {' '.join(args)}\n{proc.stdout}{proc.stderr}$ echo $?\n{proc.returncode}"
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("lvm_api_modules", ["lvm"], "env")
    app.connect("builder-inited", generate_api_pages)
    app.connect("builder-inited", prefetch_help)
    app.connect("missing-reference", resolve_by_object, priority=600)  # after intersphinx (500)
    app.connect("autodoc-process-docstring", preprocess_docstring, priority=400)  # before napoleon
    app.connect("autodoc-process-docstring", restore_attribute_docstring, priority=600)  # after it
    app.connect("autodoc-skip-member", skip_foreign_member)
    app.connect("env-check-consistency", check_coverage)
    app.add_directive("lvm-help", LvmHelp)
    app.add_directive("lvm-run", LvmRun)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
