"""The benchmark sweep: backends x tasks x target sparsities x seeds, resumable.

Each finished run is appended to the results CSV atomically (write a temporary file, then rename),
so a killed sweep loses at most the run in flight, and re-running the same sweep skips every row
already there. A results file that cannot be read is never overwritten: the sweep stops with an
error naming it. The seed fixes both the task's prompt sample and the method's randomness, so the
seed bands in the plots cover data and optimisation noise together.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hap.circuit import edges_for_sparsity
from hap.evaluate import evaluate_circuit, result_record
from hap.graph import Graph
from hap.models import load_model
from hap.registry import get_backend, resolve_settings
from hap.tasks import make_task
from hap.timing import measure

KEY = ["method", "task", "model", "seed", "target_sparsity", "settings"]
COLUMNS = KEY + [
    "steps",
    "stopped",
    "sparsity",
    "n_edges",
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
    "config",
]


class ResultsError(RuntimeError):
    """The results file exists but cannot be used."""


@dataclass
class SweepConfig:
    methods: tuple[str, ...] = ("eap", "eap-ig", "ep", "hap")
    tasks: tuple[str, ...] = ("ioi",)
    sparsities: tuple[float, ...] = (0.90, 0.94, 0.96, 0.98, 0.99)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str | None = None
    device: str | None = None
    threads: int = 2
    n_train: int = 64
    n_val: int = 64
    n_test: int = 200
    settings: dict[str, str] = field(default_factory=dict)  # --set key=value, for every method
    calibration: str | None = None  # filled by run_sweep: see calibration_note
    out: Path = field(default_factory=lambda: Path("results/sweep.csv"))

    def resolve(self) -> dict:
        """Each method's typed config; raises for an unknown method, setting or sparsity."""
        configs = resolve_settings(list(self.methods), self.settings)
        probe = Graph(1, 1)
        for sparsity in self.sparsities:
            edges_for_sparsity(probe, sparsity)
        return configs

    @property
    def settings_key(self) -> str:
        """The --set overrides as one canonical string: part of a row's resume key."""
        return json.dumps(dict(sorted(self.settings.items())))


def read_results(path: Path) -> pd.DataFrame:
    """The rows already written, or an empty table; raises ResultsError for an unusable file."""
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ResultsError(
            f"{path} is corrupt ({type(error).__name__}); move it away or repair it -- "
            "nothing was overwritten"
        ) from error
    missing = [c for c in KEY if c not in table.columns]
    if missing:
        raise ResultsError(
            f"{path} lacks the columns {missing}; it is not a sweep results file -- move it away "
            "or pass another --out"
        )
    return table


def append_row(path: Path, row: dict) -> None:
    """Add one row, atomically: readers see the old file or the new one, never half of one."""
    table = pd.concat([read_results(path), pd.DataFrame([row])], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        table.to_csv(f, index=False)
    os.replace(tmp, path)


def _done(table: pd.DataFrame) -> set[tuple]:
    return {
        (r.method, r.task, r.model, int(r.seed), round(float(r.target_sparsity), 6), r.settings)
        for r in table.itertuples()
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_metadata(config: SweepConfig, device: torch.device) -> Path:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {}
    for package in ("hap-bench", "torch", "transformer-lens", "transformers", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    meta = {
        "git_commit": commit,
        "packages": versions,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    path = config.out.with_suffix(".meta.json")
    path.write_text(json.dumps(meta, indent=2) + "\n")
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


def run_sweep(config: SweepConfig, progress: bool = True) -> pd.DataFrame:
    """Run every (task, seed, sparsity, method) not yet in `config.out`; methods innermost, so
    backends are interleaved in time and share the machine's drift."""
    from tqdm import tqdm

    configs = config.resolve()
    done = _done(read_results(config.out))  # before any work: a corrupt file stops us here
    torch.set_num_threads(config.threads)
    model = load_model(config.model, device=config.device)
    graph = Graph.from_model(model)
    config.calibration = calibration_note(model.name, graph)
    if config.calibration:
        print(f"hap: note: {config.calibration}", file=sys.stderr)
    device = next(model.parameters()).device
    plan = [
        (task, seed, sparsity, method)
        for task in config.tasks
        for seed in config.seeds
        for sparsity in config.sparsities
        for method in config.methods
        if (method, task, model.name, seed, round(sparsity, 6), config.settings_key) not in done
    ]
    tasks = {}
    for task_name, seed, sparsity, method in tqdm(plan, disable=not progress, desc="sweep"):
        if (task_name, seed) not in tasks:
            tasks[(task_name, seed)] = make_task(
                task_name,
                model.tokenizer,
                n_train=config.n_train,
                n_val=config.n_val,
                n_test=config.n_test,
                seed=seed,
                prepend_bos=model.prepend_bos,
            )
        task = tasks[(task_name, seed)]
        backend = get_backend(method)
        run = partial(backend, model, graph, task, sparsity, seed=seed, config=configs[method])
        circuit, cost = measure(run, device)
        result = evaluate_circuit(model, graph, task.test, circuit.mask)
        append_row(
            config.out,
            {
                "method": method,
                "task": task_name,
                "model": model.name,
                "seed": seed,
                "settings": config.settings_key,
                "stopped": circuit.details.get("stopped"),
                **result_record(circuit, result),
                "wall_s": cost.wall_s,
                "cpu_s": cost.cpu_s,
                "peak_mem_mb": cost.peak_mem_mb,
                "attribution_s": circuit.timings.get("attribution", 0.0),
                "pruning_s": circuit.timings.get("pruning", 0.0),
                "step_s": circuit.details.get("step_s"),
                "device": str(device),
                "threads": torch.get_num_threads(),
            },
        )
    write_metadata(config, device)
    return read_results(config.out)


def area_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and task: CPR (area under the faithfulness curve; higher is better) and CMD
    (area between it and 1; lower is better), MIB's summaries, over the swept edge fractions
    (x = 1 - sparsity), normalised by the x range and averaged over seeds."""
    rows = []
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
                "cpr": float(np.mean(cpr)) if cpr else float("nan"),
                "cmd": float(np.mean(cmd)) if cmd else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One screen: means over seeds per method, task and target sparsity."""
    columns = ["sparsity", "steps", "kl", "logit_diff", "accuracy", "faithfulness", "wall_s"]
    return (
        table.groupby(["task", "method", "target_sparsity"])[columns].mean().round(3).reset_index()
    )
