"""Read an offline W&B run back from its ``run-<id>.wandb`` file (a LevelDB-style log of protobuf records)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32768  # LevelDB log block size; records never straddle a block header
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline run recorded: config, history rows, artifacts, and the run folder."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> set[str]:
        """Every key that appears in some history row."""
        return {k for row in self.history for k in row}

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        return [row for row in self.history if key in row]


def records(path: Path) -> list[Any]:
    """The protobuf ``Record`` messages of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file: starts with {data[:7]!r}"
    out, pos, buf = [], 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (_FULL, _FIRST) else buf + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
    return out


def read_run(run_dir: Path) -> OfflineRun:
    """Parse ``run_dir`` (an ``offline-run-*`` folder)."""
    (file,) = run_dir.glob("run-*.wandb")
    run = OfflineRun(run_dir)
    for r in records(file):
        kind = r.WhichOneof("record_type")
        if kind == "config":
            run.config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in r.history.item:  # media come as nested keys: ("figures/samples", "path")
                *parents, leaf = [item.key] if item.key else list(item.nested_key)
                node = row
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = json.loads(item.value_json)
            run.history.append(row)
        elif kind == "artifact":
            a = r.artifact
            files = {e.path: e.local_path for e in a.manifest.contents}
            run.artifacts.append({"name": a.name, "type": a.type, "aliases": list(a.aliases), "files": files})
    return run
