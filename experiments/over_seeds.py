"""Mean and standard deviation over training seeds, and reading the results files they come from.

The experiment scripts import this by its plain name after putting ``experiments/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn


def mean_sd(values: list[float]) -> dict[str, Any]:
    """``{"mean", "sd", "values"}``: the sample sd (n - 1), None for a single value."""
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.mean(values), "sd": sd, "values": values}


def add_summarize_option(parser: argparse.ArgumentParser, figures: str) -> None:
    """``--summarize RESULTS...``: run nothing, pool these results.json files (one per training seed)."""
    parser.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help="run nothing: write <out>/summary.json and summary.md, the mean and sd over these results.json "
        f"files (one per training seed) of {figures}",
    )


def fail(message: str) -> NoReturn:
    """A user's mistake: one line on stderr, exit status 2, as for a bad option."""
    print(f"run.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_runs(files: list[Path], check: Callable[[list[dict[str, Any]]], Any]) -> list[dict[str, Any]]:
    """The JSON results in ``files``, each passed through ``check`` on its own first.

    A missing, corrupt or foreign file (``check`` raises KeyError, TypeError, ValueError or
    StopIteration) ends the script with one line naming it.
    """
    runs = []
    for f in files:
        if not f.is_file():
            fail(f"no results file {f}; run the experiment for that training seed first (--out)")
        try:
            runs.append(json.loads(f.read_text()))
            check(runs[-1:])
        except (UnicodeDecodeError, KeyError, TypeError, ValueError, StopIteration) as err:
            fail(f"{f} is not a results.json of this script ({type(err).__name__}: {err})")
    return runs


def write_summary(
    files: list[Path],
    out: Path,
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]],
    write_table: Callable[[dict[str, Any], Path], None],
    command: str,
) -> dict[str, Any]:
    """``out``/summary.json (``summarize`` of the runs in ``files``, with ``command`` and the files) and
    ``out``/summary.md (``write_table``), which is also printed. Runs that ``summarize`` cannot pool
    (a KeyError) end the script with one line."""
    runs = read_runs(files, summarize)
    try:
        summary = summarize(runs)
    except KeyError as err:
        fail(f"the files in --summarize cannot be pooled: {err.args[0]!r} is missing from one")
    summary["command"] = command
    summary["files"] = [str(f) for f in files]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_table(summary, out / "summary.md")
    print((out / "summary.md").read_text(), end="")
    return summary
