"""`hap task check PATH`: a task file validated without searching (hap.experiments.taskcheck)."""

from __future__ import annotations

import argparse

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("task", help="task files: check one before searching on it")
    actions = parser.add_subparsers(dest="task_command", required=True, parser_class=common.Parser)
    check = actions.add_parser("check", help="validate a task file and report on it")
    check.add_argument("path", type=options.task, help="the task file (or save_to_disk folder)")
    common.task_file_flags(check)
    common.data(check, task=False)
    check.add_argument(
        "--model", default=None, help="check against this model (default: the embedded one)"
    )
    check.add_argument("--no-model", action="store_true", help="check the file alone")
    check.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps")
    check.add_argument("--threads", type=options.positive_int, default=None)
    common.flags(check)


def run(args: argparse.Namespace) -> dict:
    from hap.errors import UserError
    from hap.experiments.runs import TaskSpec
    from hap.experiments.taskcheck import check_task, format_report
    from hap.tasks import BUILTIN_TASKS

    if args.path in BUILTIN_TASKS:
        raise UserError(f"{args.path} is a built-in task; hap task check reads task files")
    spec = TaskSpec(args.path, args.task_format, args.counterfactual)
    check_task(spec, None, common.split(args), args.seed)  # the file alone, before a model loads
    model = None
    if not args.no_model:
        from hap.models import load_model, pick_device

        pick_device(args.device)
        model = load_model(args.model, device=args.device)
    report = check_task(spec, model, common.split(args), args.seed)
    if not args.json:
        print(format_report(report))
    return report
