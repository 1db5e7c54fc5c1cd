"""The benchmark sweep: backends x tasks x target sparsities x seeds, resumable.

The results CSV is append-only: each finished run adds one line, written with a single `write`
to a file opened for appending and flushed to disk, so a killed sweep (even kill -9) loses at
most the run in flight. A line cut short by a kill is never read as a row: it is dropped when
the file is read, and cut off before the next append. Re-running the same sweep skips every run
whose resume key is already in the file: the key hashes the method, task, model, seed, target,
the backend's resolved config (ablation included) and the task sizes, so a changed setting
reruns its rows instead of silently reusing old ones. A results file that cannot be read, or
whose columns differ (an older version's), is never written to: the sweep stops with an error
naming it.

Where the runs execute is the executor's business (hap.experiments.executors: this process, or Ray tasks);
the file and the resumption are this module's. A run that fails (a search whose loss turned NaN,
`hap.errors.RunFailed`; on Ray also a task that raised or lost its worker twice) is a row with
status "failed" and its reason in `error`, its metric columns empty; the sweep goes on, and a
rerun does not repeat it (delete its row to retry). A Ray attempt that failed and was
resubmitted leaves a row with status "retried" before the row of its retry. Each row records the
commit and package versions that produced it and a digest of its circuit's edges. The seed fixes
both the task's prompt sample and the method's randomness, so the seed bands in the plots cover
data and optimisation noise together.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hap.engine.graph import Graph
from hap.errors import UserError
from hap.experiments.registry import check_validation, resolve_settings
from hap.io.formats import atomic_write
from hap.models import model_name
from hap.progress import bar
from hap.search.selection import edges_for_sparsity

KEY = ["method", "task", "model", "seed", "target_sparsity", "settings", "run_key"]
COLUMNS = KEY + [
    "status",
    "error",
    "ablation",
    "steps",
    "stopped",
    "sparsity",
    "n_edges",
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


@dataclass
class SweepConfig:
    methods: tuple[str, ...] = ("eap", "eap-ig", "ep", "hap")
    tasks: tuple[str, ...] = ("ioi",)
    sparsities: tuple[float, ...] = (0.90, 0.94, 0.96, 0.98, 0.99)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str | None = None
    device: str | None = None
    threads: int | None = None  # torch CPU threads; None leaves the process's setting alone
    ablation: str = "corrupted"  # what removed edges carry, in every search and evaluation
    n_train: int = 64
    n_val: int = 64
    n_test: int = 200
    settings: dict[str, str] = field(default_factory=dict)  # --set key=value, for every method
    circuits: Path | None = None  # where each run's circuit is written, as <run_key>.json
    calibration: str | None = None  # filled by run_sweep: see calibration_note
    out: Path = field(default_factory=lambda: Path("results/sweep.csv"))

    def resolve(self) -> dict:
        """Each method's typed config (the sweep's ablation applied to every method); raises
        for an unknown method, setting or sparsity."""
        settings = {**self.settings, "ablation": self.ablation}
        configs = resolve_settings(list(self.methods), settings)
        check_validation(configs, self.n_val)
        probe = Graph(1, 1)
        for sparsity in self.sparsities:
            edges_for_sparsity(probe, sparsity)
        return configs

    @property
    def settings_key(self) -> str:
        """The --set overrides as one canonical string: part of a row's resume key."""
        return json.dumps(dict(sorted(self.settings.items())))


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


def _write(data: bytes, file) -> None:
    file.write(data)


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


def write_metadata(config: SweepConfig, executor, device: str | None) -> Path:
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


def calibration_note(model_name: str, graph: Graph) -> str | None:
    """What a user must know when the search's constants meet a model they were not calibrated
    on (recorded in the sweep's metadata), or None on the model they were calibrated on."""
    from hap.models import DEFAULT_MODEL_NAME

    if model_name == DEFAULT_MODEL_NAME:
        return None
    return (
        f"the search's lr, lambda_lr, warmup and stopping-rule constants were calibrated on "
        f"{DEFAULT_MODEL_NAME} (1,519 edges, validation seeds 100-101); {model_name} has "
        f"{graph.n_edges:,} edges. They apply unchanged (the budget is the shared stopping rule, "
        "the same for EP and HAP) unless --set changes them"
    )


def run_sweep(config: SweepConfig, progress: bool = True, executor=None) -> pd.DataFrame:
    """Run every (task, seed, sparsity, method) not yet in `config.out` on `executor` (default:
    this process, hap.experiments.executors.LocalExecutor), appending each row as it arrives; methods
    innermost, so backends are interleaved in time and share the machine's drift."""
    from hap.experiments.executors import GridPoint, LocalExecutor, loaded

    executor = executor or LocalExecutor()
    configs = config.resolve()
    executor.check()
    table = read_results(config.out)  # a corrupt file stops us here, unwritten
    done = set(table.loc[table["status"].isin(["ok", "failed"]), "run_key"])
    if config.threads:
        torch.set_num_threads(config.threads)
    name = model_name(config.model)
    if executor.name == "local":  # the workers load the model elsewhere
        model, graph = loaded(config)
        config.calibration = calibration_note(model.name, graph)
        if config.calibration:
            print(f"hap: note: {config.calibration}", file=sys.stderr)
    sizes = {"n_train": config.n_train, "n_val": config.n_val, "n_test": config.n_test}
    plan = [
        GridPoint(task, seed, sparsity, method, key)
        for task in config.tasks
        for seed in config.seeds
        for sparsity in config.sparsities
        for method in config.methods
        if (key := run_key(method, task, name, seed, sparsity, configs[method], sizes)) not in done
    ]
    shown = bar(total=len(plan), desc="sweep") if progress else None
    device = None
    for row in executor.run(plan, config, configs, provenance()):
        circuit = row.pop("_circuit", None)
        if circuit is not None and config.circuits is not None:
            text = (json.dumps(circuit) + "\n").encode()  # atomically: no half-written circuit
            atomic_write(config.circuits / f"{row['run_key']}.json", partial(_write, text))
        append_row(config.out, row)
        device = device or row.get("device")
        if row["status"] != "ok":
            print(
                f"hap: {row['method']} at {row['target_sparsity']} (seed {row['seed']}) "
                f"{row['status']}: {row['error']}",
                file=sys.stderr,
            )
        if shown is not None and row["status"] != "retried":
            shown.set_postfix(method=row["method"], sparsity=row["target_sparsity"])
            shown.update()
    if shown is not None:
        shown.close()
    write_metadata(config, executor, device)
    return read_results(config.out)


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that failed, or failed once and were retried, with their reasons."""
    return table[table["status"].isin(["failed", "retried"])][
        ["method", "task", "seed", "target_sparsity", "status", "error"]
    ]


def swept_areas(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and task, over the sweep's own sparsities (x = 1 - sparsity, normalised by
    the x range, averaged over seeds): `faith_area`, the area under the faithfulness curve
    (higher is better), and `gap_area`, the area between it and 1 (lower is better). These are
    NOT MIB's CPR / CMD, which take MIB's grid of edge fractions from 0.1% to 100% (`hap mib`);
    they summarise only the 90-99% range swept here."""
    rows = []
    table = table[table["status"] == "ok"]
    for (method, task), group in table.groupby(["method", "task"]):
        cpr, cmd = [], []
        for _, runs in group.groupby("seed"):
            runs = runs.sort_values("sparsity", ascending=False)
            x = 1.0 - runs["sparsity"].to_numpy()
            y = runs["faithfulness"].to_numpy()
            if len(x) < 2 or x[-1] == x[0]:
                continue
            span = x[-1] - x[0]
            cpr.append(np.trapezoid(y, x) / span)
            cmd.append(np.trapezoid(np.abs(1.0 - y), x) / span)
        rows.append(
            {
                "method": method,
                "task": task,
                "faith_area": float(np.mean(cpr)) if cpr else float("nan"),
                "gap_area": float(np.mean(cmd)) if cmd else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One screen: means over seeds per method, task and target sparsity."""
    columns = ["sparsity", "steps", "kl", "logit_diff", "accuracy", "faithfulness", "wall_s"]
    table = table[table["status"] == "ok"]
    return (
        table.groupby(["task", "method", "target_sparsity"])[columns].mean().round(3).reset_index()
    )
