"""Run every benchmark side by side, one process per measurement, and write JSON plus a table.

Each training case runs in a fresh process (``bench_train.py``), the cases interleaved round by
round (A B C D, then D C B A, ...) so that drift in the machine's load hits them alike; each is
compared with the hand-written loop it must match, round by round (the paired ratio). The
estimator benchmark (``bench_estimator.py``, which interleaves the estimator and its
decoder-forward floor inside one process) runs after them, then K = 100,000 alone in a fresh
process for its peak memory. The children run in the user's environment: the runner sets no
OpenMP, MKL or allocator variable and no thread count unless a flag asks for one
(``--threads``, ``--omp-wait-policy``, ``--env``), and then every row says so.

Usage:
    python benchmarks/run.py                  # everything, 5 rounds
    python benchmarks/run.py --quick          # a smaller smoke run (about 2 minutes)
    python benchmarks/run.py --only train --repeats 7 --peers
    python benchmarks/run.py --omp-wait-policy passive   # an opt-in setting, labelled in every row
    python benchmarks/run.py --only estimator --busy 1   # beside one spinning neighbour (a shared machine)
    python benchmarks/run.py --compare benchmarks/results/OLD.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Table rows: (row name, case, baseline case it is compared with, target ratio or None, what it is).
Row = tuple[str, str, str, "float | None", str]
TRAIN_ROWS: list[Row] = [
    ("handwritten", "handwritten", "handwritten", None, "hand-written loop, batches sliced from the tensor"),
    ("lvm", "lvm", "handwritten", 1.10, "lvm.VAE + TensorDataModule, Trainer.fit"),
    (
        "handwritten_tuned",
        "handwritten_tuned",
        "handwritten",
        None,
        "hand-written loop with lvm's kernels (fused Adam, Bernoulli)",
    ),
    (
        "lvm_vs_tuned",
        "lvm",
        "handwritten_tuned",
        None,
        "lvm / handwritten_tuned: the framework's own overhead",
    ),
    (
        "handwritten_dataloader",
        "handwritten_dataloader",
        "handwritten",
        None,
        "hand-written loop, default DataLoader",
    ),
    (
        "lightning_default",
        "lightning_default",
        "handwritten",
        None,
        "minimal LightningModule, default DataLoader",
    ),
]
PEER_ROWS: list[Row] = [
    ("pythae", "pythae", "handwritten", None, "pythae VAE, TrainingPipeline (peer; --peers)"),
    ("pyro", "pyro", "handwritten", None, "Pyro SVI, TraceMeanField_ELBO (peer; --peers)"),
]
CONV_ROWS: list[Row] = [
    (
        "handwritten_conv",
        "handwritten_conv",
        "handwritten_conv",
        None,
        "hand-written loop, conv net, (1, 28, 28)",
    ),
    ("lvm_conv", "lvm_conv", "handwritten_conv", None, "lvm.VAE conv / conv_transpose, (1, 28, 28)"),
]
ESTIMATOR_TARGET = 1.3
MEMORY_TARGET_MB = 2048.0


def launch(cmd: list[str], env: dict[str, str], out_flag: str) -> tuple[dict[str, Any], float, float]:
    """Run ``cmd OUT_FLAG FILE``; return (FILE's JSON, the wall time, the peak RSS in MiB from wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        log = Path(tmp) / "log.txt"
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [*cmd, out_flag, str(out)], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent
            )
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0 or not out.exists():
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc}):\n{log.read_text()[-4000:]}")
        return json.loads(out.read_text()), wall, usage.ru_maxrss / 1024


@contextlib.contextmanager
def neighbours(n: int) -> Iterator[None]:
    """``n`` processes that spin on a core each for as long as the block runs (a shared machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def summary(values: list[float]) -> dict[str, Any]:
    """Median, quartiles (exclusive method; the extremes for fewer than 2 values), min, max and all values."""
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0], None, values[0])
    return {
        "median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values),
        "all": values,
    }  # fmt: skip


def startup_times(env: dict[str, str], repeats: int = 5) -> dict[str, Any]:
    """Seconds of ``import lvm`` (in the process, and the whole process) and of ``lvm --help``.

    Each is run ``repeats`` times in a fresh interpreter; ``python -c pass`` is the interpreter's
    own start, for reference. ``lvm --help`` is ``python -m lvm.cli --help`` (the ``lvm`` script
    runs the same ``main``).
    """
    timed = "import time; t = time.perf_counter(); import lvm; print(time.perf_counter() - t)"
    cmds = {
        "python_start_s": [sys.executable, "-c", "pass"],
        "import_lvm_process_s": [sys.executable, "-c", "import lvm"],
        "lvm_help_s": [sys.executable, "-m", "lvm.cli", "--help"],
    }
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    inside: list[float] = []
    for _ in range(repeats):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=HERE.parent)
            walls[name].append(time.perf_counter() - t0)
        out = subprocess.run(
            [sys.executable, "-c", timed],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE.parent,
        )
        inside.append(float(out.stdout.strip().splitlines()[-1]))
    return {"import_lvm_s": summary(inside), **{k: summary(v) for k, v in walls.items()}}


_VERSIONS = """
import json, lightning, numpy, torch, lvm
print(json.dumps({"torch": torch.__version__, "lightning": lightning.__version__, "numpy": numpy.__version__,
                  "lvm": lvm.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
"""


def machine(env: dict[str, str]) -> dict[str, Any]:
    """The machine and the versions; the versions come from a child, so this process never imports torch.

    (A child's peak RSS as the kernel reports it includes its parent's at fork time, so the
    runner stays small to keep the children's figures honest.)
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = json.loads(
        subprocess.run([sys.executable, "-c", _VERSIONS], capture_output=True, text=True, check=True, env=env)
        .stdout.strip()
        .splitlines()[-1]
    )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "lvm"], capture_output=True, text=True, cwd=HERE.parent
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", None
    return {
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "python": platform.python_version(), **versions,
        "git_commit": commit, "lvm_dirty": dirty,
        "env": {k: env[k] for k in sorted(env) if k.startswith(_ENV_PREFIXES)},
    }  # fmt: skip


def run_training(rows: list[Row], n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Each case ``args.repeats`` times, one process each, interleaved; one result per row.

    A row's ``ratio`` is the median over rounds of its paired ratio (the case's epoch over its
    baseline's in the same round), ``ratio_of_medians`` the ratio of the two medians.
    """
    cases = list(dict.fromkeys(r[1] for r in rows))
    wall: dict[str, list[float]] = {c: [] for c in cases}
    cpu: dict[str, list[float]] = {c: [] for c in cases}
    fit: dict[str, list[float]] = {c: [] for c in cases}
    rss: dict[str, list[float]] = {c: [] for c in cases}
    for r in range(args.repeats):
        for case in cases if r % 2 == 0 else cases[::-1]:
            cmd = [
                sys.executable,
                str(HERE / "bench_train.py"),
                "--case",
                case,
                "--n",
                str(n),
                "--epochs",
                "1",
                *_threads_flag(args),
            ]
            res, _, peak = launch(cmd, env, "--json")
            wall[case].append(res["epoch_s"][0])
            cpu[case].append(res["epoch_cpu_s"][0])
            fit[case].append(res["fit_s"])
            rss[case].append(peak)
            print(
                f"  round {r + 1}/{args.repeats} {case:<24} epoch {res['epoch_s'][0]:7.2f} s "
                f"(cpu {res['epoch_cpu_s'][0]:.2f} s)",
                flush=True,
            )
    out: dict[str, Any] = {}
    for name, case, base, target, what in rows:
        s = summary(wall[case])
        paired = summary([a / b for a, b in zip(wall[case], wall[base])])
        ratio = paired["median"]
        out[name] = {
            "what": what, "case": case, "n": n, "baseline": base, "env": settings(env, args),
            "epoch_s": s, "epoch_cpu_s": summary(cpu[case]), "fit_s": summary(fit[case]),
            "ratio": ratio, "paired_ratio": paired, "ratio_of_medians": s["median"] / statistics.median(wall[base]),
            "cpu_ratio": statistics.median(cpu[case]) / statistics.median(cpu[base]),
            "target": target, "ok": None if target is None else ratio <= target,
            "datapoints_per_s": n / s["median"], "peak_rss_mb": max(rss[case]),
        }  # fmt: skip
    return out


def run_estimator(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any] | None:
    """``bench_estimator.py`` (estimator and floor interleaved in one process), then the memory run.

    The memory run (K = ``--memory-k``) is launched from here, a process that never imported
    torch, so its peak RSS is its own.
    """
    script = HERE / "bench_estimator.py"
    if not script.exists():
        print("  bench_estimator.py not found: skipped", flush=True)
        return None
    k, memory_k = (500, 10_000) if args.quick else (args.k, args.memory_k)
    cmd = [
        sys.executable,
        str(script),
        "--k",
        str(k),
        "--batch",
        "100",
        "--repeats",
        str(args.repeats),
        *_threads_flag(args),
        "--memory-k",
        "0",
    ]
    res, wall, peak = launch(cmd, env, "--out")
    res["process_peak_rss_mb"] = peak
    res["env"] = settings(env, args)
    res["target"] = ESTIMATOR_TARGET
    sections = estimator_sections(res)
    res["ratio_shipped"] = sections[0][1].get("ratio") if sections else None
    res["ok"] = res["ratio_shipped"] is not None and res["ratio_shipped"] <= ESTIMATOR_TARGET
    print(f"  estimator K={k}: {wall:.0f} s", flush=True)
    if memory_k:
        mem_cmd = [
            sys.executable,
            str(script),
            "--memory-only",
            "--k",
            str(memory_k),
            "--batch",
            "100",
            *_threads_flag(args),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            mem_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent, text=True
        )
        text = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(mem_cmd)} failed:\n{text[-4000:]}")
        mem = json.loads(text.strip().splitlines()[-1])
        mem["process_peak_rss_mb"] = usage.ru_maxrss / 1024
        mem["target_mb"] = MEMORY_TARGET_MB
        mem["ok"] = mem["process_peak_rss_mb"] <= MEMORY_TARGET_MB
        res["memory_run"] = mem
        print(f"  memory K={memory_k}: {time.perf_counter() - t0:.0f} s", flush=True)
    return res


def estimator_sections(est: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (label, section) pairs of ``bench_estimator.py``'s JSON that hold a floor and an estimator.

    The first is the configuration lvm ships (the tuned allocator where measured), which the target uses.
    """
    if "floor" in est:
        return [("", est)]
    names = [n for n in ("tuned_allocator", "default_allocator") if isinstance(est.get(n), dict)]
    names += [n for n, v in est.items() if isinstance(v, dict) and "floor" in v and n not in names]
    return [(f" [{n}]", est[n]) for n in names]


def table(result: dict[str, Any]) -> str:
    """The results as a fixed-width table: one row per comparison."""
    head = (
        f"{'row':<26} {'median s':>9} {'min-max s':>13} {'ratio':>6} {'min-max':>11} {'target':>9} "
        f"{'cpu ratio':>9} {'items/s':>8} {'peak MB':>8}  what"
    )
    label = " ".join(f"{k}={v}" for k, v in (result.get("settings") or {}).items())
    lines = [f"settings: {label or 'none (the environment as given)'}", head, "-" * len(head)]

    def row(
        name: str,
        med: float,
        lo: float,
        hi: float,
        ratio: float | None = None,
        target: float | None = None,
        cpu_ratio: float | None = None,
        rate: float | None = None,
        mb: float | None = None,
        what: str = "",
        spread: tuple[float, float] | None = None,
    ) -> None:
        r = "" if ratio is None else f"{ratio:.3f}"
        sp = "" if spread is None else f"{spread[0]:.2f}-{spread[1]:.2f}"
        t = (
            ""
            if target is None or ratio is None
            else f"<={target:.2f} " + ("ok" if ratio <= target else "NO")
        )
        c = "" if cpu_ratio is None else f"{cpu_ratio:.3f}"
        lines.append(
            f"{name:<26} {med:9.3f} {f'{lo:.2f}-{hi:.2f}':>13} {r:>6} {sp:>11} {t:>9} {c:>9} "
            f"{'' if rate is None else f'{rate:8.0f}':>8} {'' if mb is None else f'{mb:8.0f}':>8}  {what}"
        )

    for group in ("train", "conv"):
        for name, c in (result.get(group) or {}).items():
            e = c["epoch_s"]
            row(
                name,
                e["median"],
                e["min"],
                e["max"],
                c["ratio"],
                c["target"],
                c.get("cpu_ratio"),
                c["datapoints_per_s"],
                c["peak_rss_mb"],
                f"{c['what']} (n={c['n']}, 1 epoch)" + _label(c.get("env")),
                (c["paired_ratio"]["min"], c["paired_ratio"]["max"]) if "paired_ratio" in c else None,
            )
    est = result.get("estimator")
    if est:
        k, b = est.get("k"), est.get("batch", 100)
        for i, (label, sec) in enumerate(estimator_sections(est)):
            for key, s in sec.items():
                if not (
                    isinstance(s, dict)
                    and "median_s" in s
                    and (key == "floor" or key.startswith("estimator"))
                ):
                    continue
                ratio = None if key == "floor" else sec.get("ratio" + key.removeprefix("estimator"))
                what = (
                    "decoder forward passes alone"
                    if key == "floor"
                    else f"{key}: ImportanceSampling.estimate"
                )
                name = key if key in ("floor", "estimator") else key.removeprefix("estimator_")
                target = ESTIMATOR_TARGET if key == "estimator" and i == 0 else None
                row(
                    f"{name} K={k}",
                    s["median_s"],
                    s["min_s"],
                    s["max_s"],
                    ratio,
                    target,
                    None,
                    b / s["median_s"],
                    None,
                    f"{what}, {b} datapoints{label}" + _label(est.get("env")),
                    _spread(sec, key),
                )
        mem = est.get("memory_run") or {}
        if "process_peak_rss_mb" in mem:
            ok = "ok" if mem["ok"] else "NO"
            lines.append(
                f"{'memory K=' + str(mem.get('k')):<26} {mem.get('seconds', float('nan')):9.3f} {'':>13} "
                f"{'':>6} {'':>11} {'<=2048MB ' + ok:>9} {'':>9} {'':>8} {mem['process_peak_rss_mb']:8.0f}  "
                f"peak RSS of a fresh process, {mem.get('batch')} datapoints"
            )
    st = result.get("startup")
    if st:
        lines.append(
            f"startup (median of {len(st['import_lvm_s']['all'])} fresh processes): import lvm "
            f"{st['import_lvm_s']['median']:.2f} s in the process, {st['import_lvm_process_s']['median']:.2f} s "
            f"with the interpreter (python -c pass {st['python_start_s']['median']:.2f} s); lvm --help "
            f"{st['lvm_help_s']['median']:.2f} s"
        )
    return "\n".join(lines)


def _label(env: dict[str, str] | None) -> str:
    return " [" + " ".join(f"{k}={v}" for k, v in env.items()) + "]" if env else ""


def _spread(sec: dict[str, Any], key: str) -> tuple[float, float] | None:
    """(min, max) of the per-round paired ratio of an estimator row, where recorded."""
    p = sec.get("paired_ratio" + key.removeprefix("estimator"))
    return (p["min"], p["max"]) if key != "floor" and isinstance(p, dict) else None


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    lines = [f"{'ratio vs baseline':<28} {'old':>8} {'new':>8}"]
    for group in ("train", "conv"):
        for name, c in (new.get(group) or {}).items():
            o = (old.get(group) or {}).get(name)
            if o:
                lines.append(f"{group + '/' + name:<28} {o['ratio']:8.3f} {c['ratio']:8.3f}")
    o, n = (
        (old.get("estimator") or {}).get("ratio_shipped"),
        (new.get("estimator") or {}).get("ratio_shipped"),
    )
    if o is not None and n is not None:
        lines.append(f"{'estimator/ratio':<28} {o:8.3f} {n:8.3f}")
    return "\n".join(lines)


#: Variables recorded in the JSON's ``machine.env`` when set (by the user or by an opt-in flag).
_ENV_PREFIXES = ("OMP_", "MKL_", "GOMP_", "KMP_", "MALLOC_", "LD_PRELOAD", "ATEN_", "PYTORCH_", "TORCH_")


def _child_env(args: argparse.Namespace) -> dict[str, str]:
    """The children's environment: this process's, plus only what an opt-in flag asks for."""
    return dict(os.environ, **_opted_env(args))


def _opted_env(args: argparse.Namespace) -> dict[str, str]:
    """The variables the flags set (``--omp-wait-policy``, ``--env NAME=VALUE``); none by default."""
    env: dict[str, str] = {}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"run.py: --env expects NAME=VALUE; got {item!r}")
        env[name] = value
    return env


def settings(env: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    """What the runner set for the children (the label of every row): opted-in variables and threads."""
    out = dict(_opted_env(args))
    if args.threads:
        out["torch.set_num_threads"] = str(args.threads)
    if args.busy:
        out["busy_neighbours"] = str(args.busy)
    return out


def _threads_flag(args: argparse.Namespace) -> list[str]:
    return ["--threads", str(args.threads)] if args.threads else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="6,000 datapoints, K=500, 1 repeat: a smoke run")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved rounds, one process per case each (default 5; quick: 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads in every child (default: not called, torch's own default; labelled when set)",
    )
    parser.add_argument("--n", type=int, default=60_000, help="datapoints of the MLP training cases")
    parser.add_argument("--conv-n", type=int, default=10_000, help="images of the conv training cases")
    parser.add_argument("--k", type=int, default=5000, help="K of the estimator benchmark")
    parser.add_argument("--memory-k", type=int, default=100_000, help="K of the peak-memory run")
    parser.add_argument(
        "--only",
        choices=("train", "conv", "estimator"),
        nargs="+",
        default=None,
        help="run only these groups",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also train with pythae and Pyro (installed apart from lvm; see README.md)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=("passive", "active"),
        default=None,
        help="opt in: set OMP_WAIT_POLICY in every child (default: not set, as a user runs; labelled when set)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="opt in: set an environment variable in every child (repeatable; labelled in every row)",
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="run N spinning neighbour processes (one busy core each) during the measurement; labelled in every row",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default benchmarks/results/<time>.json)"
    )
    parser.add_argument("--compare", type=Path, default=None, help="an earlier result JSON to compare with")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    n, conv_n = (6000, 1000) if args.quick else (args.n, args.conv_n)
    groups = set(args.only or ("train", "conv", "estimator"))

    env = _child_env(args)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "time": stamp,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "repeats": args.repeats,
        "threads": args.threads,
        "quick": args.quick,
        "settings": settings(env, args),
        "machine": machine(env),
    }
    t0 = time.perf_counter()
    with neighbours(args.busy):
        if "train" in groups:
            print(f"training, {n} datapoints, {args.repeats} processes per case:", flush=True)
            result["train"] = run_training(TRAIN_ROWS + (PEER_ROWS if args.peers else []), n, args, env)
        if "conv" in groups:
            print(f"conv training, {conv_n} images, {args.repeats} processes per case:", flush=True)
            result["conv"] = run_training(CONV_ROWS, conv_n, args, env)
        if "estimator" in groups:
            print("estimator:", flush=True)
            result["estimator"] = run_estimator(args, env)
        print("startup times:", flush=True)
        result["startup"] = startup_times(env, 3 if args.quick else 5)
        result["machine"]["load_average_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - t0

    out = args.out or HERE / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(
        f"\n{m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, lightning {m['lightning']}, "
        f"load {m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}; median of {args.repeats} "
        "interleaved rounds; ratio: median of the per-round paired ratios, min-max its spread"
    )
    print(table(result))
    if args.compare:
        print("\n" + compare(json.loads(args.compare.read_text()), result))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
