"""`hap task check`: a task file validated without searching, as a report a researcher reads
before trusting any circuit found on it: the rows read and dropped (and why), the token-level
problems (pairs of unequal length, answers that are not single tokens), and how the full model
does on the clean and on the corrupted prompts (a task the model fails, or where clean and
corrupted prompts agree, gives circuits nothing to explain)."""

from __future__ import annotations

import torch

from hap.experiments.runs import Split, TaskSpec
from hap.tasks.base import TaskError, tokenize
from hap.tasks.files import TaskFile, choose_rows, read_task_file, token_problem, usable_rows

SHOWN = 5  # rows named per problem
FAILS_BELOW = 0.6  # clean accuracy under which the model is said to fail the task
AGREE_ABOVE = 0.6  # corrupted accuracy above which clean and corrupted are said to agree


def _rows(lines: list[int]) -> dict:
    return {"count": len(lines), "rows": lines[:SHOWN]}


def _token_problems(task_file: TaskFile, tokenizer, prepend_bos: bool | None) -> dict:
    """Per-row token checks that `tokenize` would refuse, all of them counted (not the first)."""
    use_bos = prepend_bos if prepend_bos is not None else tokenizer.bos_token_id is not None
    bos = 1 if use_bos else 0
    problems: dict[str, list[int]] = {}
    lengths = []
    for row in task_file.rows:
        lengths.append(
            len(tokenizer(row.example.clean, add_special_tokens=False)["input_ids"]) + bos
        )
        problem = token_problem(row.example, tokenizer)
        if problem:
            problems.setdefault(problem, []).append(row.line)
    return {
        "prompt_tokens": {"min": min(lengths), "max": max(lengths)},
        "token_problems": {reason: _rows(lines) for reason, lines in problems.items()},
    }


@torch.no_grad()
def _full_model(model, task_file: TaskFile) -> dict:
    """The full model's accuracy and logit difference (answers vs distractors) on every usable
    row's clean prompt and on its corrupted prompt."""
    from hap.engine import metrics
    from hap.engine.ablation import run_activations
    from hap.engine.graph import Graph

    data = tokenize(
        [r.example for r in task_file.rows],
        model.tokenizer,
        model.prepend_bos,
        rows=[r.line for r in task_file.rows],
        source=str(task_file.path),
    )
    graph = Graph.from_model(model)
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64)
    for batch in data.to(device).batches(64):
        clean = metrics.at_position(run_activations(model, graph, batch.clean)[0], batch.position)
        corrupted = metrics.at_position(
            run_activations(model, graph, batch.corrupted)[0], batch.position
        )
        sums += (
            torch.stack(
                [
                    metrics.accuracy(clean, batch).sum(),
                    metrics.logit_diff(clean, batch).sum(),
                    metrics.accuracy(corrupted, batch).sum(),
                    metrics.logit_diff(corrupted, batch).sum(),
                ]
            )
            .double()
            .cpu()
        )
    acc, ld, corrupted_acc, corrupted_ld = (sums / len(data)).tolist()
    return {
        "clean_accuracy": acc,
        "clean_logit_diff": ld,
        "corrupted_accuracy": corrupted_acc,
        "corrupted_logit_diff": corrupted_ld,
    }


def check_task(spec: TaskSpec, model=None, split: Split | None = None, seed: int = 0) -> dict:
    """The report of `hap task check`; `model` None checks the file alone (no tokenizer)."""
    task_file = read_task_file(spec.name, spec.format, spec.counterfactual)
    report: dict = {
        **task_file.record(),
        "rows_read": len(task_file.rows) + sum(map(len, task_file.dropped.values())),
        "rows_usable": len(task_file.rows),
        "dropped": {reason: _rows(lines) for reason, lines in task_file.dropped.items()},
        "has_split_column": task_file.has_splits,
        "token_ids": task_file.token_ids,
        "flags": [],
    }
    unit = task_file.unit
    report["row_numbers"] = f"{unit}s of the file" if unit == "line" else "record numbers"
    if task_file.token_ids:
        report["flags"].append("answers are token ids: the file holds for one tokenizer only")
    same = [r.line for r in task_file.rows if r.example.clean == r.example.corrupted]
    if same:
        report["flags"].append(
            f"{len(same)} rows have a corrupted prompt equal to the clean one ({unit}s "
            f"{same[:SHOWN]}): patching them changes nothing"
        )
    seen: dict = {}
    repeated = []
    for r in task_file.rows:
        key = (r.example.clean, r.example.corrupted)
        if key in seen:
            repeated.append(r.line)
        seen.setdefault(key, r.line)
    if repeated:
        report["flags"].append(
            f"{len(repeated)} rows repeat an earlier pair ({unit}s {repeated[:SHOWN]}): they weigh "
            "twice, and may sit in two splits"
        )
    try:
        parts = choose_rows(task_file, *(split or Split()).record().values(), seed)
        report["splits"] = dict(zip(("n_train", "n_val", "n_test"), map(len, parts)))
    except TaskError as error:
        report["splits"] = None
        report["flags"].append(str(error))
    if report["splits"] is not None and not report["splits"]["n_test"]:
        report["flags"].append("no test rows: give more rows or --n-test")
    if model is None:
        report["flags"].append("tokens not checked (--no-model): answers, lengths and the model")
        return report
    report["model"] = model.name
    problems = _token_problems(task_file, model.tokenizer, model.prepend_bos)
    report.update(problems)
    bad = sum(info["count"] for info in problems["token_problems"].values())
    for reason, info in problems["token_problems"].items():
        report["flags"].append(f"{info['count']} rows: {reason} ({unit}s {info['rows']})")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and problems["prompt_tokens"]["max"] > n_ctx:
        report["flags"].append(
            f"prompts of up to {problems['prompt_tokens']['max']} tokens, but the model reads at "
            f"most {n_ctx}"
        )
        return report
    if task_file.format.startswith("mib-"):
        task_file = usable_rows(task_file, model.tokenizer)  # MIB's filter: those rows dropped
        report["rows_usable"] = len(task_file.rows)
    elif bad:
        return report  # the engine refuses such rows of a researcher's own file by name
    report.update(_full_model(model, task_file))
    if report["clean_accuracy"] < FAILS_BELOW:
        report["flags"].append(
            f"the model fails the task: clean accuracy {report['clean_accuracy']:.2f} "
            f"< {FAILS_BELOW}"
        )
    if report["corrupted_accuracy"] > AGREE_ABOVE:
        report["flags"].append(
            f"clean and corrupted agree: the model still prefers the answers on the corrupted "
            f"prompts (accuracy {report['corrupted_accuracy']:.2f}), so patching them changes "
            "little"
        )
    return report


def format_report(report: dict) -> str:
    """The report as the lines `hap task check` prints."""
    lines = [
        f"task file     {report['task_file']}",
        f"format        {report['task_format']}"
        + (f" (counterfactual {report['counterfactual']})" if report["counterfactual"] else ""),
        f"sha256        {report['task_sha256'][:16]}...",
        f"rows          {report['rows_read']} read, {report['rows_usable']} usable",
    ]
    for reason, info in report["dropped"].items():
        lines.append(f"  dropped     {info['count']}: {reason} (rows {info['rows']}...)")
    if report.get("splits"):
        s = report["splits"]
        source = "split column" if report["has_split_column"] else "drawn by seed"
        lines.append(
            f"splits        train {s['n_train']}, validation {s['n_val']}, test {s['n_test']} ({source})"
        )
    if "model" in report:
        lines.append(f"model         {report['model']}")
        t = report["prompt_tokens"]
        lines.append(f"prompt tokens {t['min']}-{t['max']}")
        for reason, info in report["token_problems"].items():
            lines.append(f"  token issue {info['count']}: {reason} (rows {info['rows']}...)")
        if "clean_accuracy" in report:
            lines.append(
                f"full model    clean: accuracy {report['clean_accuracy']:.3f}, logit diff "
                f"{report['clean_logit_diff']:.3f}; corrupted: accuracy "
                f"{report['corrupted_accuracy']:.3f}, logit diff {report['corrupted_logit_diff']:.3f}"
            )
    lines.append("flags         " + ("; ".join(report["flags"]) if report["flags"] else "none"))
    return "\n".join(lines)
