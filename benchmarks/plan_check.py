"""`hap plan`'s estimates against measured peaks.

    python benchmarks/plan_check.py [--shapes default,gpt2-small] [--batches 8,16]
                                    [--methods eap,eap-ig,ep,hap,evaluation] [--out FILE] [--append]

The reference (results/reference/plan_check.json) is the default run, then
`--shapes smollm2 --batches 4 --append` (SmolLM2-135M's shape, random weights: 123,211 edges).

Per (shape, batch, method) a fresh process loads the random-init checkpoint of the shape
(`hap.models.shapes`; "default" is the embedded model itself), builds IOI with `batch` train
prompts (one batch) and runs the method's backend once: EAP and EAP-IG one attribution pass,
EP and HAP three search steps (`steps=3`);
"evaluation" evaluates the full circuit on 64 test prompts (evaluate_circuit's batch). Memory on
a CPU is the process's peak resident set, the kernel's exact high-water mark (VmHWM, reset after
the set-up), with glibc's mmap threshold fixed so that the resident set follows live tensors
(benchmarks/scale.py's MEMORY_ENV); on CUDA max_memory_allocated. Each row compares the estimate of
hap.experiments.plan with:

- total: the process's peak over loading and the run, against the estimate's peak;
- run: the run's peak above the resident set before it (model loaded, task built), against the
  estimate's largest phase after loading (what the batch size changes).

The estimate is computed without the model (config.json and the tokenizer), the measurement
with it; the worker's prompt widths are checked against the estimate's. Writes
results/reference/plan_check.json by default.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

MEMORY_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
METHODS = ("eap", "eap-ig", "ep", "hap", "evaluation")
STEPS = 3
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "reference" / "plan_check.json"


def checkpoint(shape: str) -> str:
    from hap.models import DEFAULT_MODEL_DIR
    from hap.models.shapes import build_checkpoint

    return str(DEFAULT_MODEL_DIR if shape == "default" else build_checkpoint(shape))


def settings(method: str, batch: int) -> dict[str, str]:
    """The --set overrides of the measured run (and of its estimate)."""
    chosen = {"batch_size": str(batch)}
    if method in ("ep", "hap"):
        chosen["steps"] = str(STEPS)
    return chosen


def split(method: str, batch: int):
    from hap.experiments.runs import Split

    if method == "evaluation":
        return Split(n_train=1, n_val=0, n_test=64)
    return Split(n_train=batch, n_val=0, n_test=0)


def worker(path: str, method: str, batch: int, device: str) -> dict:
    """Load, build the task, run `method` once; the peaks (MB) and the task's widths."""
    from hap.engine.evaluate import evaluate_circuit
    from hap.engine.graph import Graph
    from hap.experiments.plan import Widths
    from hap.experiments.registry import get_backend
    from hap.experiments.runs import build_task
    from hap.models import load_model
    from hap.timing import measure, rss_mb

    dev = torch.device(device)
    imported = rss_mb()
    model = load_model(path, device=device)
    graph = Graph.from_model(model)
    task = build_task(model, "ioi", 0, split(method, batch))
    if dev.type == "cuda":
        load_peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        load_peak = high_water_mb()
    gc.collect()
    _release_free_heap()
    if dev.type == "cuda":
        setup = torch.cuda.memory_allocated(dev) / 2**20
    else:
        setup = rss_mb()
        reset_high_water()
    extra: dict = {}
    if method == "evaluation":
        _, measured = measure(lambda: evaluate_circuit(model, graph, task.test, None), dev)
    else:
        backend = get_backend(method)
        config = backend.config(settings(method, batch))
        circuit, measured = measure(
            lambda: backend(model, graph, task, 0.94, seed=0, config=config), dev
        )
        if method == "hap":
            candidates = torch.isfinite(circuit.scores).nonzero().squeeze(1)
            extra["n_candidates"] = int(candidates.numel())
            extra["n_active_senders"] = int(graph.edge_sender[candidates].unique().numel())
    run_peak = measured.peak_mem_mb if dev.type == "cuda" else high_water_mb()
    return {
        "imported_mb": imported,
        "load_peak_mb": load_peak,
        "setup_mb": setup,
        "run_peak_mb": run_peak,
        "sampled_run_peak_mb": measured.peak_mem_mb,
        "widths": list(Widths.of(task).train + Widths.of(task).test),
        **extra,
    }


def high_water_mb() -> float:
    """The process's peak resident set so far (the kernel's VmHWM, exact: a sampler misses
    spikes of a few milliseconds, such as EAP's concatenation of the clean outputs)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: plan_check's CPU peaks need Linux")


def reset_high_water() -> None:
    """Reset VmHWM to the resident set now (Linux's clear_refs, value 5)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _release_free_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure includes freed heap
        pass


def planned(path: str, method: str, batch: int, device: str):
    """The estimate for the measured run, and the widths it assumed."""
    from hap.experiments.plan import Widths, estimate, read_model
    from hap.experiments.registry import get_backend
    from hap.experiments.runs import build_task

    model = read_model(path)
    stand_in = _TokenizerOnly(model)
    widths = Widths.of(build_task(stand_in, "ioi", 0, split(method, batch)))
    backend = get_backend("ep" if method == "evaluation" else method)
    config = backend.config(settings(method, batch))
    if method == "evaluation":
        plan = estimate(model.shape, widths, "ep", config, device=device)
        only = [p for p in plan.phases if p.name in ("load", "evaluation")]
        return plan, only, widths
    plan = estimate(model.shape, widths, method, config, device=device, evaluate=False)
    return plan, list(plan.phases), widths


class _TokenizerOnly:
    """What build_task reads of a model: its tokenizer, BOS convention and context."""

    def __init__(self, model):
        self.tokenizer = model.tokenizer
        self.prepend_bos = model.prepend_bos
        self.cfg = argparse.Namespace(n_ctx=model.shape.n_ctx)


def compare(path: str, method: str, batch: int, device: str, threads: int) -> dict:
    """One row: `method` measured in a fresh process, against its estimate."""
    command = [sys.executable, __file__, "--worker", path, "--methods", method]
    command += ["--batches", str(batch), "--device", device, "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=MEMORY_ENV)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    return against(path, method, batch, device, measured)


def against(path: str, method: str, batch: int, device: str, measured: dict) -> dict:
    """The row of a measurement (the worker's figures) against the estimate, computed now."""
    plan, phases, widths = planned(path, method, batch, device)
    if measured["widths"] != list(widths.train + widths.test):
        raise RuntimeError(f"{path} {method}: the estimate's prompt widths differ from the run's")
    resident = sum(p.bytes for p in plan.resident) / 2**20
    load = next(p for p in phases if p.name == "load")
    run_phase = max((p for p in phases if p.name != "load"), key=lambda p: p.bytes)
    est_total = resident + max(p.bytes for p in phases) / 2**20
    est_run = run_phase.bytes / 2**20
    meas_total = max(measured["load_peak_mb"], measured["run_peak_mb"])
    meas_run = measured["run_peak_mb"] - measured["setup_mb"]
    return {
        "method": method,
        "batch": batch,
        "positions": max(widths.train + widths.test),
        "estimate_total_mb": round(est_total, 1),
        "measured_total_mb": round(meas_total, 1),
        "error_total": round(est_total / meas_total - 1, 3),
        "estimate_run_mb": round(est_run, 1),
        "measured_run_mb": round(meas_run, 1),
        "error_run": round(est_run / meas_run - 1, 3),
        "estimate_setup_mb": round(resident, 1),
        "measured_setup_mb": round(measured["setup_mb"], 1),
        "estimate_load_peak_mb": round(resident + load.bytes / 2**20, 1),
        "measured_load_peak_mb": round(measured["load_peak_mb"], 1),
        "run_phase": run_phase.name,
        "run_parts_mb": {p.name: round(p.bytes / 2**20, 1) for p in run_phase.parts},
        **{k: measured[k] for k in ("n_candidates", "n_active_senders") if k in measured},
        "measured": measured,
    }


def reestimate(path: Path) -> list[dict]:
    """The rows of a report, each measurement against the estimate as the code gives it now."""
    report = json.loads(path.read_text())
    return [
        {
            "model": r["model"],
            **against(
                checkpoint(r["model"]), r["method"], r["batch"], report["device"], r["measured"]
            ),
        }
        for r in report["rows"]
    ]


def table(rows: list[dict]) -> str:
    head = f"{'model':<11} {'method':<10} {'B':>3} {'est MB':>8} {'meas MB':>8} {'err':>6}"
    head += f" {'est run':>8} {'meas run':>8} {'err run':>7}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['model']:<11} {r['method']:<10} {r['batch']:>3} {r['estimate_total_mb']:>8.0f} "
            f"{r['measured_total_mb']:>8.0f} {r['error_total']:>+6.1%} {r['estimate_run_mb']:>8.0f} "
            f"{r['measured_run_mb']:>8.0f} {r['error_run']:>+7.1%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="default,gpt2-small")
    parser.add_argument("--batches", default="8,16")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--append", action="store_true", help="keep --out's rows of other (model, method, batch)"
    )
    parser.add_argument(
        "--reestimate",
        action="store_true",
        help="recompute --out's estimates against its stored measurements (no runs)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    methods = args.methods.split(",")
    if args.worker:
        print(json.dumps(worker(args.worker, methods[0], batches[0], args.device)))
        return
    from hap.experiments.plan import MB, process_bytes

    if args.reestimate:
        report = json.loads(args.out.read_text())
        report["rows"] = reestimate(args.out)
        report["process_mb"] = round(process_bytes() / MB, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(table(report["rows"]))
        return
    rows = []
    for shape in args.shapes.split(","):
        path = checkpoint(shape)
        for batch in batches:
            for method in methods:
                if method == "evaluation" and batch != batches[0]:
                    continue  # its batch is evaluate_circuit's own
                row = {"model": shape, **compare(path, method, batch, args.device, args.threads)}
                print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
                rows.append(row)
    report = {
        "device": args.device,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "memory": "max_memory_allocated" if args.device.startswith("cuda") else "peak RSS",
        "malloc": {"MALLOC_MMAP_THRESHOLD_": MEMORY_ENV["MALLOC_MMAP_THRESHOLD_"]},
        "process_mb": round(process_bytes() / MB, 1),
        "steps": STEPS,
        "rows": rows,
    }
    if args.append and args.out.exists():
        mine = {(r["model"], r["method"], r["batch"]) for r in rows}
        kept = json.loads(args.out.read_text())["rows"]
        rows = [r for r in kept if (r["model"], r["method"], r["batch"]) not in mine] + rows
        report["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
