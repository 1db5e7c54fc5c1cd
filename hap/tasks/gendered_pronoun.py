"""Gendered-Pronoun (Mathwin et al. 2023): "So Mary is a nurse. Later," -> " she", not " he".

Corrupted: the name is swapped for one of the other gender, which flips the expected pronoun.
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, heldout_key
from hap.tasks.templates import GENDERED_PRONOUN_TEMPLATES
from hap.tasks.vocab import ALL_WORDS, Words


def gendered_pronoun_example(
    rng: random.Random, heldout: bool | None = None, words: Words = ALL_WORDS
) -> Example:
    while True:
        t = rng.randrange(len(GENDERED_PRONOUN_TEMPLATES))
        female = rng.random() < 0.5
        name = rng.choice(words.female_names if female else words.male_names)
        job, place = rng.choice(words.jobs), rng.choice(words.places)
        if heldout is None or heldout_key("gp", t, name, job, place) == heldout:
            break
    other = rng.choice(words.male_names if female else words.female_names)
    template = GENDERED_PRONOUN_TEMPLATES[t]
    pronoun, wrong = (" she", " he") if female else (" he", " she")
    return Example(
        clean=template.format(NAME=name, JOB=job, PLACE=place),
        corrupted=template.format(NAME=other, JOB=job, PLACE=place),
        answers=(pronoun,),
        distractors=(wrong,),
    )


def gendered_pronoun_prompts(words: Words = ALL_WORDS) -> int:
    """How many distinct clean prompts `gendered_pronoun_example` can draw from `words`: per
    template, the names times the jobs and places where the template has those slots."""
    total = 0
    for template in GENDERED_PRONOUN_TEMPLATES:
        count = len(words.names)
        if "{JOB}" in template:
            count *= len(words.jobs)
        if "{PLACE}" in template:
            count *= len(words.places)
        total += count
    return total
