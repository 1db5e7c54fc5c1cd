"""`hap baseline`: the full model and the empty circuit on the task's test prompts (the same
prompts `discover`, `evaluate` and `bench` use for the seed)."""

from __future__ import annotations

import argparse

from hap.cli import common


def add(commands) -> None:
    parser = commands.add_parser("baseline", help="full model vs empty circuit on a task")
    common.data(parser)
    common.model(parser)
    common.precision(parser)
    common.ablation(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.engine.graph import Graph, UnsupportedArchitecture
    from hap.experiments.baseline import full_model_only, run_baseline
    from hap.experiments.runs import load_model_at

    common.sizes(args)  # a task file or split that cannot serve: refused before the model loads
    model = load_model_at(args.model, args.device, args.precision)
    task = common.task(args, model)
    try:
        graph = Graph.from_model(model)
    except UnsupportedArchitecture as refusal:
        return full_model_only(model, task, str(refusal))
    return run_baseline(model, graph, task, args.ablation or "corrupted")
