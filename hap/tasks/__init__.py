"""Tasks by name: `make_task("ioi", tokenizer)` builds tokenised, deterministic splits."""

from __future__ import annotations

from functools import partial

from hap.tasks.base import (
    Example,
    Task,
    TaskData,
    TaskError,
    build_task,
    check_split,
    check_vocabulary,
)
from hap.tasks.gendered_pronoun import gendered_pronoun_example, gendered_pronoun_prompts
from hap.tasks.greater_than import (
    greater_than_digit_example,
    greater_than_example,
    greater_than_prompts,
)
from hap.tasks.ioi import ioi_example, ioi_prompts
from hap.tasks.vocab import ALL_WORDS, Words, too_few, words_for

GENERATORS = {
    "ioi": ioi_example,
    "greater-than": greater_than_example,
    "gendered-pronoun": gendered_pronoun_example,
}
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
    if name == "greater-than":
        return greater_than_prompts(words, digits=generator is greater_than_digit_example)
    if name == "gendered-pronoun":
        return gendered_pronoun_prompts(words)
    return ioi_prompts(words)


def check_sizes(name: str, n_train: int, n_val: int, n_test: int) -> None:
    """`make_task`'s refusal of an unknown task or impossible split sizes, made before any
    model or tokenizer loads: against every slot word (a tokenizer only drops words, so the
    count is an upper bound; `make_task` checks the exact one)."""
    if name not in GENERATORS:
        raise TaskError(f"unknown task {name!r}; choose one of {sorted(GENERATORS)}")
    check_split(name, n_train, n_val, n_test, distinct_prompts(name))


def make_task(
    name: str,
    tokenizer,
    n_train: int = 200,
    n_val: int = 100,
    n_test: int = 200,
    seed: int = 0,
    prepend_bos: bool | None = None,
) -> Task:
    """Build task `name` for `tokenizer`; splits are disjoint and fixed by `seed`. Slot words
    are those that are single tokens of this tokenizer (`words_for`); Greater-Than reads the
    next digit on digit-level tokenizers (`_generator`); `prepend_bos` is the BOS
    convention (`hap.tasks.base.tokenize`; a loaded model carries its own as
    `model.prepend_bos`)."""
    check_sizes(name, n_train, n_val, n_test)  # before the tokenizer is asked anything
    words, dropped = words_for(tokenizer, bare_names=name == "gendered-pronoun")
    reason = too_few(words, dropped, SLOTS[name])
    if reason:
        raise TaskError(f"{name}: {reason}")
    chosen = _generator(name, tokenizer)
    capacity = distinct_prompts(name, words, chosen)
    generator = partial(chosen, words=words)
    return build_task(
        name, generator, tokenizer, n_train, n_val, n_test, seed, prepend_bos, capacity
    )


__all__ = [
    "GENERATORS",
    "Example",
    "Task",
    "TaskData",
    "TaskError",
    "check_sizes",
    "check_vocabulary",
    "distinct_prompts",
    "make_task",
]
