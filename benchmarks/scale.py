"""The patching engine at scale: step costs against the model's own forward+backward floor.

    python benchmarks/scale.py [--threads 2] [--repeats 3] [--batches 8,32] [--out FILE]

Builds two checkpoints from a seed (no download, `hap.models.shapes`): a GPT-2-small-shaped model
(12 layers, 12 heads, d_model 768, random init, 32,491 edges) and the default model's shape
(4 layers, 8 heads, d128, random init), both with the embedded tokenizer. Per shape and batch size
(IOI prompts), it times:

- forward: the bridge's plain forward, no grad (hook flags as `load_model` sets them);
- floor: the same forward with grad from the input embedding, plus one backward of a KL loss --
  the cheapest pass any gradient-based search can make;
- eap: one EAP pass (`attribution_scores`);
- ep_step: one Edge Pruning step over every edge (sample masks, masked forward, KL, backward);
- hap_step_94 / hap_step_98: the same step restricted to HAP's candidates at 94% / 98%
  (4x the edge budget, from this run's own EAP scores).

Timing: one worker process per (shape, batch); the calls are interleaved, one untimed round first,
then `--repeats` timed rounds. In a round each call runs `--inner` times back to back and all but
the first run are timed, as consecutive steps of a search run: on this VM, memory a call has not
touched for a few seconds may have been reclaimed (kdamond) and faults back in at microseconds a
page, which made a lone EP step at batch 32 vary by up to 2x between rounds (timing processes
also keep freed tensors of up to 32 MB in glibc's heap, see TIME_ENV). The median over all timed
runs is reported, so the ratios (ep/floor, eap/(forward+floor), hap/ep) compare calls
measured side by side under the same conditions. Memory: a fresh process per
(shape, batch, call) does the set-up, then runs the call once and reports its peak (CPU: the peak
resident set of the process, sampled every 20 ms, with glibc's mmap threshold fixed so that it
follows live tensors; CUDA: max_memory_allocated), and the resident set after the set-up (the
model, the batch's baseline and full logits, the engines), so no call inherits another's heap.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from hap.models import PRECISIONS, load_model, pick_device, precision_dtype
from hap.models.shapes import SHAPES, build_checkpoint

BENCH_SHAPES = ("gpt2-small", "default")
CALLS = ("forward", "floor", "eap", "ep_step", "hap_step_94", "hap_step_98")
# Memory processes only: with glibc's mmap threshold fixed, every large tensor is mapped and
# unmapped on its own, so the resident set follows live memory instead of a fragmented heap.
# (Timing processes keep the default: a fresh mapping per tensor costs page faults.)
MEMORY_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
# Timing processes: tensors up to 32 MB (glibc's largest threshold) come from a heap that is never
# trimmed, as a caching allocator would keep them, so a step does not fault freed memory back in
# (on this VM that cost varies run to run). The same for every call.
TIME_ENV = {
    **os.environ,
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30),
}


def _calls(path: Path, batch: int, device: str | None, precision: str) -> tuple[dict, dict]:
    """The set-up every worker makes, and the calls it can time: name -> zero-argument function."""
    from hap.engine import metrics
    from hap.engine.ablation import fixed_references
    from hap.engine.graph import Graph
    from hap.engine.patching import EdgeMaskedForward
    from hap.search.attribution import attribution_scores
    from hap.search.hybrid import candidate_edges
    from hap.search.masks import sample_mask
    from hap.search.selection import edges_for_sparsity
    from hap.tasks import make_task

    model = load_model(path, device=device, dtype=precision_dtype(precision))
    dev = pick_device(device)
    graph = Graph.from_model(model)
    task = make_task("ioi", model.tokenizer, n_train=batch, n_val=0, n_test=0, seed=0)
    data = task.train.to(dev)
    full, baseline = fixed_references(model, graph, data, "corrupted", data)
    scores = attribution_scores(model, graph, data, batch_size=batch)
    engines = {"ep_step": EdgeMaskedForward(model, graph)}
    info = {"positions": int(data.clean.shape[1]), "n_edges": graph.n_edges, "n_candidates": {}}
    for level in (94, 98):
        candidates = candidate_edges(scores, edges_for_sparsity(graph, level / 100), 4.0)
        engines[f"hap_step_{level}"] = EdgeMaskedForward(model, graph, candidates)
        info["n_candidates"][str(level)] = int(candidates.numel())
    del scores
    generator = torch.Generator(device=dev).manual_seed(0)

    def forward() -> None:
        with torch.no_grad():
            model(data.clean)

    def floor() -> None:
        def embed(value, hook):
            return value.detach().requires_grad_(True)

        logits = model.run_with_hooks(data.clean, fwd_hooks=[("blocks.0.hook_resid_pre", embed)])
        metrics.kl_divergence(full, metrics.at_position(logits, data.position)).mean().backward()

    def step(name: str):
        engine = engines[name]
        log_alpha = torch.full((engine.n_active,), 3.0, device=dev, requires_grad=True)

        def run() -> None:
            mask = sample_mask(log_alpha, generator)
            logits = metrics.at_position(engine(data.clean, mask, baseline), data.position)
            metrics.kl_divergence(full, logits).mean().backward()
            log_alpha.grad = None

        return run

    calls = {
        "forward": forward,
        "floor": floor,
        "eap": lambda: attribution_scores(model, graph, data, batch_size=batch),
        **{name: step(name) for name in engines},
    }
    return info, calls


def _time_worker(
    path: Path, batch: int, repeats: int, inner: int, device: str | None, precision: str
) -> dict:
    from hap.timing import measure

    info, calls = _calls(path, batch, device, precision)
    dev = pick_device(device)
    walls: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, fn in calls.items():
            for run in range(inner):
                _, measured = measure(fn, dev)
                if round_ and run:
                    walls[name].append(measured.wall_s)
    wall = {name: statistics.median(values) for name, values in walls.items()}
    return {
        **info,
        "seconds": wall,
        "seconds_all": walls,
        "ratios": {
            "ep_step/floor": wall["ep_step"] / wall["floor"],
            "eap/(forward+floor)": wall["eap"] / (wall["forward"] + wall["floor"]),
            "hap_step_94/ep_step": wall["hap_step_94"] / wall["ep_step"],
            "hap_step_98/ep_step": wall["hap_step_98"] / wall["ep_step"],
        },
    }


def _memory_worker(path: Path, batch: int, call: str, device: str | None, precision: str) -> dict:
    from hap.timing import measure, rss_mb

    _, calls = _calls(path, batch, device, precision)
    gc.collect()
    _release_free_heap()  # the set-up's EAP pass leaves freed heap resident otherwise
    before = rss_mb()
    _, measured = measure(calls[call], pick_device(device))
    return {"peak_mb": measured.peak_mem_mb, "setup_rss_mb": before}


def _release_free_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure includes freed heap
        pass


def _run(args: list[str], threads: int, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, *args, "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner", type=int, default=3, help="back-to-back runs per call per round")
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--shapes", default=",".join(BENCH_SHAPES))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--parts", default="time,memory", help="time, memory or both")
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="see precision_dtype"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--call", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {sorted(SHAPES)}")
    torch.set_num_threads(args.threads)
    if args.worker:
        path = Path(args.worker)
        if args.call:
            result = _memory_worker(path, batches[0], args.call, args.device, args.precision)
        else:
            result = _time_worker(
                path, batches[0], args.repeats, args.inner, args.device, args.precision
            )
        print(json.dumps(result))
        return
    dev = pick_device(args.device)
    report: dict = {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (platform.processor() or platform.machine()),
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "inner": args.inner,
        "precision": args.precision,
        "memory": "max_memory_allocated" if dev.type == "cuda" else "peak RSS",
        "malloc": {
            "time": {k: TIME_ENV[k] for k in TIME_ENV if k.startswith("MALLOC")},
            "memory": {k: MEMORY_ENV[k] for k in MEMORY_ENV if k.startswith("MALLOC")},
        },
        "shapes": {},
    }
    for shape in shapes:
        path = build_checkpoint(shape)
        report["shapes"][shape] = {"config": SHAPES[shape], "batches": {}}
        for batch in batches:
            common = ["--worker", str(path), "--batches", str(batch), "--device", str(dev)]
            common += ["--precision", args.precision]
            row = {}
            if "time" in args.parts:
                timing = ["--repeats", str(args.repeats), "--inner", str(args.inner)]
                row = _run([*common, *timing], args.threads, TIME_ENV)
                print(f"{shape} batch {batch}: " + json.dumps(row["seconds"]), file=sys.stderr)
            if "memory" in args.parts:
                memory = {
                    call: _run([*common, "--call", call], args.threads, MEMORY_ENV)
                    for call in CALLS
                }
                row["peak_mem_mb"] = {call: m["peak_mb"] for call, m in memory.items()}
                row["setup_rss_mb"] = {call: m["setup_rss_mb"] for call, m in memory.items()}
                print("  peak MB: " + json.dumps(row["peak_mem_mb"]), file=sys.stderr)
            report["shapes"][shape]["batches"][str(batch)] = row
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
