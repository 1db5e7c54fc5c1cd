"""`hap discover`: one backend on the task's train split (validation split for the stopping
rule), its circuit evaluated on the test split."""

from __future__ import annotations

import argparse

from hap.cli import common, options
from hap.io.formats import FORMATS


def add(commands) -> None:
    parser = commands.add_parser("discover", help="find a circuit with one backend and evaluate it")
    common.data(parser)
    common.model(parser)
    common.precision(parser)
    common.memory_check(parser)
    common.ablation(parser)
    parser.add_argument("--method", required=True, help="eap, eap-ig, ep, hap or acdc")
    parser.add_argument("--sparsity", type=options.sparsity, default=0.94, help="in [0, 1)")
    parser.add_argument("--out", type=options.output_file, default=None, help="write the circuit")
    parser.add_argument("--format", default="native", choices=FORMATS, help="of --out")
    common.settings(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.experiments.registry import check_validation, get_backend
    from hap.experiments.runs import run_one

    backend = get_backend(args.method)
    settings, ablation = common.with_ablation(args)
    config = backend.config(settings)
    check_validation({args.method: config}, common.sizes(args)["n_val"])
    common.check_memory(args, {args.method: config}, args.sparsity)
    model, graph = common.load(args)
    task = common.task(args, model)
    result = run_one(model, graph, task, args.method, args.sparsity, args.seed, config)
    written = (
        common.save_circuit(result.circuit, graph, args.out, args.format) if args.out else None
    )
    return {
        "method": args.method,
        "task": args.task,
        "model": model.name,
        "device": str(next(model.parameters()).device),
        "precision": result.circuit.details["precision"],
        "allocator": result.circuit.details["allocator"],
        "seed": args.seed,
        "ablation": ablation,
        **task.record(),
        **result.record(graph),
        "config": result.circuit.config,
        "circuit_file": str(written) if written else None,
        **{f"{k}_s": v for k, v in result.circuit.timings.items() if k != "total"},
    }
