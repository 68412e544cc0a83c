"""Pins for ci/min-versions: each of torch, lightning, torchmetrics and jsonargparse at the lower bound
that pyproject.toml declares (``name>=X`` -> ``name==X``), plus the torchvision built for that torch.

Usage: python3 ci/bounds.py  (prints one requirement per line)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PACKAGES = ("torch", "lightning", "torchmetrics", "jsonargparse")


def lower_bounds(pyproject: Path) -> dict[str, str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", dep.strip())
        if m and m.group(1) in PACKAGES:
            found[m.group(1)] = (m.group(2) or "", m.group(3))
    missing = [p for p in PACKAGES if p not in found]
    if missing:
        sys.exit(f"pyproject.toml declares no lower bound (>=) for {', '.join(missing)}")
    return {name: f"{name}{extra}=={version}" for name, (extra, version) in found.items()}


def main() -> int:
    pins = lower_bounds(Path(__file__).resolve().parents[1] / "pyproject.toml")
    major, minor = (int(x) for x in pins["torch"].split("==")[1].split(".")[:2])
    if major != 2:
        sys.exit(f"no torchvision rule for torch {major}.{minor}")
    pins["torchvision"] = f"torchvision=={0}.{minor + 15}.*"  # torchvision 0.(m+15) is built for torch 2.m
    print("\n".join(pins.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
