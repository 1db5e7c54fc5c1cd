"""Gendered-Pronoun (Mathwin et al. 2023): "So Mary is a nurse. Later," -> " she", not " he".

Corrupted: the name is swapped for one of the other gender, which flips the expected pronoun.
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, heldout_key
from hap.tasks.templates import GENDERED_PRONOUN_TEMPLATES
from hap.tasks.vocab import FEMALE_NAMES, JOBS, MALE_NAMES, PLACES


def gendered_pronoun_example(rng: random.Random, heldout: bool | None = None) -> Example:
    while True:
        t = rng.randrange(len(GENDERED_PRONOUN_TEMPLATES))
        female = rng.random() < 0.5
        name = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
        job, place = rng.choice(JOBS), rng.choice(PLACES)
        if heldout is None or heldout_key("gp", t, name, job, place) == heldout:
            break
    other = rng.choice(MALE_NAMES if female else FEMALE_NAMES)
    template = GENDERED_PRONOUN_TEMPLATES[t]
    pronoun, wrong = (" she", " he") if female else (" he", " she")
    return Example(
        clean=template.format(NAME=name, JOB=job, PLACE=place),
        corrupted=template.format(NAME=other, JOB=job, PLACE=place),
        answers=(pronoun,),
        distractors=(wrong,),
    )
