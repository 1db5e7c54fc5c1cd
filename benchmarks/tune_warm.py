"""The warm starts' defaults, checked on tuning seeds and the validation split only.

    python benchmarks/tune_warm.py [--sparsities 0.94,0.98] [--budgets 25,50,100]
                                   [--seeds 11,12,13] [--methods ep,hap,ep-warm,hap-warm]
                                   [--set KEY=VALUE ...] [--threads 2]
                                   [--out results/calibration/warm_start.json]

`hap.search.warm`'s knobs (kept_multiple, spread, floor, the scorer) were chosen on fixed-step
ladders on seeds 11-13, which no test and no reference result uses. This script reruns that
check with today's search (the shared warm-up, selection and engine): each method on a ladder of
fixed step budgets, interleaved as `hap frontier` interleaves them, scored on each seed's
*validation* split (the task is built without test prompts), and the ratios against EP that
`hap frontier` reports. `--set` applies to every method that has the key, as on the CLI.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from hap.engine.graph import Graph
from hap.experiments.frontier import format_table, frontier_summary
from hap.experiments.registry import resolve_settings
from hap.experiments.runs import Split, build_task, load_model_at
from hap.search.config import parse_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sparsities", default="0.94,0.98")
    parser.add_argument("--budgets", default="25,50,100")
    parser.add_argument("--seeds", default="11,12,13")
    parser.add_argument("--methods", default="ep,hap,ep-warm,hap-warm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/calibration/warm_start.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    configs = resolve_settings(methods, parse_settings(args.set))
    model = load_model_at(None, "cpu")
    graph = Graph.from_model(model)
    tasks = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        task = build_task(model, "ioi", seed, Split(n_test=0))
        tasks[seed] = replace(task, test=task.val)  # scored on validation prompts, never test
    report = {"split": "validation", "settings": args.set, "threads": args.threads, "runs": {}}
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        result, summary = frontier_summary(
            model, graph, tasks, methods, sparsity, budgets, configs, progress=True
        )
        print(f"\n{sparsity:.0%}\n{format_table(result, summary)}")
        report["runs"][f"{sparsity:g}"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
