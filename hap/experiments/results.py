"""The sweep's results file: one CSV row per run, append-only, resumable, with provenance.

The file is append-only: each finished run adds one line, written with a single `write` to a
file opened for appending and flushed to disk, so a killed sweep (even kill -9) loses at most
the run in flight. A line cut short by a kill is never read as a row: it is dropped when the
file is read, and cut off before the next append. A results file that cannot be read, or whose
columns differ (an older version's), is never written to: the sweep stops with an error naming
it. Each row records the commit and package versions that produced it.
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

from hap.errors import UserError

KEY = ["method", "task", "model", "seed", "target_sparsity", "settings", "run_key"]
COLUMNS = KEY + [
    "status",
    "error",
    "ablation",
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
    if list(table.columns) != COLUMNS:
        raise ResultsError(
            f"{path} was written with other columns (an older hap-bench?); move it away or pass "
            "another --out -- nothing was overwritten"
        )
    return table


def _one_line(value: object) -> object:
    return " ".join(value.split()) if isinstance(value, str) else value


def append_row(path: Path, row: dict) -> None:
    """Add one row with a single write to the end of the file (header first on a new file),
    flushed to disk. A partial last line left by a killed writer is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(COLUMNS)
    else:
        complete = len(_complete_text(path).encode())
        if complete != path.stat().st_size:
            os.truncate(path, complete)
    writer.writerow([_one_line(row.get(column)) for column in COLUMNS])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, buffer.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def run_key(
    method: str, task: str, model: str, seed: int, sparsity: float, config, sizes: dict
) -> str:
    """The resume key of one run: a hash of everything that decides its result."""
    data = {
        "method": method,
        "task": task,
        "model": model,
        "seed": seed,
        "target_sparsity": round(sparsity, 6),
        "config": asdict(config),
        **sizes,
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
    """The commit and package versions that produce a row (recorded in every row)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"git_commit": commit, "versions": json.dumps(versions, sort_keys=True)}


def write_metadata(config, executor, device: str | None) -> Path:
    """Append this invocation's machine, executor and settings to `<out>.meta.json`
    ({"runs": [...]}): one entry per `hap bench` call, so a resumed or extended sweep keeps every
    earlier entry. With Ray, the machine is the driver's; each row records its worker's device
    and threads."""
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
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
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


