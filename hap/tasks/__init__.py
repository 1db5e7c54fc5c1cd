"""Tasks by name: `make_task("ioi", tokenizer)` builds tokenised, deterministic splits."""

from __future__ import annotations

from hap.tasks.base import Example, Task, TaskData, TaskError, build_task, check_vocabulary
from hap.tasks.gendered_pronoun import gendered_pronoun_example
from hap.tasks.greater_than import greater_than_example
from hap.tasks.ioi import ioi_example

GENERATORS = {
    "ioi": ioi_example,
    "greater-than": greater_than_example,
    "gendered-pronoun": gendered_pronoun_example,
}


def make_task(
    name: str, tokenizer, n_train: int = 200, n_val: int = 100, n_test: int = 200, seed: int = 0
) -> Task:
    """Build task `name` for `tokenizer`; splits are disjoint and fixed by `seed`."""
    if name not in GENERATORS:
        raise TaskError(f"unknown task {name!r}; choose one of {sorted(GENERATORS)}")
    return build_task(name, GENERATORS[name], tokenizer, n_train, n_val, n_test, seed)


__all__ = [
    "GENERATORS",
    "Example",
    "Task",
    "TaskData",
    "TaskError",
    "check_vocabulary",
    "make_task",
]
