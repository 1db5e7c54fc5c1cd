"""Peak memory of `hap discover` as a user's process holds it, measured through the real CLI.

    python benchmarks/cli_memory.py [--steps 6] [--threads 2] [--batch-size 32] [--repeats 1]
                                    [--allocators default,compact] [--env KEY=VALUE ...]
                                    [--out results/reference/cli_memory.json]

`benchmarks/scale.py` measures one search step in a process of its own, with glibc's mmap
threshold fixed so that the resident set follows live tensors. A user's run holds more, and under
glibc's defaults: the model, the prepared baselines of every train batch, the search's steps
(batches of different widths), then the evaluation on the test split. This script builds the
GPT-2-small-shaped checkpoint (`hap.models.shapes`: 12 layers, d_model 768, random weights, no
download) and runs

    hap discover --model <checkpoint> --method ep --set steps=N --set batch_size=B
                 --sparsity 0.94 --threads T --json --quiet

in a child process: the console script beside this interpreter, in this environment. Per run it
reports the child's peak resident set as the kernel counts it (`wait4`'s ru_maxrss: exact, not
sampled; MB are 2**20 bytes, as everywhere in this project), the search's own peak and median
step time from the run's JSON (`peak_mem_mb`, sampled every 20 ms; `step_s`), the search's wall
and CPU seconds (CPU time is the steadier figure on a shared machine) and the command's wall
time. Allocators, run interleaved: `default` (the environment as it is) and `compact`
(MALLOC_MMAP_THRESHOLD_=131072: every tensor of 128 KB or more is mapped and unmapped on its own,
as in scale.py's memory figures, so the resident set follows live tensors, at the cost of fresh
pages on every step), and `flag`: the CLI's `--compact-memory`, which sets the same threshold
with glibc's mallopt at start-up (hap.allocator). On a shared machine, compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hap.models.shapes import build_checkpoint

ALLOCATORS = {"default": {}, "compact": {"MALLOC_MMAP_THRESHOLD_": "131072"}, "flag": {}}
FLAGS = {"flag": ["--compact-memory"]}  # the CLI's own switch for the same setting
ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "THP_", "OMP_", "MKL_")


def hap_command() -> list[str]:
    """The `hap` console script installed beside this interpreter (else `python -m hap.cli`)."""
    script = Path(sys.executable).with_name("hap")
    if script.exists():
        return [str(script)]
    found = shutil.which("hap")
    return [found] if found else [sys.executable, "-m", "hap.cli"]


def discover_args(model: Path, steps: int, batch_size: int, threads: int) -> list[str]:
    return [
        "discover",
        "--model",
        str(model),
        "--method",
        "ep",
        "--set",
        f"steps={steps}",
        "--set",
        f"batch_size={batch_size}",
        "--sparsity",
        "0.94",
        "--threads",
        str(threads),
        "--json",
        "--quiet",
    ]


def run_once(command: list[str], env: dict[str, str]) -> dict:
    """One child run: its peak resident set (MB), the run's JSON figures and its wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {
        "peak_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "search_peak_mb": round(result["peak_mem_mb"], 1),
        "step_s": round(result["step_s"], 3),
        "search_s": round(result["wall_s"], 2),
        "search_cpu_s": round(result["cpu_s"], 2),
        "wall_s": round(wall, 2),
    }


def summary(runs: list[dict]) -> dict:
    return {
        "peak_mb": max(r["peak_mb"] for r in runs),
        "search_peak_mb": max(r["search_peak_mb"] for r in runs),
        "step_s": statistics.median(r["step_s"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="search steps (--set steps=N)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="runs per allocator")
    parser.add_argument("--allocators", default="default,compact", help=", ".join(ALLOCATORS))
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set in every run"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    allocators = args.allocators.split(",")
    unknown = [a for a in allocators if a not in ALLOCATORS]
    if unknown:
        parser.error(f"unknown allocator(s) {unknown}; choose from {sorted(ALLOCATORS)}")
    extra = dict(item.split("=", 1) for item in args.env)
    model = build_checkpoint("gpt2-small")
    command = hap_command() + discover_args(model, args.steps, args.batch_size, args.threads)
    runs: dict[str, list[dict]] = {name: [] for name in allocators}
    for _ in range(args.repeats):
        for name in allocators:
            env = {**os.environ, **extra, **ALLOCATORS[name]}
            runs[name].append(run_once(command + FLAGS.get(name, []), env))
            print(f"{name}: {json.dumps(runs[name][-1])}", file=sys.stderr)
    checkpoint = Path("<gpt2-small checkpoint>")
    shown = ["hap", *discover_args(checkpoint, args.steps, args.batch_size, args.threads)]
    report = {
        "command": " ".join(shown),
        "model": "gpt2-small shape (hap.models.shapes.build_checkpoint, seed 0; 32,491 edges)",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "libc": " ".join(platform.libc_ver()),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "environment": {
            k: v for k, v in {**os.environ, **extra}.items() if k.startswith(ENV_PREFIXES)
        },
        "peak": "the child's ru_maxrss (MB = 2**20 bytes); search_peak_mb: the run's own sampled "
        "peak over the search; step_s: the run's median step",
        "allocators": {
            name: {"env": ALLOCATORS[name], "flags": FLAGS.get(name, []), **summary(runs[name])}
            for name in allocators
        },
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
