"""The row formats of task files: this project's and the other tools', each read into the same
`Example` (clean prompt, corrupted prompt, answers, distractors) without a tokenizer.

- native: `clean`, `corrupted`, `answers` and `distractors` (a list or one string; in CSV one
  string each, `answer` / `distractor` accepted), optional `split` (train / validation / test);
- eap-ig: `clean`, `corrupted` and `correct_idx` / `incorrect_idx` (token ids: the file then holds
  for one tokenizer only) or `label` / `distractor` strings;
- auto-circuit: `{"prompts": [{"clean", "corrupt", "answers", "wrong_answers"}]}`;
- edge-pruning: `clean` / `corrupted` each ending in one `<predict>...</predict>` span (the answer
  on the clean side, the distractor on the corrupted side);
- mib-ioi, mib-mcqa (also ARC), mib-arithmetic: MIB's rows with a counterfactual column.

A reader raises `Bad` for a row wrong in itself (the file is refused, naming the row) and `Skip`
for a row MIB's own loader filters (dropped and counted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from hap.tasks.base import Example

FORMATS = (
    "native",
    "eap-ig",
    "auto-circuit",
    "edge-pruning",
    "mib-ioi",
    "mib-mcqa",
    "mib-arithmetic",
)

DEFAULT_COUNTERFACTUAL = {
    "mib-ioi": "s2_io_flip_counterfactual",
    "mib-mcqa": "symbol_counterfactual",
    "mib-arithmetic": "random_counterfactual",
}
PREDICT = re.compile(r"<predict>(.*?)</predict>\s*$", re.DOTALL)


def detect_format(record: Mapping, document: Any = None) -> str | None:
    """The format a record's keys say it is in, or None."""
    keys = set(record)
    if document is not None and {"clean", "corrupt"} <= keys:
        return "auto-circuit"
    if {"clean", "corrupted"} <= keys:
        if keys & {"answers", "answer"}:
            return "native"
        if keys & {"correct_idx", "label"}:
            return "eap-ig"
        if "<predict>" in str(record.get("clean", "")):
            return "edge-pruning"
        return None
    if "prompt" in keys:
        metadata = record.get("metadata")
        if isinstance(metadata, Mapping) and "indirect_object" in metadata:
            return "mib-ioi"
        if {"choices", "answerKey"} <= keys:
            return "mib-mcqa"
        if "label" in keys and any(k.endswith("_counterfactual") for k in keys):
            return "mib-arithmetic"
    return None


class Skip(Exception):
    """A row a reader drops, with the reason (MIB's filters); counted and reported."""


class Bad(Exception):
    """A row that is wrong: the file is refused, naming the row."""


def _strings(value: Any, column: str, ids: bool = False) -> tuple[str | int, ...]:
    """One string, or a list of them (or token ids where `ids`), as a non-empty tuple."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):  # a list written into a CSV cell
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise Bad(f"{column} must be a string or a non-empty list")
    out: list[str | int] = []
    for item in value:
        if isinstance(item, str) and item != "":
            out.append(item)
        elif (
            ids
            and isinstance(item, int | float)
            and not isinstance(item, bool)
            and float(item).is_integer()
        ):
            out.append(int(item))
        else:
            raise Bad(f"{column} holds {item!r}, not a non-empty string")
    return tuple(out)


def _text(record: Mapping, column: str) -> str:
    value = record.get(column)
    if not isinstance(value, str) or not value.strip():
        raise Bad(f"{column} is missing or empty")
    return value


def _token_id(value: Any, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Bad(f"{column}={value!r} is not a token id") from None
    if not number.is_integer() or number < 0:
        raise Bad(f"{column}={value!r} is not a token id")
    return int(number)


def _native(record: Mapping, _cf: str | None) -> Example:
    answers = record.get("answers", record.get("answer"))
    distractors = record.get("distractors", record.get("distractor"))
    if distractors is None or distractors == "":
        raise Bad("no distractors: the logit difference needs one (column distractors)")
    return Example(
        _text(record, "clean"),
        _text(record, "corrupted"),
        _strings(answers, "answers"),
        _strings(distractors, "distractors"),
    )


def _eap_ig(record: Mapping, _cf: str | None) -> Example:
    clean, corrupted = _text(record, "clean"), _text(record, "corrupted")
    if record.get("correct_idx") not in (None, ""):
        if record.get("incorrect_idx") in (None, ""):
            raise Bad("correct_idx without incorrect_idx: the logit difference needs both")
        return Example(
            clean,
            corrupted,
            (_token_id(record["correct_idx"], "correct_idx"),),
            (_token_id(record["incorrect_idx"], "incorrect_idx"),),
        )
    distractor = record.get("distractor", record.get("incorrect_label"))
    if distractor in (None, ""):
        raise Bad("label without distractor: the logit difference needs both")
    return Example(
        clean, corrupted, _strings(record["label"], "label"), _strings(distractor, "distractor")
    )


def _auto_circuit(record: Mapping, _cf: str | None) -> Example:
    return Example(
        _text(record, "clean"),
        _text(record, "corrupt"),
        _strings(record.get("answers"), "answers", ids=True),
        _strings(record.get("wrong_answers"), "wrong_answers", ids=True),
    )


def _edge_pruning(record: Mapping, _cf: str | None) -> Example:
    parts = []
    for column in ("clean", "corrupted"):
        text = _text(record, column)
        match = PREDICT.search(text)
        if not match or text.count("<predict>") != 1:
            raise Bad(f"{column} needs exactly one <predict>...</predict> span, at its end")
        parts.append((text[: match.start()], match.group(1)))
    (clean, answer), (corrupted, distractor) = parts
    if not answer or not distractor:
        raise Bad("an empty <predict></predict> span")
    return Example(clean, corrupted, (answer,), (distractor,))


def _counterfactual(record: Mapping, cf: str) -> Mapping:
    value = record.get(cf)
    if value is None:
        raise Skip(f"no {cf}")
    if not isinstance(value, Mapping) or not isinstance(value.get("prompt"), str):
        raise Bad(f"{cf} is not a struct with a prompt")
    return value


def _choice(row: Mapping, where: str) -> str:
    choices, key = row.get("choices"), row.get("answerKey")
    labels = choices.get("label") if isinstance(choices, Mapping) else None
    if not isinstance(labels, list) or not isinstance(key, int) or not 0 <= key < len(labels):
        raise Bad(f"{where}choices.label[answerKey] does not exist")
    return str(labels[key])


def _mib_ioi(record: Mapping, cf: str | None) -> Example:
    counterfactual = _counterfactual(record, cf or DEFAULT_COUNTERFACTUAL["mib-ioi"])
    metadata = record["metadata"]
    io_, subject = metadata.get("indirect_object"), metadata.get("subject")
    if not isinstance(io_, str) or not isinstance(subject, str):
        raise Bad("metadata.indirect_object / metadata.subject are not strings")
    return Example(
        _text(record, "prompt"), counterfactual["prompt"], (" " + io_,), (" " + subject,)
    )


def _mib_mcqa(record: Mapping, cf: str | None) -> Example:
    name = cf or DEFAULT_COUNTERFACTUAL["mib-mcqa"]
    counterfactual = _counterfactual(record, name)
    answer = _choice(record, "")
    distractor = _choice(counterfactual, f"{name}.")
    if answer == distractor:
        raise Skip("the counterfactual's answer equals the clean answer")
    return Example(_text(record, "prompt"), counterfactual["prompt"], (answer,), (distractor,))


def _mib_arithmetic(record: Mapping, cf: str | None) -> Example:
    name = cf or DEFAULT_COUNTERFACTUAL["mib-arithmetic"]
    counterfactual = _counterfactual(record, name)
    label, other = record.get("label"), counterfactual.get("label")
    if label is None or other is None:
        raise Skip("no label")
    if str(label) == str(other):
        raise Skip("the counterfactual's label equals the clean label")
    return Example(_text(record, "prompt"), counterfactual["prompt"], (str(label),), (str(other),))


READERS: dict[str, Callable[[Mapping, str | None], Example]] = {
    "native": _native,
    "eap-ig": _eap_ig,
    "auto-circuit": _auto_circuit,
    "edge-pruning": _edge_pruning,
    "mib-ioi": _mib_ioi,
    "mib-mcqa": _mib_mcqa,
    "mib-arithmetic": _mib_arithmetic,
}
