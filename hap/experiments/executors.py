"""Where a sweep's grid points run: in this process, or as Ray tasks on a cluster.

An executor takes grid points and yields one result row per point as each finishes; the runner
(hap.experiments.sweep.run_sweep) owns the results file and resumption, appending every row the moment it
arrives, so a lost worker or a killed driver loses only the runs in flight.

`LocalExecutor` runs the points one after another in this process (the model loaded once).
`RayExecutor` submits each point as a Ray task that loads the model and builds the task inside
its worker (kept for the worker's next task), with torch's threads pinned to the task's CPU
share. A task that raises, or whose worker dies (kill -9, a lost node), becomes a row with
status "retried" and its error, and is submitted once more; a second failure is a row with
status "failed". A search whose loss turns NaN (`RunFailed`) is a result, not a crash: its row is
"failed" at once, on either executor. Ray is an optional extra (`pip install hap-bench[cluster]`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from hap.errors import RunFailed, UserError
from hap.io.formats import to_native

RAY_INSTALL = 'pip install "hap-bench[cluster]" (or: pip install "ray>=2.9")'


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep: `key` is its resume key (hap.experiments.sweep.run_key)."""

    task: str
    seed: int
    sparsity: float
    method: str
    key: str


def base_row(point: GridPoint, sweep, configs: dict, origin: dict) -> dict:
    """The columns a row has whatever its outcome: what ran, with which settings, from which
    code."""
    from hap.models import model_name

    return {
        "method": point.method,
        "task": sweep.spec(point.task).label(),
        "model": model_name(sweep.model),
        "seed": point.seed,
        "target_sparsity": point.sparsity,
        "settings": sweep.settings_key,
        "run_key": point.key,
        "ablation": sweep.ablation,
        "precision": sweep.precision,
        "config": json.dumps(asdict(configs[point.method]), sort_keys=True),
        **sweep.sizes(point.task),
        **origin,
    }


_WORKER: dict = {}  # per process: the loaded model, its graph and the tasks built so far


def loaded(sweep):
    """This process's model and graph for the sweep (loaded once per process, model, device and
    precision; the load sets this process's TF32 switch, so a Ray worker gets its own)."""
    from hap.engine.graph import Graph
    from hap.experiments.runs import load_model_at

    key = (sweep.model, sweep.device, sweep.precision)
    if _WORKER.get("key") != key:
        model = load_model_at(sweep.model, sweep.device, sweep.precision)
        _WORKER.clear()
        _WORKER.update(key=key, model=model, graph=Graph.from_model(model), tasks={})
    return _WORKER["model"], _WORKER["graph"]


def _task(sweep, name: str, seed: int):
    from hap.experiments.runs import build_task

    model, _ = loaded(sweep)
    tasks = _WORKER["tasks"]
    if (name, seed, sweep.split) not in tasks:
        tasks[(name, seed, sweep.split)] = build_task(model, sweep.spec(name), seed, sweep.split)
    return tasks[(name, seed, sweep.split)]


def mask_digest(mask: torch.Tensor) -> str:
    """A short hash of a circuit's kept edges: equal circuits, equal digests."""
    kept = mask.nonzero().squeeze(1).to(torch.int64).cpu().numpy().tobytes()
    return hashlib.sha1(kept).hexdigest()[:16]


def run_point(point: GridPoint, sweep, configs: dict, origin: dict) -> dict:
    """One grid point, start to finish, in this process: its full result row (with the
    circuit and the calibration note for the driver under "_circuit" / "_calibration")."""
    from hap.experiments.runs import calibration_note, run_one

    model, graph = loaded(sweep)
    task = _task(sweep, point.task, point.seed)
    device = next(model.parameters()).device
    row = {**base_row(point, sweep, configs, origin), "device": str(device)}
    drawn = task.record()  # the sizes after a task file's rows were filtered for the tokenizer
    row.update({k: drawn[k] for k in ("n_train", "n_val", "n_test")})
    row["threads"] = torch.get_num_threads()
    row["_calibration"] = calibration_note(model.name, graph.n_edges)
    config = configs[point.method]
    try:
        run = run_one(model, graph, task, point.method, point.sparsity, point.seed, config)
    except RunFailed as failure:
        return {**row, "status": "failed", "error": str(failure)}
    return {
        **row,
        "_circuit": to_native(run.circuit, graph),  # the driver writes it (sweep.circuits)
        "status": "ok",
        **run.record(graph),
        "circuit": mask_digest(run.circuit.mask),
    }


class LocalExecutor:
    """Every point in this process, in order."""

    name = "local"

    def check(self) -> None:
        """Nothing to check: the local executor needs nothing beyond the core install."""

    def prepare(self, points: list[GridPoint], sweep) -> None:
        """Build every task the points need before the first run: a task file this model's
        tokenizer refuses stops the sweep before any compute or row."""
        for task, seed in dict.fromkeys((p.task, p.seed) for p in points):
            _task(sweep, task, seed)

    def run(self, points: list[GridPoint], sweep, configs: dict, origin: dict) -> Iterator[dict]:
        for point in points:
            yield run_point(point, sweep, configs, origin)


def _ray_point(point: GridPoint, sweep, configs: dict, origin: dict, threads: int) -> dict:
    """A Ray task's body: threads pinned to the task's CPU share, then the point."""
    torch.set_num_threads(max(1, threads))
    return run_point(point, sweep, configs, origin)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}"
        ) from None
    return ray


@dataclass
class RayExecutor:
    """Each point a Ray task. address: None starts a Ray instance on this machine; "auto" or
    HOST:PORT joins a running cluster. cpus_per_run / gpus_per_run: each task's resources (its
    torch threads = its CPUs). retries: resubmissions of a task that raised or lost its worker."""

    address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0
    retries: int = 1
    name: str = "ray"

    def check(self) -> None:
        _import_ray()
        if self.cpus_per_run < 1 or self.gpus_per_run < 0 or self.retries < 0:
            raise UserError("--cpus-per-run must be >= 1 and --gpus-per-run >= 0")

    def run(self, points: list[GridPoint], sweep, configs: dict, origin: dict) -> Iterator[dict]:
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        remote = ray.remote(_ray_point).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0
        )
        pending: dict = {}
        attempts: dict[str, int] = {}

        def submit(point: GridPoint) -> None:
            ref = remote.remote(point, sweep, configs, origin, self.cpus_per_run)
            pending[ref] = point

        try:
            for point in points:
                submit(point)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                point = pending.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except ray.exceptions.RayError as error:
                    tried = attempts.get(point.key, 0)
                    again = tried < self.retries
                    reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
                    yield {
                        **base_row(point, sweep, configs, origin),
                        "status": "retried" if again else "failed",
                        "error": reason,
                    }
                    if again:
                        attempts[point.key] = tried + 1
                        submit(point)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()
