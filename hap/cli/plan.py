"""`hap plan`: before a run, each method's estimated peak memory, part by part
(hap.experiments.plan), the largest batch size under --memory-limit, and with --time one
measured step on the device."""

from __future__ import annotations

import argparse
import re

from hap.cli import common, options

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def memory_size(text: str) -> int:
    """A memory size in bytes: a number and a unit K, M, G or T (with or without B / iB; all
    binary, 1 GB = 2^30 bytes, as the plan's MB are 2^20), or B for bytes."""
    if text.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"{text!r}: a memory size must be positive")
    match = _SIZE.match(text)
    if not match or not (match.group(2) or match.group(3)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size; e.g. 40GB or 512MB")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a memory size must be positive")
    return int(value)


def methods(text: str) -> list[str]:
    from hap.experiments.plan import METHODS

    chosen = options.names(text)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method {unknown[0]!r}; hap plan estimates {', '.join(METHODS)}"
        )
    return chosen


def device_name(text: str) -> str:
    """cpu, cuda or cuda:N: the device to estimate for (it need not be present; --time needs it)."""
    name = text.strip().lower()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise argparse.ArgumentTypeError(f"{text!r}: estimate for cpu, cuda or cuda:N")
    return name


def margin(text: str) -> float:
    value = options.nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"a margin is a fraction in [0, 1), got {value}")
    return value


def add(commands) -> None:
    parser = commands.add_parser(
        "plan", help="estimated peak memory per method before a run (and one timed step)"
    )
    parser.add_argument(
        "--methods",
        type=methods,
        default=["eap", "eap-ig", "ep", "hap"],
        help="eap,eap-ig,ep,hap,ep-warm,hap-warm",
    )
    common.data(parser)
    parser.add_argument(
        "--model",
        default=None,
        help="a name from `hap models`, a checkpoint folder or a cached hub name (default: "
        "embedded); read from its config.json and tokenizer, no weights loaded",
    )
    parser.add_argument(
        "--device",
        type=device_name,
        default=None,
        help="cpu or cuda: the device to estimate for (default: cuda if available)",
    )
    parser.add_argument(
        "--threads", type=options.positive_int, default=None, help="torch CPU threads (--time)"
    )
    common.precision(parser)
    parser.add_argument(
        "--batch-size", type=options.positive_int, default=None, help="default: each method's (32)"
    )
    parser.add_argument(
        "--sparsity",
        type=options.sparsity,
        default=0.94,
        help="the target: HAP's candidate count and the evaluated circuit's size (default 0.94)",
    )
    parser.add_argument(
        "--memory-limit",
        type=memory_size,
        default=None,
        help="e.g. 40GB: whether each method fits, and the largest batch size that does",
    )
    parser.add_argument(
        "--margin", type=margin, default=0.1, help="headroom on the estimate (default 0.1)"
    )
    parser.add_argument(
        "--no-eval", action="store_true", help="the search alone (no test-split evaluation)"
    )
    parser.add_argument(
        "--time", action="store_true", help="load the model and time one step per method"
    )
    common.settings(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.experiments import plan
    from hap.experiments.registry import resolve_settings
    from hap.models import pick_device
    from hap.search.config import parse_settings

    settings = parse_settings(args.set)
    if args.batch_size is not None:
        settings["batch_size"] = str(args.batch_size)
    configs = resolve_settings(args.methods, settings)
    sizes = common.sizes(args)
    device = args.device or pick_device(None).type
    if args.time:
        pick_device(device)  # the device must be here to time on it
    model = plan.read_model(args.model)
    widths = plan.task_widths(model, common.task_spec(args), args.seed, common.split(args))
    kwargs = {"sparsity": args.sparsity, "device": device, "precision": args.precision}
    evaluate = not args.no_eval
    estimates = {
        m: plan.estimate(model.shape, widths, m, configs[m], evaluate=evaluate, **kwargs)
        for m in args.methods
    }
    limit = args.memory_limit
    rows = {}
    for m, estimate in estimates.items():
        row = estimate.record()
        if limit is not None:
            row["fits"] = plan.fits(estimate, limit, args.margin)
            row["largest_batch"] = plan.largest_batch(
                model.shape, widths, m, configs[m], limit, args.margin, evaluate=evaluate, **kwargs
            )
        rows[m] = row
    if args.time:
        for m, seconds in _timed(args, configs, device).items():
            rows[m]["time"] = seconds
    result = {
        "model": model.shape.record(),
        "task": {"name": args.task, "seed": args.seed, **sizes, **_width_range(widths)},
        "device": device,
        "precision": args.precision,
        "memory": "max_memory_allocated" if device.startswith("cuda") else "peak resident set",
        "memory_limit_mb": None if limit is None else round(limit / plan.MB, 1),
        "margin": args.margin,
        "largest_batch": "any whole number up to the train split's size",
        "methods": rows,
    }
    if not args.json:
        print(format_plan(result))
    return result


def _width_range(widths) -> dict:
    every = widths.train + widths.val + widths.test
    return {"min_tokens": min(every), "max_tokens": max(every)}


def _timed(args: argparse.Namespace, configs: dict, device: str) -> dict[str, dict]:
    from hap.engine.graph import Graph
    from hap.experiments.plan import time_step
    from hap.experiments.runs import load_model_at

    model = load_model_at(args.model, device, args.precision)
    graph = Graph.from_model(model)
    task = common.task(args, model)
    return {m: time_step(model, graph, task, m, configs[m], args.sparsity) for m in args.methods}


def format_plan(result: dict) -> str:
    """The plan as the terminal shows it: a summary line per method, then each one's parts."""
    shape, task = result["model"], result["task"]
    lines = [
        f"model      {shape['name']}: {shape['n_layers']} layers x {shape['n_heads']} heads, "
        f"d_model {shape['d_model']}, {shape['n_params']:,} parameters, "
        f"{shape['n_edges']:,} edges",
        f"task       {task['name']}: train {task['n_train']}, validation {task['n_val']}, "
        f"test {task['n_test']}; prompts of {task['min_tokens']}-{task['max_tokens']} tokens",
        f"device     {result['device']}, {result['precision']} ({result['memory']})",
    ]
    limit = result["memory_limit_mb"]
    if limit is not None:
        lines.append(f"limit      {limit:,.0f} MB, margin {result['margin']:.0%}")
    head = f"{'method':<8} {'batch':>5} {'peak MB':>9}  {'at':<17}"
    if limit is not None:
        head += f" {'fits':<5} {'largest batch':>13}"
    if any("time" in row for row in result["methods"].values()):
        head += "  one step"
    lines += ["", head]
    for name, row in result["methods"].items():
        line = f"{name:<8} {row['batch_size']:>5} {row['peak_mb']:>9,.0f}  {row['peak_phase']:<17}"
        if limit is not None:
            largest = row["largest_batch"]
            line += f" {'yes' if row['fits'] else 'no':<5} {largest if largest else 'none':>13}"
        if "time" in row:
            line += "  " + ", ".join(f"{k} {v:.3f}" for k, v in row["time"].items())
        lines.append(line)
    first = next(iter(result["methods"].values()))
    lines += ["", "resident through the run:"]
    lines += [f"  {p['name']:<36} {p['mb']:>9,.1f} MB  {p['formula']}" for p in first["resident"]]
    shared = [n for n in first["notes"] if all(n in r["notes"] for r in result["methods"].values())]
    for name, row in result["methods"].items():
        phases = ", ".join(f"{ph['name']} {ph['mb']:,.0f}" for ph in row["phases"])
        lines += ["", f"{name}: phases (MB above the resident) {phases}"]
        peak = next(ph for ph in row["phases"] if ph["name"] == row["peak_phase"])
        lines += [f"  {p['name']:<36} {p['mb']:>9,.1f} MB  {p['formula']}" for p in peak["parts"]]
        lines += [f"  note: {note}" for note in row["notes"] if note not in shared]
    lines += [""] + [f"note: {note}" for note in shared] if shared else []
    return "\n".join(lines)
