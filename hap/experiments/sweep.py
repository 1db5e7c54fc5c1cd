"""The benchmark sweep: backends x tasks x target sparsities x seeds, resumable.

Re-running the same sweep skips every run whose resume key is already in the results file
(hap.experiments.results): the key hashes the method, task, model, seed, target, the backend's
resolved config (ablation and selection included), the split sizes and the precision (where not
fp32: an fp32 key is the one it was before the choice), so a changed setting reruns its rows
instead of silently reusing old ones, and a grid never holds two points with one key. Where the
runs execute is the executor's business (hap.experiments.executors: this process, or Ray tasks);
the file and the resumption are this module's. A run that fails (a search whose loss turned NaN,
`hap.errors.RunFailed`; on Ray also a task that raised or lost its worker twice) is a row with
status "failed" and its reason in `error`, its metric columns empty; the sweep goes on, and a rerun
does not repeat it (delete its row to retry). A Ray attempt that failed and was resubmitted leaves
a row with status "retried" before the row of its retry. The seed fixes both the task's prompt
sample and the method's randomness, so the seed bands in the plots cover data and optimisation
noise together.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from hap.engine.graph import Graph
from hap.errors import ConfigError
from hap.experiments.registry import check_validation, resolve_settings
from hap.experiments.results import (
    append_row,
    check_precision,
    provenance,
    read_results,
    run_key,
    write_metadata,
)
from hap.experiments.runs import Split, TaskSpec
from hap.io.atomic import atomic_write
from hap.models import PRECISIONS, model_name
from hap.models.loader import pick_device
from hap.progress import bar
from hap.search.selection import edges_for_sparsity
from hap.tasks import is_task_file


@dataclass
class SweepConfig:
    methods: tuple[str, ...] = ("eap", "eap-ig", "ep", "hap")
    tasks: tuple[str, ...] = ("ioi",)
    sparsities: tuple[float, ...] = (0.90, 0.94, 0.96, 0.98, 0.99)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str | None = None
    device: str | None = None
    threads: int | None = None  # torch CPU threads; None leaves the process's setting alone
    precision: str = "fp32"  # hap.models.PRECISIONS: the dtype every worker loads the model in
    ablation: str = "corrupted"  # what removed edges carry, in every search and evaluation
    n_train: int | None = None  # None: the task's default (hap.experiments.runs.Split)
    n_val: int | None = None
    n_test: int | None = None
    task_format: str | None = None  # for task files: their format (default: detected)
    counterfactual: str | None = None  # for MIB's rows: the counterfactual column
    settings: dict[str, str] = field(default_factory=dict)  # --set key=value, for every method
    circuits: Path | None = None  # where each run's circuit is written, as <run_key>.json
    calibration: str | None = None  # filled by run_sweep: see calibration_note
    out: Path = field(default_factory=lambda: Path("results/sweep.csv"))

    def resolve(self) -> dict:
        """Each method's typed config (the sweep's ablation applied to every method); raises
        for an unknown method, setting, sparsity, task or precision, a task file that cannot be
        read, a split a task cannot supply, or a device this machine lacks: before any model
        loads."""
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        settings = {**self.settings, "ablation": self.ablation}
        configs = resolve_settings(list(self.methods), settings)
        probe = Graph(1, 1)
        for sparsity in self.sparsities:
            edges_for_sparsity(probe, sparsity)
        given = [
            f
            for f, v in (
                ("--task-format", self.task_format),
                ("--counterfactual", self.counterfactual),
            )
            if v
        ]
        if given and not any(is_task_file(t) for t in self.tasks):
            raise ConfigError(f"{' and '.join(given)} apply to task files; --tasks names none")
        for task in self.tasks:
            check_validation(configs, self.sizes(task)["n_val"])
        pick_device(self.device)
        return configs

    @property
    def split(self) -> Split:
        return Split(self.n_train, self.n_val, self.n_test)

    def spec(self, task: str) -> TaskSpec:
        is_file = is_task_file(task)
        return TaskSpec(
            task, self.task_format if is_file else None, self.counterfactual if is_file else None
        )

    def sizes(self, task: str) -> dict[str, int]:
        """The split sizes `task` draws in this sweep (part of each run's resume key)."""
        return self.spec(task).sizes(self.split)

    @property
    def settings_key(self) -> str:
        """The --set overrides as one canonical string: part of a row's resume key."""
        return json.dumps(dict(sorted(self.settings.items())))


def run_sweep(config: SweepConfig, progress: bool = True, executor=None) -> pd.DataFrame:
    """Run every (task, seed, sparsity, method) not yet in `config.out` on `executor` (default:
    this process, hap.experiments.executors.LocalExecutor), appending each row as it arrives;
    methods innermost, so backends are interleaved in time and share the machine's drift."""
    from hap.experiments.executors import GridPoint, LocalExecutor

    executor = executor or LocalExecutor()
    configs = config.resolve()
    executor.check()
    table = read_results(config.out)  # a corrupt file stops us here, unwritten
    check_precision(config.out, config.precision)
    done = set(table.loc[table["status"].isin(["ok", "failed"]), "run_key"])
    if config.threads:
        torch.set_num_threads(config.threads)
    name = model_name(config.model)
    plan: dict[str, GridPoint] = {}  # by resume key: a grid never runs one point twice
    for task in config.tasks:
        sizes, data = config.sizes(task), config.spec(task).key()
        for seed in config.seeds:
            for sparsity in config.sparsities:
                for method in config.methods:
                    key = run_key(
                        method, data, name, seed, sparsity, configs[method], sizes, config.precision
                    )
                    if key not in done:
                        plan.setdefault(key, GridPoint(task, seed, sparsity, method, key))
    if plan and any(is_task_file(t) for t in config.tasks):
        LocalExecutor().prepare(list(plan.values()), config)  # a refused file: before any run
    shown = bar(total=len(plan), desc="sweep") if progress else None
    device = None
    for row in executor.run(list(plan.values()), config, configs, provenance()):
        circuit = row.pop("_circuit", None)
        note = row.pop("_calibration", None)
        if note and config.calibration is None:
            config.calibration = note
            print(f"hap: note: {note}", file=sys.stderr)
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
    table = read_results(config.out)
    write_metadata(config, executor, device, table)
    return table


def _write(data: bytes, file) -> None:
    file.write(data)
