"""Subject-verb agreement (Linzen et al. 2016; Finlayson et al. 2021): "The doctors near the
teacher" -> " are", not " is". An attractor phrase of varying length (none, a prepositional
phrase, a relative clause) sits between the subject and the verb, with its own noun in the other
or the same number, so the task has prompts of several lengths and the model must track the
subject, not the nearest noun.

Corrupted: the subject in the other number ("The doctor near the teacher"), which flips the
verb. Nouns are kept where both forms are single tokens after a space (`usable_pairs`); the
embedded model's word-level vocabulary has no plural nouns, so there the task is refused.
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, TaskError
from hap.tasks.vocab import single_token

NOUN_PAIRS: tuple[tuple[str, str], ...] = (
    ("doctor", "doctors"),
    ("teacher", "teachers"),
    ("farmer", "farmers"),
    ("student", "students"),
    ("writer", "writers"),
    ("singer", "singers"),
    ("nurse", "nurses"),
    ("pilot", "pilots"),
    ("lawyer", "lawyers"),
    ("judge", "judges"),
    ("driver", "drivers"),
    ("painter", "painters"),
    ("baker", "bakers"),
    ("dancer", "dancers"),
    ("soldier", "soldiers"),
    ("player", "players"),
    ("officer", "officers"),
    ("manager", "managers"),
    ("author", "authors"),
    ("worker", "workers"),
)
# {N2}: the attractor noun, singular or plural; prompts end right before the verb.
ATTRACTORS: tuple[str, ...] = (
    "The {N1}",
    "The {N1} near the {N2}",
    "The {N1} behind the {N2}",
    "The {N1} with the {N2}",
    "The {N1} who met the {N2}",
    "The {N1} who talked to the {N2}",
)
VERBS = (" is", " are")
MINIMUM_PAIRS = 5


def usable_pairs(tokenizer) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """The noun pairs whose singular and plural are single tokens after a space, and the dropped
    words; refuses (one line) a tokenizer that keeps too few or splits the verbs."""

    def single(text: str) -> bool:
        return single_token(tokenizer, text)

    missing = [v for v in VERBS if not single(v)]
    kept = tuple(p for p in NOUN_PAIRS if single(" " + p[0]) and single(" " + p[1]))
    dropped = [w for p in NOUN_PAIRS if p not in kept for w in p]
    if missing or len(kept) < MINIMUM_PAIRS:
        raise TaskError(
            f"subject-verb-agreement: this tokenizer has {len(kept)} single-token singular/plural "
            f"noun pairs (need {MINIMUM_PAIRS})"
            + (f" and splits the verbs {missing}" if missing else "")
            + "; the embedded model's vocabulary has no plural nouns: use a real model "
            "(e.g. --model smollm2-135m)"
        )
    return kept, dropped


def agreement_example(
    rng: random.Random,
    heldout: bool | None = None,
    pairs: tuple[tuple[str, str], ...] = NOUN_PAIRS,
) -> Example:
    """One prompt pair; `heldout` is unused (no training corpus holds this task)."""
    template = rng.choice(ATTRACTORS)
    (s1, p1), (s2, p2) = rng.sample(pairs, 2)
    plural = rng.random() < 0.5
    attractor = p2 if rng.random() < 0.5 else s2
    subject, other = (p1, s1) if plural else (s1, p1)
    verb, wrong = (VERBS[1], VERBS[0]) if plural else VERBS
    return Example(
        clean=template.format(N1=subject, N2=attractor),
        corrupted=template.format(N1=other, N2=attractor),
        answers=(verb,),
        distractors=(wrong,),
    )


def agreement_prompts(pairs: tuple[tuple[str, str], ...] = NOUN_PAIRS) -> int:
    """Distinct clean prompts: per template, the subject (either number) times the attractor
    (another noun, either number) where the template has one."""
    n = len(pairs)
    return sum(2 * n * (2 * (n - 1) if "{N2}" in t else 1) for t in ATTRACTORS)
