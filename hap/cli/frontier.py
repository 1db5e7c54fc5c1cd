"""`hap frontier`: time to faithfulness at a ladder of fixed step budgets, methods interleaved."""

from __future__ import annotations

import argparse

from hap.cli import common, options
from hap.errors import UserError


def add(commands) -> None:
    parser = commands.add_parser("frontier", help="time to faithfulness at fixed step budgets")
    common.data(parser, seed=False)
    common.model(parser)
    common.precision(parser)
    common.memory_check(parser)
    common.ablation(parser)
    parser.add_argument("--methods", type=options.names, default=["ep", "hap", "eap", "eap-ig"])
    parser.add_argument("--sparsity", type=options.sparsity, default=0.94)
    parser.add_argument("--budgets", type=options.budgets, default=[25, 50, 100, 200, 400])
    common.seeds(parser, 3)
    parser.add_argument("--out", type=options.output_file, default=None, help="JSON summary")
    parser.add_argument("--plot", type=options.output_file, default=None, help="PNG")
    common.settings(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.plots import plot_frontier
    from hap.experiments.frontier import format_table, frontier_summary
    from hap.experiments.registry import resolve_settings
    from hap.io.atomic import write_json

    if not {"ep", "hap"} <= set(args.methods):
        raise UserError("frontier compares hap against ep: --methods must include both")
    settings, _ = common.with_ablation(args)
    configs = resolve_settings(args.methods, settings)
    common.check_memory(args, configs, args.sparsity)
    seeds = common.n_seeds(args)
    model, graph = common.load(args)
    tasks = {seed: common.task(args, model, seed=seed) for seed in range(seeds)}
    result, summary = frontier_summary(
        model,
        graph,
        tasks,
        args.methods,
        args.sparsity,
        args.budgets,
        configs,
        progress=not (args.json or args.quiet),
    )
    if args.out:
        write_json(args.out, summary)
    if args.plot:
        plot_frontier(summary, args.plot)
    if not args.json:
        print(format_table(result, summary))
    return summary
