"""The sweep's results file: one CSV row per run, append-only, resumable, with provenance.

The file is append-only: each finished run adds one line, written with a single `write` to a
file opened for appending and flushed to disk, so a killed sweep (even kill -9) loses at most
the run in flight. A line cut short by a kill is never read as a row: it is dropped when the
file is read, and cut off before the next append. A results file that cannot be read, or whose
columns differ (an older version's), is never written to: the sweep stops with an error naming
it; one from before the precision column is read as all fp32, and extended at fp32 only
(LEGACY_COLUMNS). Each row records the commit and package versions that produced it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from hap import allocator
from hap.errors import UserError

KEY = ["method", "task", "model", "seed", "target_sparsity", "settings", "run_key"]
COLUMNS = KEY + [
    "status",
    "error",
    "ablation",
    "precision",
    "steps",
    "stopped",
    "selection",
    "budget",
    "n_edges",
    "live_edges",
    "sparsity",
    "circuit",
    "kl",
    "logit_diff",
    "accuracy",
    "exact_match",
    "faithfulness",
    "full_logit_diff",
    "wall_s",
    "cpu_s",
    "peak_mem_mb",
    "attribution_s",
    "pruning_s",
    "step_s",
    "device",
    "threads",
    "n_train",
    "n_val",
    "n_test",
    "config",
    "git_commit",
    "versions",
]
# A file written before the precision column: every row ran at fp32. It is read with the column
# filled in, and extended at fp32 in its own layout (so a sweep begun then can be resumed), but
# takes no row at another precision.
LEGACY_COLUMNS = [c for c in COLUMNS if c != "precision"]
PACKAGES = ("hap-bench", "torch", "transformer-lens", "transformers")


class ResultsError(UserError):
    """The results file exists but cannot be used."""


def _complete_text(path: Path) -> str:
    """The file's text up to its last newline: a line cut short by a kill is no row."""
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError as error:
        raise ResultsError(
            f"{path} is corrupt (UnicodeDecodeError); move it away or repair it -- nothing was "
            "overwritten"
        ) from error
    return text[: text.rfind("\n") + 1]


def read_results(path: Path) -> pd.DataFrame:
    """The rows already written, or an empty table; raises ResultsError for an unusable file."""
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    text = _complete_text(path)
    if not text:
        return pd.DataFrame(columns=COLUMNS)
    try:
        table = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ResultsError(
            f"{path} is corrupt ({type(error).__name__}); move it away or repair it -- "
            "nothing was overwritten"
        ) from error
    missing = [c for c in KEY if c not in table.columns]
    if missing:
        raise ResultsError(
            f"{path} lacks the columns {missing}; it is not a sweep results file of this version "
            "-- move it away or pass another --out"
        )
    if list(table.columns) == LEGACY_COLUMNS:
        table.insert(COLUMNS.index("precision"), "precision", "fp32")
    elif list(table.columns) != COLUMNS:
        raise ResultsError(
            f"{path} was written with other columns (an older hap-bench?); move it away or pass "
            "another --out -- nothing was overwritten"
        )
    return table


def _one_line(value: object) -> object:
    return " ".join(value.split()) if isinstance(value, str) else value


def _header(path: Path) -> list[str] | None:
    """The file's column names, or None for a missing or empty file."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        return next(csv.reader([file.readline()]), None)


def check_precision(path: Path, precision: str) -> None:
    """Refuse rows at `precision` for a file from before the precision column (all fp32),
    before any run: such a file is extended at fp32 only."""
    if precision != "fp32" and _header(path) == LEGACY_COLUMNS:
        raise ResultsError(
            f"{path} was written before the precision column (every row fp32); a {precision} "
            "run cannot be added to it -- pass another --out"
        )


def append_row(path: Path, row: dict) -> None:
    """Add one row with a single write to the end of the file (header first on a new file),
    flushed to disk, in the file's own layout (LEGACY_COLUMNS for an fp32 row of an old file).
    A partial last line left by a killed writer is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header, columns = _header(path), COLUMNS
    if header is None:
        writer.writerow(COLUMNS)
    else:
        if header == LEGACY_COLUMNS:
            check_precision(path, row.get("precision") or "fp32")
            columns = LEGACY_COLUMNS
        complete = len(_complete_text(path).encode())
        if complete != path.stat().st_size:
            os.truncate(path, complete)
    writer.writerow([_one_line(row.get(column)) for column in columns])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, buffer.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def run_key(
    method: str,
    task: str,
    model: str,
    seed: int,
    sparsity: float,
    config,
    sizes: dict,
    precision: str,
) -> str:
    """The resume key of one run: a hash of everything that decides its result. The precision
    is hashed only where it is not fp32, so an fp32 run keeps the key it had before there was a
    choice (and the circuit files named by it); a bf16 or tf32 run of the same point is another
    result, under another key."""
    data = {
        "method": method,
        "task": task,
        "model": model,
        "seed": seed,
        "target_sparsity": round(sparsity, 6),
        "config": asdict(config),
        **sizes,
        **({"precision": precision} if precision != "fp32" else {}),
    }
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict:
    """The commit and package versions that produce a row (recorded in every row); the commit
    ends in "+dirty" where the library's tracked files (hap/, baselines/) differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        # tracked files that differ from the commit: the commit alone does not reproduce the row
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "hap", "baselines"],
            capture_output=True,
            cwd=Path(__file__).parent,
        ).returncode
        commit += "+dirty" if dirty == 1 else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"git_commit": commit, "versions": json.dumps(versions, sort_keys=True)}


def write_metadata(config, executor, device: str | None, table=None) -> Path:
    """Append this invocation's machine, executor and settings to `<out>.meta.json`
    ({"runs": [...]}): one entry per `hap bench` call, so a resumed or extended sweep keeps every
    earlier entry. With Ray, the machine is the driver's; each row records its worker's device
    and threads. `rows_by_commit`: the file's rows (after this call) counted by the commit that
    produced each, so a file grown over several commits says so at a glance."""
    import psutil

    meta = {
        **provenance(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executor": executor.name,
        "executor_settings": {k: v for k, v in vars(executor).items() if k != "name"},
        "device": device,
        "cpu": _cpu_name(),
        "cpu_count": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": torch.get_num_threads(),
        "allocator": allocator.setting(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    if table is not None and "git_commit" in table and len(table):
        counts = table["git_commit"].fillna("unknown").value_counts()
        meta["rows_by_commit"] = {str(k): int(v) for k, v in counts.items()}
    path = config.out.with_suffix(".meta.json")
    runs = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
            runs = old["runs"] if isinstance(old, dict) and "runs" in old else [old]
        except json.JSONDecodeError:
            runs = []
    path.write_text(json.dumps({"runs": runs + [meta]}, indent=2) + "\n")
    return path
