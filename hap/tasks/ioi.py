"""Indirect Object Identification (Wang et al. 2022) with the ABC corruption.

Clean: "Then, Mary and John went to the store. John gave a drink to" -> " Mary" (IO), not " John" (S).
Corrupted (ABC): all three name slots get fresh, distinct names, so the prompt keeps its syntax but
no name is repeated -- the corruption used by Wang et al. and by Edge Pruning.
"""

from __future__ import annotations

import random

from hap.tasks.base import Example, heldout_key
from hap.tasks.templates import IOI_TEMPLATES
from hap.tasks.vocab import ALL_WORDS, Words


def fill_ioi(template: str, io: str, s: str, abba: bool, place: str, obj: str) -> str:
    a, b = (io, s) if abba else (s, io)
    return template.format(A=a, B=b, S2=s, PLACE=place, OBJECT=obj)


def ioi_example(
    rng: random.Random, heldout: bool | None = None, words: Words = ALL_WORDS
) -> Example:
    """One IOI prompt pair; `heldout` restricts (True) or excludes (False) the held-out combos."""
    while True:
        t = rng.randrange(len(IOI_TEMPLATES))
        io, s = rng.sample(words.names, 2)
        if heldout is None or heldout_key("ioi", t, io, s) == heldout:
            break
    abba = rng.random() < 0.5
    place, obj = rng.choice(words.places), rng.choice(words.objects)
    x, y, z = rng.sample([n for n in words.names if n not in (io, s)], 3)
    template = IOI_TEMPLATES[t]
    corrupted = template.format(A=x, B=y, S2=z, PLACE=place, OBJECT=obj)
    return Example(
        clean=fill_ioi(template, io, s, abba, place, obj),
        corrupted=corrupted,
        answers=(" " + io,),
        distractors=(" " + s,),
    )


def ioi_prompts(words: Words = ALL_WORDS) -> int:
    """How many distinct clean prompts `ioi_example` can draw from `words`: per template, the
    ordered (IO, S) name pairs in either order (ABBA / BABA), times the places and objects where
    the template has those slots."""
    n = len(words.names)
    total = 0
    for template in IOI_TEMPLATES:
        count = n * (n - 1) * 2
        if "{PLACE}" in template:
            count *= len(words.places)
        if "{OBJECT}" in template:
            count *= len(words.objects)
        total += count
    return total
