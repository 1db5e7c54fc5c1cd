"""Tasks by name: `make_task("ioi", tokenizer)` builds tokenised, deterministic splits."""

from __future__ import annotations

from functools import partial

from hap.tasks.agreement import agreement_example, agreement_prompts, usable_pairs
from hap.tasks.base import (
    Example,
    Task,
    TaskData,
    TaskError,
    build_task,
    check_split,
    check_vocabulary,
)
from hap.tasks.capitals import capital_example, capital_prompts, usable_countries
from hap.tasks.files import (
    TaskFile,
    choose_rows,
    file_task,
    read_task_file,
)
from hap.tasks.files import is_task_file as _names_a_file
from hap.tasks.gendered_pronoun import gendered_pronoun_example, gendered_pronoun_prompts
from hap.tasks.greater_than import (
    greater_than_digit_example,
    greater_than_example,
    greater_than_prompts,
)
from hap.tasks.ioi import ioi_example, ioi_prompts
from hap.tasks.schemas import FORMATS
from hap.tasks.vocab import ALL_WORDS, Words, too_few, words_for

GENERATORS = {
    "ioi": ioi_example,
    "greater-than": greater_than_example,
    "gendered-pronoun": gendered_pronoun_example,
}  # the tasks of the embedded model's training corpus (hap.models.train)
# Tasks whose words are not the shared Words slots: each filters its own vocabulary for a tokenizer
# (refusing in one line where too few words are single tokens) and counts its prompts.
OWN_WORDS = {
    "subject-verb-agreement": (
        lambda tokenizer: usable_pairs(tokenizer)[0],
        agreement_example,
        agreement_prompts,
    ),
    "capitals": (usable_countries, capital_example, capital_prompts),
}
BUILTIN_TASKS = (*GENERATORS, *OWN_WORDS)  # every name --task takes


def is_task_file(name: str) -> bool:
    """Whether `--task name` names a task file: never a built-in name (even where a folder of
    that name exists), else an existing path or a name with a path separator or suffix."""
    return name not in BUILTIN_TASKS and _names_a_file(name)


SLOTS = {
    "ioi": ("female_names", "male_names", "places", "objects"),
    "greater-than": ("events",),
    "gendered-pronoun": ("female_names", "male_names", "jobs", "places"),
}


def _generator(name: str, tokenizer):
    """The task's prompt generator for this tokenizer: Greater-Than reads a two-digit year where
    the tokenizer has one token per year ("17" + "32") and the next digit where it splits
    numbers into digits; any other split is refused."""
    if name != "greater-than":
        return GENERATORS[name]
    pieces = [
        tokenizer.decode([i]) for i in tokenizer(" 1732", add_special_tokens=False)["input_ids"]
    ]
    digits = [p.strip() for p in pieces if p.strip()]
    if digits == ["17", "32"]:
        return greater_than_example
    if digits == list("1732"):
        return greater_than_digit_example
    raise TaskError(
        f"greater-than needs years split as century + two digits or as single digits; this "
        f"tokenizer splits ' 1732' into {pieces}; use ioi or gendered-pronoun"
    )


def distinct_prompts(name: str, words: Words = ALL_WORDS, generator=None) -> int:
    """How many distinct clean prompts task `name` can draw from `words` (with `generator`, the
    one `_generator` picked; by default the largest count over the task's generators)."""
    if name in OWN_WORDS:
        return OWN_WORDS[name][2]()
    if name == "greater-than":
        return greater_than_prompts(words, digits=generator is greater_than_digit_example)
    if name == "gendered-pronoun":
        return gendered_pronoun_prompts(words)
    return ioi_prompts(words)


DEFAULT_SIZES = {"n_train": 64, "n_val": 64, "n_test": 200}  # a built-in task's, where not given
TASK_SIZES = {
    "capitals": {"n_train": 40, "n_val": 20, "n_test": 60}
}  # of 144 prompts (132 on SmolLM2)


def check_sizes(
    name: str,
    n_train: int | None,
    n_val: int | None,
    n_test: int | None,
    task_format: str | None = None,
    counterfactual: str | None = None,
) -> dict[str, int]:
    """The split sizes `make_task` will draw, and its refusal of an unknown task, an unreadable
    task file or impossible sizes, made before any model or tokenizer loads. A built-in task is
    counted against every slot word (a tokenizer only drops words, so the count is an upper
    bound; `make_task` checks the exact one); a task file against its usable rows."""
    if is_task_file(name):
        task_file = read_task_file(name, task_format, counterfactual)
        parts = choose_rows(task_file, n_train, n_val, n_test, 0)
        if not parts[2]:
            fix = (
                "add rows with split=test" if task_file.has_splits else "give more rows or --n-test"
            )
            raise TaskError(f"task file {name}: no test rows; {fix}")
        return dict(zip(("n_train", "n_val", "n_test"), map(len, parts)))
    if name not in BUILTIN_TASKS:
        raise TaskError(
            f"unknown task {name!r}; choose one of {sorted(BUILTIN_TASKS)} or give a task file's "
            "path"
        )
    if task_format is not None or counterfactual is not None:
        raise TaskError(f"--task-format and --counterfactual apply to task files, not to {name}")
    given = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    defaults = TASK_SIZES.get(name, DEFAULT_SIZES)
    sizes = {k: defaults[k] if v is None else v for k, v in given.items()}
    check_split(name, *sizes.values(), distinct_prompts(name))
    return sizes


def task_key(name: str, task_format: str | None = None, counterfactual: str | None = None) -> str:
    """What names a task's data in a resume key: a built-in's name, or a file's path, content
    hash, format and counterfactual (an edited file is a new task)."""
    if not is_task_file(name):
        return name
    record = read_task_file(name, task_format, counterfactual).record()
    return "{task_file}@{task_sha256}/{task_format}/{counterfactual}".format(**record)


def make_task(
    name: str,
    tokenizer,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    prepend_bos: bool | None = None,
    task_format: str | None = None,
    counterfactual: str | None = None,
) -> Task:
    """Build task `name` (a built-in name or a task file's path) for `tokenizer`; splits are
    disjoint and fixed by `seed`. Slot words are those that are single tokens of this tokenizer
    (`words_for`); Greater-Than reads the next digit on digit-level tokenizers (`_generator`);
    `prepend_bos` is the BOS convention (`hap.tasks.base.tokenize`; a loaded model carries its
    own as `model.prepend_bos`). Sizes left None are DEFAULT_SIZES for a built-in and a share
    of the rows for a file (`hap.tasks.files.split_sizes`)."""
    if is_task_file(name):
        task_file = read_task_file(name, task_format, counterfactual)
        return file_task(task_file, tokenizer, n_train, n_val, n_test, seed, prepend_bos)
    sizes = check_sizes(name, n_train, n_val, n_test, task_format, counterfactual)
    if name in OWN_WORDS:
        usable, example, count = OWN_WORDS[name]
        chosen_words = usable(tokenizer)
        generator = partial(example, pairs=chosen_words)
        return build_task(
            name, generator, tokenizer, *sizes.values(), seed, prepend_bos, count(chosen_words)
        )
    words, dropped = words_for(tokenizer, bare_names=name == "gendered-pronoun")
    reason = too_few(words, dropped, SLOTS[name])
    if reason:
        raise TaskError(f"{name}: {reason}")
    chosen = _generator(name, tokenizer)
    capacity = distinct_prompts(name, words, chosen)
    generator = partial(chosen, words=words)
    return build_task(name, generator, tokenizer, *sizes.values(), seed, prepend_bos, capacity)


__all__ = [
    "BUILTIN_TASKS",
    "GENERATORS",
    "Example",
    "Task",
    "TaskData",
    "TaskError",
    "DEFAULT_SIZES",
    "FORMATS",
    "TaskFile",
    "check_sizes",
    "is_task_file",
    "read_task_file",
    "task_key",
    "check_vocabulary",
    "distinct_prompts",
    "make_task",
]
