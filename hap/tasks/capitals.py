"""Capitals, a factual-recall task (in the spirit of Meng et al. 2022's and MIB's factual
prompts): "The capital of France is" -> " Paris", not " Berlin". Corrupted: another country, whose
capital is the distractor. Three phrasings of different lengths. Countries and capitals are kept
where both are single tokens after a space (`usable_countries`); the embedded model knows no
countries, so there the task is refused.
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, TaskError
from hap.tasks.vocab import single_token

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Russia", "Moscow"),
    ("England", "London"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Poland", "Warsaw"),
    ("Portugal", "Lisbon"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Cuba", "Havana"),
    ("Canada", "Ottawa"),
    ("Thailand", "Bangkok"),
    ("Turkey", "Ankara"),
    ("Iran", "Tehran"),
    ("China", "Beijing"),
    ("Korea", "Seoul"),
)
TEMPLATES: tuple[str, ...] = (
    "The capital of {C} is",
    "The capital city of {C} is the city of",
    "Q: What is the capital of {C}? A: The capital is",
    "The government of {C} sits in",
    "The largest city and capital of {C} is",
    "If you travel to the capital of {C}, you arrive in",
)
MINIMUM = 5


def usable_countries(tokenizer) -> tuple[tuple[str, str], ...]:
    """(country, capital) pairs whose both words are single tokens after a space."""

    def single(text: str) -> bool:
        return single_token(tokenizer, text)

    kept = tuple(p for p in CAPITALS if single(" " + p[0]) and single(" " + p[1]))
    if len(kept) < MINIMUM:
        raise TaskError(
            f"capitals: this tokenizer has {len(kept)} countries whose name and capital are "
            f"single tokens (need {MINIMUM}); the embedded model knows no countries: use a real "
            "model (e.g. --model smollm2-135m)"
        )
    return kept


def capital_example(
    rng: random.Random,
    heldout: bool | None = None,
    pairs: tuple[tuple[str, str], ...] = CAPITALS,
) -> Example:
    """One prompt pair; `heldout` is unused (no training corpus holds this task)."""
    template = rng.choice(TEMPLATES)
    (country, capital), (other, other_capital) = rng.sample(pairs, 2)
    return Example(
        clean=template.format(C=country),
        corrupted=template.format(C=other),
        answers=(" " + capital,),
        distractors=(" " + other_capital,),
    )


def capital_prompts(pairs: tuple[tuple[str, str], ...] = CAPITALS) -> int:
    """Distinct clean prompts: a country per template."""
    return len(pairs) * len(TEMPLATES)
