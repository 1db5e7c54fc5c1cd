"""What several commands share: their flags, the ablation they agree on, the split sizes, and
the model and task a command loads."""

from __future__ import annotations

import argparse
import sys

from hap.cli import options
from hap.engine.ablation import Ablation, check_ablation
from hap.errors import ConfigError
from hap.experiments.runs import Split, TaskSpec, build_task, load_model_at
from hap.models import PRECISIONS
from hap.search.config import parse_settings
from hap.tasks import BUILTIN_TASKS, FORMATS


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line `hap: error: ...` (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"hap: error: {message} (see `{self.prog} --help`)\n")


def flags(parser: argparse.ArgumentParser, json: bool = True) -> None:
    if json:
        parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="hub name or local path (default: embedded)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--threads", type=options.positive_int, default=None, help="torch CPU threads"
    )
    parser.add_argument(
        "--compact-memory",
        action="store_true",
        help="CPU: fix glibc's mmap threshold at 128 KB so the resident set follows live "
        "tensors (GPT-2-small shape, EP batch 32: 3.9 GB instead of 6.9) at about 1.75x the "
        "step time; recorded as the run's allocator",
    )


def memory_check(parser: argparse.ArgumentParser) -> None:
    """--memory-margin / --no-memory-check: the run's planned peak memory against the device's
    free memory, before the model loads (hap.experiments.preflight)."""
    parser.add_argument(
        "--memory-margin",
        type=options.nonnegative_float,
        default=0.1,
        help="refuse a run whose planned peak memory exceeds the free memory by more than this "
        "fraction (default 0.1)",
    )
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="run even where the plan says it will not fit",
    )


def check_memory(
    args: argparse.Namespace, configs: dict, sparsity: float, tasks: list | None = None
) -> None:
    """Refuse, before the model loads, a run of `configs` (method -> config) whose planned peak
    exceeds the free memory on its device by more than --memory-margin (hap.experiments.
    preflight); each of `tasks` (default: the arguments' task) is checked at seed --seed."""
    from hap.experiments import preflight
    from hap.models import pick_device

    if args.no_memory_check:
        return
    device = str(pick_device(args.device))
    for name in tasks or [None]:
        preflight.check(
            args.model,
            task_spec(args, name),
            getattr(args, "seed", None) or 0,
            split(args),
            configs,
            sparsity,
            device,
            args.precision,
            args.memory_margin,
        )


def precision(parser: argparse.ArgumentParser) -> None:
    """--precision, for the commands that load a model and compute with it; recorded with every
    result they give (hap.experiments.runs.load_model_at)."""
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default): exact float32; tf32: float32 weights, TF32 matmuls on Ampere and "
        "later GPUs (on a CPU the same as fp32, still recorded as tf32); bf16: bfloat16 weights "
        "and activations (on a CPU it runs, slowly). Recorded with every result",
    )


def data(
    parser: argparse.ArgumentParser, seed: bool = True, split: bool = True, task: bool = True
) -> None:
    """--task (a built-in name or a task file), --seed and the split sizes (unset, they are the
    task's defaults: Split's, so one seed names one prompt set everywhere)."""
    if task:
        parser.add_argument(
            "--task",
            default="ioi",
            type=options.task,
            help=f"a built-in task ({', '.join(sorted(BUILTIN_TASKS))}) or a task file's path",
        )
        task_file_flags(parser)
    if seed:
        parser.add_argument("--seed", type=options.nonnegative_int, default=0)
    if split:
        parser.add_argument(
            "--n-train",
            type=options.nonnegative_int,
            default=None,
            help="search prompts (default 64; a task file: its split column, else 40%% of its rows)",
        )
        parser.add_argument(
            "--n-val",
            type=options.nonnegative_int,
            default=None,
            help="validation prompts (default 64; a task file: its split column, else 20%%)",
        )
    parser.add_argument(
        "--n-test",
        type=options.positive_int,
        default=None,
        help="test prompts (default 200; a task file: its split column, else 40%%)",
    )


def task_file_flags(parser: argparse.ArgumentParser) -> None:
    """--task-format and --counterfactual, for a task given as a file."""
    parser.add_argument(
        "--task-format",
        default=None,
        choices=FORMATS,
        help="the task file's format (default: detected from its content)",
    )
    parser.add_argument(
        "--counterfactual",
        default=None,
        help="MIB's rows: the counterfactual column (default: MIB's own for the task)",
    )


def sizes(args: argparse.Namespace) -> dict[str, int]:
    """The split sizes the arguments' task will draw (a task file is read and checked here,
    before any model loads)."""
    return task_spec(args).sizes(split(args))


def task_spec(args: argparse.Namespace, name: str | None = None) -> TaskSpec:
    return TaskSpec(
        name or args.task, getattr(args, "task_format", None), getattr(args, "counterfactual", None)
    )


def seeds(parser: argparse.ArgumentParser, default: int | None) -> None:
    """--n-seeds N: seeds 0..N-1 (--seeds N, its old name, still works and says so)."""
    shown = "3" if default is None else str(default)
    parser.add_argument(
        "--n-seeds",
        type=options.positive_int,
        default=None,
        help=f"run seeds 0..N-1 (default {shown})",
    )
    parser.add_argument("--seeds", type=options.positive_int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(default_seeds=default)


def n_seeds(args: argparse.Namespace) -> int | None:
    if args.seeds is not None:
        print("hap: note: --seeds N is now --n-seeds N (seeds 0..N-1)", file=sys.stderr)
        if args.n_seeds not in (None, args.seeds):
            raise ConfigError(f"--seeds {args.seeds} and --n-seeds {args.n_seeds} disagree")
        return args.seeds
    return args.n_seeds if args.n_seeds is not None else args.default_seeds


def ablation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ablation",
        default=None,
        choices=[a.value for a in Ablation],
        help="what removed edges carry, in the search and the evaluation (default: corrupted)",
    )


def settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the backend's config, e.g. steps=100 (repeatable)",
    )


def with_ablation(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The --set overrides with the ablation every backend searches under, and that ablation:
    --ablation and --set ablation=... name one thing and must agree."""
    chosen_settings = parse_settings(args.set)
    chosen = args.ablation or chosen_settings.get("ablation") or Ablation.CORRUPTED.value
    if chosen_settings.get("ablation", chosen) != chosen:
        raise ConfigError(
            f"--ablation {args.ablation} and --set ablation={chosen_settings['ablation']} "
            "disagree; give --ablation alone"
        )
    check_ablation(chosen)
    return {**chosen_settings, "ablation": chosen}, chosen


def split(args: argparse.Namespace) -> Split:
    return Split(getattr(args, "n_train", None), getattr(args, "n_val", None), args.n_test)


def task(args: argparse.Namespace, loaded_model, seed: int | None = None):
    """The task the arguments name, for `loaded_model` (hap.experiments.runs.build_task)."""
    return build_task(
        loaded_model, task_spec(args), args.seed if seed is None else seed, split(args)
    )


def load(args: argparse.Namespace):
    """The model the arguments name at their --precision, and its graph; the task's split sizes
    are checked first, so a split no task can supply is refused before the model boots."""
    from hap.engine.graph import Graph
    from hap.models import pick_device

    if getattr(args, "task", None):
        task_spec(args).sizes(split(args))  # a split the task cannot supply: refused here
    pick_device(args.device)

    loaded = load_model_at(args.model, args.device, args.precision)
    return loaded, Graph.from_model(loaded)


def save_circuit(circuit, graph, path, fmt: str):
    """Write the circuit to `path`; where that fails after the compute, keep it (native JSON in
    the working folder, else the temp folder) and say where in one line (exit 2)."""
    import os
    import tempfile
    from pathlib import Path

    from hap.errors import UserError
    from hap.io.formats import write_circuit

    try:
        write_circuit(circuit, graph, path, fmt)
        return path
    except OSError as error:
        reason = error.strerror or type(error).__name__
    name = f"hap-circuit-{circuit.method}-{os.getpid()}.json"
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            write_circuit(circuit, graph, folder / name, "native")
        except OSError:
            continue
        raise UserError(
            f"could not write {path} ({reason}); the circuit is kept in {folder / name}"
        )
    raise UserError(f"could not write {path} ({reason}), nor a copy in the working or temp folder")
