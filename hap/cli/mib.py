"""`hap mib`: MIB's CPR / CMD on MIB's grid of edge fractions, under MIB's own protocol (top-n
edges, then dangling ones dropped)."""

from __future__ import annotations

import argparse

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("mib", help="MIB's CPR / CMD on MIB's grid of edge fractions")
    parser.add_argument("--methods", type=options.names, default=["eap", "eap-ig", "ep", "hap"])
    parser.add_argument("--fractions", type=options.fractions, default=None, help="MIB's grid")
    common.data(parser)
    common.model(parser)
    common.precision(parser)
    common.memory_check(parser)
    common.ablation(parser)
    parser.add_argument("--out", type=options.output_file, default=None, help="JSON summary")
    parser.add_argument("--plot", type=options.output_file, default=None, help="PNG")
    common.settings(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.plots import plot_mib
    from hap.experiments.mib import MIB_FRACTIONS, check_methods, format_table, run_mib_summary
    from hap.experiments.registry import check_validation, resolve_settings
    from hap.io.atomic import write_json

    settings, ablation = common.with_ablation(args)
    check_methods(args.methods)  # before the model loads
    configs = resolve_settings(args.methods, settings)
    check_validation(configs, common.sizes(args)["n_val"])
    fractions = args.fractions or MIB_FRACTIONS
    # the largest circuit MIB's grid evaluates sets the evaluation's size
    common.check_memory(args, configs, max(0.0, 1.0 - max(fractions)))
    model, graph = common.load(args)
    task = common.task(args, model)
    result, summary = run_mib_summary(
        model, graph, task, args.methods, configs, fractions, args.seed, ablation
    )
    if args.out:
        write_json(args.out, summary)
    if args.plot:
        plot_mib(summary, args.plot)
    if not args.json:
        print(format_table(result))
    return summary
