"""Greater-Than (Hanna et al. 2023) with the 01-year corruption.

Clean: "The war lasted from the year 1732 to the year 17" -> any of "33".."99" (answers) rather than
"00".."32" (distractors). Corrupted: the start year becomes "1701", which leaves no year to rule out.

Tokenizers that split numbers into digits (SmolLM2's, Gemma's) cannot name a two-digit year in one
token, so for them the task reads the next digit instead (`greater_than_digit_example`): the
same prompts, and the answers are the tens digits above the start year's, the distractors those
below it (the equal digit, which could go either way, is neither).
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, heldout_key
from hap.tasks.templates import GREATER_THAN_TEMPLATE
from hap.tasks.vocab import ALL_WORDS, CENTURIES, Words

YEARS: tuple[str, ...] = tuple(f"{y:02d}" for y in range(100))


def _draw(
    rng: random.Random, heldout: bool | None, words: Words, low: int, high: int
) -> tuple[str, str, int]:
    """(clean prompt, corrupted prompt, start year yy in [low, high)) for one event."""
    while True:
        event, century, yy = (
            rng.choice(words.events),
            rng.choice(CENTURIES),
            rng.randrange(low, high),
        )
        if heldout is None or heldout_key("gt", event, century, yy) == heldout:
            break

    def prompt(start: str) -> str:
        return GREATER_THAN_TEMPLATE.format(EVENT=event, CENTURY=century, YY=start)

    return prompt(YEARS[yy]), prompt("01"), yy


def greater_than_example(
    rng: random.Random, heldout: bool | None = None, words: Words = ALL_WORDS
) -> Example:
    clean, corrupted, yy = _draw(rng, heldout, words, 2, 99)
    return Example(clean, corrupted, answers=YEARS[yy + 1 :], distractors=YEARS[: yy + 1])


def greater_than_digit_example(
    rng: random.Random, heldout: bool | None = None, words: Words = ALL_WORDS
) -> Example:
    """Greater-Than for digit-level tokenizers (module docstring). Start years 10-89, so that
    every prompt has both a larger and a smaller tens digit."""
    clean, corrupted, yy = _draw(rng, heldout, words, 10, 90)
    tens = yy // 10
    return Example(
        clean,
        corrupted,
        answers=tuple(str(d) for d in range(tens + 1, 10)),
        distractors=tuple(str(d) for d in range(tens)),
    )


def greater_than_prompts(words: Words = ALL_WORDS, digits: bool = False) -> int:
    """How many distinct clean prompts Greater-Than can draw from `words`: events x centuries x
    start years (2-98, or 10-89 for `greater_than_digit_example`)."""
    years = 80 if digits else 97
    return len(words.events) * len(CENTURIES) * years
