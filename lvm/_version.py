"""The version of lvm, in one place: read by ``lvm.__version__`` and by the build (pyproject.toml)."""

__version__ = "0.2.0.dev0"
