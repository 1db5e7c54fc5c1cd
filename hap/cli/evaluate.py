"""`hap evaluate`: a circuit file (any supported format, from any tool) on the task's test split,
under the ablation the circuit records unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("evaluate", help="evaluate a circuit file (any supported format)")
    parser.add_argument("--circuit", type=options.input_file, required=True)
    common.data(parser)
    common.model(parser)
    common.precision(parser)
    common.ablation(parser)
    parser.add_argument(
        "--per-prompt",
        type=options.output_file,
        default=None,
        help="write one CSV row per test prompt (full model, circuit, empty circuit)",
    )
    common.flags(parser)


def circuit_ablation(circuit) -> str | None:
    """The ablation a circuit was searched under, where its file records one."""
    config = circuit.config if isinstance(circuit.config, dict) else {}
    search = config.get("search")
    recorded = (search.get("ablation") if isinstance(search, dict) else None) or config.get(
        "ablation"
    )
    return recorded if isinstance(recorded, str) else None


def _note_other_data(circuit, args: argparse.Namespace) -> None:
    """A note where the circuit file records the data it was found on and this evaluation
    reads other data: another task (file), or the same task drawn with another seed or split
    sizes, whose test prompts may include the search's training prompts."""
    found = circuit.details.get("task") if isinstance(circuit.details, dict) else None
    if not isinstance(found, dict):
        return
    from hap.tasks import is_task_file, read_task_file

    name = args.task
    sha = None
    if is_task_file(name):
        sha = read_task_file(name, args.task_format, args.counterfactual).sha256
    same_task = (found.get("task_sha256") == sha) if sha else found.get("name") == name
    if not same_task:
        print(
            f"hap: note: {args.circuit.name} was found on {found.get('task_file') or found.get('name')}"
            f"; evaluating on {name}",
            file=sys.stderr,
        )
        return
    sizes = common.sizes(args)
    recorded = {k: found.get(k) for k in sizes}
    if str(found.get("task_format") or "").startswith("mib-"):
        recorded = sizes  # MIB's rows are filtered for the tokenizer after this count
    if found.get("seed") != args.seed or recorded != sizes:
        print(
            f"hap: note: {args.circuit.name} was searched on seed {found.get('seed')} with "
            f"{recorded}; evaluating on seed {args.seed} with {sizes}: the test prompts may "
            "include prompts the search trained on",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> dict:
    from hap.engine.ablation import check_ablation
    from hap.engine.evaluate import per_prompt, summarize
    from hap.engine.live import count_live
    from hap.io.formats import check_same_shape, detect_format, read_circuit

    fmt = detect_format(args.circuit)
    circuit, file_graph = read_circuit(args.circuit)  # a broken file fails before the model loads
    recorded = circuit_ablation(circuit)
    ablation = args.ablation or recorded or "corrupted"
    check_ablation(ablation)  # a file may record one this version does not know
    if args.ablation and recorded and args.ablation != recorded:
        print(
            f"hap: note: {args.circuit.name} was searched under {recorded} ablation; evaluating "
            f"under {args.ablation} as asked",
            file=sys.stderr,
        )
    _note_other_data(circuit, args)
    found_at = circuit.details.get("precision") if isinstance(circuit.details, dict) else None
    if found_at and found_at != args.precision:
        print(
            f"hap: note: {args.circuit.name} was searched at {found_at}; evaluating at "
            f"{args.precision} as asked",
            file=sys.stderr,
        )
    model, graph = common.load(args)
    check_same_shape(file_graph, graph, args.circuit)
    task = common.task(args, model)
    figures = per_prompt(model, graph, task.test, circuit.mask, ablation=ablation)
    result = summarize(figures)
    if args.per_prompt:
        from hap.experiments.prompts import prompt_rows, write_prompt_rows

        rows = prompt_rows(model.tokenizer, task.test, figures, task.test_examples)
        write_prompt_rows(args.per_prompt, rows)
    live = count_live(graph, circuit.mask, ablation)
    return {
        "circuit": str(args.circuit),
        "format": fmt,
        "method": circuit.method,
        "task": args.task,
        "model": model.name,
        "seed": args.seed,
        "ablation": ablation,
        "recorded_ablation": recorded,
        "precision": args.precision,
        "recorded_precision": found_at,
        **task.record(),
        "n_edges": circuit.n_edges,
        "live_edges": live,
        "sparsity": 1.0 - live / graph.n_edges,
        **asdict(result),
        "per_prompt_file": str(args.per_prompt) if args.per_prompt else None,
    }
