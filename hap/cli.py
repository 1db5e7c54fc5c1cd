"""The `hap` command line.

    hap baseline --task ioi [--model NAME|PATH] [--device cpu|cuda] [--json]

prints the model's behaviour on the task's test split: full-model accuracy and logit difference,
and how far the empty circuit (every edge carrying the corrupted activation) falls from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from hap.evaluate import evaluate_circuit
from hap.graph import Graph
from hap.models import ModelNotFoundError, load_model
from hap.patching import Ablation
from hap.tasks import GENERATORS, TaskError, make_task


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="ioi", choices=sorted(GENERATORS))
    parser.add_argument("--model", default=None, help="hub name or local path (default: embedded)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--ablation", default="corrupted", choices=[a.value for a in Ablation])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def baseline(args: argparse.Namespace) -> dict:
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    task = make_task(
        args.task, model.tokenizer, n_train=0, n_val=0, n_test=args.n_test, seed=args.seed
    )
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
    _common(commands.add_parser("baseline", help="full model vs empty circuit on a task"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = {"baseline": baseline}[args.command](args)
    except (ModelNotFoundError, TaskError, ValueError, RuntimeError) as error:
        print(f"hap: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
