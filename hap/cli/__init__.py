"""The `hap` command line.

    hap discover --method {eap,eap-ig,ep,hap,acdc} --task ioi --sparsity 0.94 [--set KEY=VALUE ...]
                 [--ablation corrupted|mean|zero] [--model NAME|PATH] [--seed N] [--device D]
                 [--out circuit.json] [--format native|eap-ig|eap-ig-pt] [--json]
    hap evaluate --circuit FILE --task ioi [--model NAME|PATH] [--ablation A] [--json]
    hap export CIRCUIT --format eap-ig|eap-ig-pt|native -o OUT
    hap baseline --task ioi [--model NAME|PATH] [--device cpu|cuda] [--json]
    hap bench [--methods eap,eap-ig,ep,hap] [--tasks ioi] [--sparsities 0.9,0.94,0.96,0.98,0.99]
              [--n-seeds 3] [--set KEY=VALUE ...] [--ablation A] [--quick] [--out F.csv] [--plots D]
              [--executor local|ray] [--address auto|HOST:PORT] [--cpus-per-run N]
              [--gpus-per-run N]
    hap mib [--methods eap,eap-ig,ep,hap] [--task ioi] [--fractions MIB's grid] [--out F.json]
            [--plot F.png] [--json]
    hap frontier [--methods ep,hap,eap,eap-ig] [--task ioi] [--sparsity 0.94]
                 [--budgets 25,50,100,200,400] [--n-seeds 3] [--out F.json] [--plot F.png] [--json]
    hap models [--json]
    hap plan [--methods eap,eap-ig,ep,hap] [--model NAME|PATH] [--task T] [--batch-size B]
             [--device cpu|cuda] [--precision fp32|tf32|bf16] [--memory-limit 40GB] [--time] [--json]
    hap report [RESULTS_DIR] [--out F.md] [--html F.html --plots DIR] [--readme README.md [--check]]
    hap task check PATH [--model NAME|PATH] [--task-format F] [--counterfactual COLUMN] [--json]

`discover` runs one backend on the task's train split (its validation split for the stopping rule)
and evaluates the circuit on its test split; with --json it prints one object whose keys scripts
rely on: method, task, model, target_sparsity, sparsity, n_edges, steps, kl, logit_diff, accuracy,
exact_match, faithfulness, wall_s, the backend's resolved config, and its stage timings as
<stage>_s. `--set` changes any field of the backend's config (`--set steps=100` fixes the search
budget instead of the stopping rule). `--ablation` is what removed edges carry, in the search and
in the evaluation alike. Every command that takes a circuit reads this project's JSON and
EAP-IG's / MIB's JSON and .pt (hap.io.formats), detected from the content.

Bad input (a value out of range, an unwritable output path, a file for another model) ends in one
line `hap: error: ...` and exit status 2, before any compute where it can be checked up front;
`--debug` (or HAP_DEBUG=1) shows the traceback. A run that fails (a search whose loss turned NaN)
exits 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from hap import allocator
from hap.cli import (
    baseline,
    bench,
    case_study,
    common,
    discover,
    draw,
    evaluate,
    export,
    frontier,
    mib,
    models,
    plan,
    report,
    task,
)
from hap.errors import RunFailed, UserError
from hap.models import ModelNotFoundError
from hap.progress import progress_bars

COMMANDS = {
    "discover": discover,
    "evaluate": evaluate,
    "export": export,
    "baseline": baseline,
    "bench": bench,
    "mib": mib,
    "frontier": frontier,
    "models": models,
    "plan": plan,
    "draw": draw,
    "case-study": case_study,
    "task": task,
    "report": report,
}
PRINTS_ITS_TABLE = ("frontier", "models", "mib", "task", "report", "plan")


def build_parser() -> common.Parser:
    parser = common.Parser(prog="hap", description="circuit discovery benchmark")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=common.Parser)
    for command in COMMANDS.values():
        command.add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a parse error (status 2, its line printed) or --help (0)
        return int(stop.code or 0)
    debug = args.debug or os.environ.get("HAP_DEBUG", "") not in ("", "0")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        if getattr(args, "compact_memory", False):
            allocator.compact()
        with progress_bars(not args.quiet):
            result = COMMANDS[args.command].run(args)
    except (UserError, ModelNotFoundError) as error:
        if debug:
            raise
        print(f"hap: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except RunFailed as failure:
        if debug:
            raise
        print(f"hap: failed: {' '.join(str(failure).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    elif args.command not in PRINTS_ITS_TABLE:
        width = max(map(len, result))
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
