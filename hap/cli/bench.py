"""`hap bench`: the sweep (methods x tasks x sparsities x seeds), its plots and summary. With
--json, stdout holds one JSON document and the tables go to stderr. Exit status 1 when every run
failed; failures among successes are listed and the status stays 0."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hap.cli import common, options
from hap.errors import UserError


def add(commands) -> None:
    parser = commands.add_parser("bench", help="sweep backends x sparsities x seeds; plots")
    parser.add_argument("--methods", type=options.names, default=["eap", "eap-ig", "ep", "hap"])
    parser.add_argument(
        "--tasks",
        type=options.names,
        default=["ioi"],
        help="built-in names or task files, comma-separated",
    )
    parser.add_argument("--sparsities", type=options.sparsities, default=None)
    common.seeds(parser, None)
    parser.add_argument("--quick", action="store_true", help="94%% and 98%% only, one seed")
    common.data(parser, seed=False, task=False)
    common.task_file_flags(parser)
    common.model(parser)
    common.precision(parser)
    common.memory_check(parser)
    common.ablation(parser)
    parser.add_argument("--out", type=options.output_file, default=Path("results/sweep.csv"))
    parser.add_argument("--plots", type=options.output_dir, default=Path("plots"))
    parser.add_argument(
        "--circuits",
        type=options.output_dir,
        default=None,
        help="each run's circuit as <run_key>.json (default: circuits/ beside --out)",
    )
    parser.add_argument(
        "--executor", default="local", choices=["local", "ray"], help="where runs execute"
    )
    parser.add_argument("--address", default=None, help="Ray: auto or HOST:PORT (default: local)")
    parser.add_argument("--cpus-per-run", type=options.positive_int, default=None, help="Ray")
    parser.add_argument(
        "--gpus-per-run", type=options.nonnegative_float, default=None, help="Ray: GPUs per run"
    )
    common.settings(parser)
    common.flags(parser)


def executor(args: argparse.Namespace):
    from hap.experiments.executors import LocalExecutor, RayExecutor

    ray_only = {
        "--address": args.address,
        "--cpus-per-run": args.cpus_per_run,
        "--gpus-per-run": args.gpus_per_run,
    }
    if args.executor == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UserError(f"{', '.join(given)} {verb} to --executor ray only")
        return LocalExecutor()
    return RayExecutor(
        address=args.address,
        cpus_per_run=args.cpus_per_run or 1,
        gpus_per_run=args.gpus_per_run or 0.0,
    )


def run(args: argparse.Namespace) -> dict:
    import pandas as pd

    from hap.analysis.plots import plot_all
    from hap.errors import RunFailed
    from hap.experiments.summary import failures, summary, swept_areas
    from hap.experiments.sweep import SweepConfig, run_sweep

    settings, ablation = common.with_ablation(args)
    sparsities = args.sparsities or ((0.94, 0.98) if args.quick else (0.9, 0.94, 0.96, 0.98, 0.99))
    seeds = common.n_seeds(args) or (1 if args.quick else 3)
    config = SweepConfig(
        methods=tuple(args.methods),
        tasks=tuple(args.tasks),
        sparsities=tuple(sparsities),
        seeds=tuple(range(seeds)),
        model=args.model,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        ablation=ablation,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        task_format=args.task_format,
        counterfactual=args.counterfactual,
        settings={k: v for k, v in settings.items() if k != "ablation"},
        out=args.out,
        circuits=args.circuits or args.out.parent / "circuits",
    )
    configs = config.resolve()  # a bad method, setting or key fails before the model loads
    if args.executor == "local":  # a cluster's workers have memory of their own
        common.check_memory(args, configs, min(sparsities), tasks=list(args.tasks))
    table = run_sweep(config, progress=not args.quiet, executor=executor(args))
    ok = table[table["status"] == "ok"]
    plots = plot_all(ok, args.plots) if len(ok) else []
    failed = failures(table)
    shown = sys.stderr if args.json else sys.stdout
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(summary(table).to_string(index=False), file=shown)
        print(
            "\nareas over the swept sparsities only (not MIB's CPR/CMD: see `hap mib`):", file=shown
        )
        print(swept_areas(table).round(3).to_string(index=False), file=shown)
        if len(failed):
            print(f"\n{len(failed)} run(s) failed:", file=shown)
            print(failed.to_string(index=False), file=shown)
    if len(table) and not len(ok):
        raise RunFailed(f"every run of the sweep failed ({len(failed)} rows in {config.out})")
    return {
        "results": str(config.out),
        "rows": len(table),
        "failed": len(failed),
        "plots": [str(p) for p in plots],
    }
