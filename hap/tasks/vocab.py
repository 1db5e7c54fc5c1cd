"""Word lists shared by the tasks and by the corpus that trains the embedded model.

Every word here is a single token for GPT-2's BPE tokenizer (with a leading space) and for the
embedded model's word-level tokenizer, so the same tasks run on both without re-tokenisation tricks.
Other tokenizers (SmolLM2's, Gemma's) get the words that are single tokens for them: `words_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

FEMALE_NAMES: tuple[str, ...] = (
    "Mary",
    "Alice",
    "Sarah",
    "Anna",
    "Emma",
    "Laura",
    "Rachel",
    "Lisa",
    "Amy",
    "Kate",
    "Emily",
    "Grace",
    "Jessica",
    "Susan",
    "Linda",
    "Karen",
    "Nancy",
    "Helen",
    "Julia",
    "Rose",
    "Ruth",
    "Jane",
    "Lucy",
    "Claire",
    "Diana",
    "Sophie",
    "Hannah",
    "Victoria",
    "Maria",
    "Eva",
)
MALE_NAMES: tuple[str, ...] = (
    "John",
    "James",
    "Michael",
    "David",
    "Robert",
    "Daniel",
    "Paul",
    "Mark",
    "George",
    "Peter",
    "Thomas",
    "Kevin",
    "Brian",
    "Steven",
    "Jason",
    "Eric",
    "Andrew",
    "Ryan",
    "Jacob",
    "Adam",
    "Henry",
    "Frank",
    "Jack",
    "Ben",
    "Sam",
    "Tom",
    "Alex",
    "Charles",
    "Edward",
    "Martin",
)
NAMES: tuple[str, ...] = FEMALE_NAMES + MALE_NAMES

PLACES: tuple[str, ...] = (
    "store",
    "garden",
    "restaurant",
    "school",
    "hospital",
    "office",
    "house",
    "station",
    "park",
    "library",
    "market",
    "church",
    "beach",
    "river",
    "bank",
    "hotel",
    "museum",
    "farm",
    "kitchen",
    "lake",
)
OBJECTS: tuple[str, ...] = (
    "ring",
    "kiss",
    "bone",
    "basketball",
    "computer",
    "necklace",
    "drink",
    "snack",
    "book",
    "letter",
    "bottle",
    "flower",
    "hat",
    "bag",
    "key",
    "phone",
    "ticket",
    "gift",
    "cake",
    "box",
)

# Greater-Than (Hanna et al. 2023): events that last from one year to a later one.
EVENTS: tuple[str, ...] = (
    "war",
    "expedition",
    "project",
    "trial",
    "journey",
    "voyage",
    "campaign",
    "dynasty",
    "siege",
    "reign",
    "struggle",
    "revolution",
    "conflict",
    "strike",
    "drought",
    "festival",
)
CENTURIES: tuple[str, ...] = ("11", "12", "13", "14", "15", "16", "17")

# Gendered-Pronoun: a named person, then a sentence that refers back to them.
JOBS: tuple[str, ...] = (
    "nurse",
    "doctor",
    "teacher",
    "lawyer",
    "farmer",
    "writer",
    "singer",
    "pilot",
    "baker",
    "painter",
    "student",
    "driver",
    "cook",
    "judge",
    "dancer",
    "soldier",
)

# Filler vocabulary for the language-modelling part of the corpus.
ADJECTIVES: tuple[str, ...] = (
    "big",
    "small",
    "red",
    "old",
    "new",
    "happy",
    "quiet",
    "long",
    "warm",
    "cold",
    "good",
    "bad",
)
VERBS: tuple[str, ...] = (
    "saw",
    "liked",
    "found",
    "wanted",
    "made",
    "took",
    "bought",
    "sold",
    "lost",
    "kept",
    "moved",
)


@dataclass(frozen=True)
class Words:
    """The slot words a task draws from. `words_for` keeps those a tokenizer can use."""

    female_names: tuple[str, ...] = FEMALE_NAMES
    male_names: tuple[str, ...] = MALE_NAMES
    places: tuple[str, ...] = PLACES
    objects: tuple[str, ...] = OBJECTS
    events: tuple[str, ...] = EVENTS
    jobs: tuple[str, ...] = JOBS

    @property
    def names(self) -> tuple[str, ...]:
        return self.female_names + self.male_names


ALL_WORDS = Words()

# The fewest words per slot a task keeps: IOI draws 5 distinct names per prompt pair.
MINIMUM = {"female_names": 5, "male_names": 5, "places": 3, "objects": 3, "events": 3, "jobs": 3}


def single_token(tokenizer, text: str) -> bool:
    """Whether `text` is one known token of `tokenizer` (without its special tokens)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(ids) == 1 and ids[0] != tokenizer.unk_token_id


def words_for(tokenizer, bare_names: bool = False) -> tuple[Words, dict[str, list[str]]]:
    """The words that are single tokens of `tokenizer` after a space, and the dropped words per
    slot. `bare_names`: names must also be single tokens with no space before them (where
    Gendered-Pronoun starts a prompt with one). On the embedded tokenizer nothing is dropped, so
    prompts drawn from a seed stay the same."""
    kept, dropped = {}, {}
    for f in fields(Words):
        words = getattr(ALL_WORDS, f.name)
        bare = bare_names and f.name.endswith("names")
        ok = tuple(
            w
            for w in words
            if single_token(tokenizer, " " + w) and (not bare or single_token(tokenizer, w))
        )
        kept[f.name] = ok
        dropped[f.name] = [w for w in words if w not in ok]
    return replace(ALL_WORDS, **kept), dropped


def too_few(words: Words, dropped: dict[str, list[str]], slots: tuple[str, ...]) -> str | None:
    """A one-line reason when a slot a task needs keeps fewer words than MINIMUM, else None."""
    short = [s for s in slots if len(getattr(words, s)) < MINIMUM[s]]
    if not short:
        return None
    detail = "; ".join(
        f"{s}: {len(getattr(words, s))} left (need {MINIMUM[s]}), dropped {dropped[s]}"
        for s in short
    )
    return f"too few single-token words for this tokenizer: {detail}"
